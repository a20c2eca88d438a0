//! The one error type of the SDK.

use crate::entry::ExpectedVersion;

/// Result alias used throughout the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a ledger operation.
///
/// Variants name the bad value where there is one, so a message alone says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table, collection or stream name failed validation.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What was being named: `"table"` or `"stream"`.
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An argument is outside its allowed range (a limit, a cursor, an empty value).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The stream's version did not match what the caller expected; nothing was written.
    #[error(
        "version conflict on stream {stream:?}: expected {expected}, stream is at version {actual}"
    )]
    Conflict {
        /// The stream appended to.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's current version (0 for a stream that was never written).
        actual: u64,
    },
    /// No entry with this id exists in this stream.
    #[error("entry {id} not found in stream {stream:?}")]
    EntryNotFound {
        /// The stream searched.
        stream: String,
        /// The id that was not found, as text.
        id: String,
    },
    /// The stream does not exist (it was never written).
    #[error("stream {0:?} not found")]
    StreamNotFound(String),
    /// The stream already exists (rename target).
    #[error("stream {0:?} already exists")]
    StreamExists(String),
    /// This store or backend does not offer the operation.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A write was attempted through a read-only handle.
    #[error("stream {0:?} is read-only")]
    ReadOnly(String),
    /// An entry is older than the stream's schema version and no upcaster covers a step.
    #[error("no upcaster from schema version {from} to {to}")]
    NoUpcaster {
        /// The version the missing step starts at.
        from: u32,
        /// The version the missing step would produce.
        to: u32,
    },
    /// An upcaster failed on an entry's payload.
    #[error("upcasting from schema version {from}: {reason}")]
    Upcast {
        /// The version the failing step starts at.
        from: u32,
        /// What went wrong.
        reason: String,
    },
    /// A payload could not be encoded to JSON.
    #[error("cannot encode payload: {0}")]
    Encode(#[source] serde_json::Error),
    /// A stored payload could not be decoded into the requested type.
    #[error("cannot decode payload of entry {id}: {source}")]
    Decode {
        /// The entry whose payload failed, as text.
        id: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The store was closed; no further calls are served.
    #[error("store is closed")]
    StoreClosed,
    /// The database or driver failed.
    #[error("backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Wraps a driver error.
    pub fn backend(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Backend(Box::new(err))
    }

    /// [`Error::Backend`] for stored data that cannot be read back (`what` says which and why).
    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Error::backend(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("stored data is invalid: {what}"),
        ))
    }

    /// [`Error::EntryNotFound`] for `id` in `stream`.
    pub fn entry_not_found(stream: &str, id: impl std::fmt::Display) -> Self {
        Error::EntryNotFound {
            stream: stream.to_owned(),
            id: id.to_string(),
        }
    }

    /// True for [`Error::Conflict`]: the append can be retried after re-reading the stream.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
}
