//! Codecs turn typed payloads into the SDK's one payload representation, JSON, and back.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::CodecError;

/// Encodes `T` to a JSON value and decodes it back. Errors are boxed, so a codec may use any
/// serializer (or validation of its own) underneath.
pub trait Codec<T>: Send + Sync {
    /// `T` as JSON.
    fn encode(&self, value: &T) -> Result<Value, CodecError>;
    /// JSON (already upcast to the stream's schema version) as `T`.
    fn decode(&self, value: Value) -> Result<T, CodecError>;

    /// JSON text that needs no upcasting as `T`. The default parses it into a [`Value`] for
    /// [`Codec::decode`]; a codec that reads text directly (as [`JsonCodec`] does) skips
    /// building that tree, the larger part of the cost of decoding an entry.
    fn decode_json(&self, json: &RawValue) -> Result<T, CodecError> {
        self.decode(serde_json::from_str(json.get())?)
    }
}

/// The default codec: serde_json, for any `T: Serialize + DeserializeOwned`.
///
/// Integers keep their exact value (serde_json stores `u64`/`i64` without going through `f64`).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl<T: Serialize + DeserializeOwned> Codec<T> for JsonCodec {
    fn encode(&self, value: &T) -> Result<Value, CodecError> {
        Ok(serde_json::to_value(value)?)
    }

    fn decode(&self, value: Value) -> Result<T, CodecError> {
        Ok(serde_json::from_value(value)?)
    }

    fn decode_json(&self, json: &RawValue) -> Result<T, CodecError> {
        Ok(serde_json::from_str(json.get())?)
    }
}
