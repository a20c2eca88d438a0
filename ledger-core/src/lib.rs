//! Core of `ledger`: typed, append-only streams of entries over pluggable stores.
//!
//! A [`Store`] is one entity type (a table or collection); a stream is one instance inside it,
//! named by a string and created by its first append. Entries carry a JSON payload, a per-stream
//! version, optional order and dedup keys, a schema version, immutable metadata, and mutable tags
//! and annotations. Appends check an [`ExpectedVersion`] (optimistic concurrency decided by the
//! store) and skip inputs whose dedup key is taken, reporting an [`AppendOutcome`] per input.
//!
//! The typed layer, [`Stream`], encodes payloads with a [`Codec`] ([`JsonCodec`] by default) and
//! upcasts older entries on read through [`Upcaster`] steps such as [`FieldMapper`]. Optional
//! capabilities ([`Search`], [`ChangeFeed`], [`CursorStore`], [`Health`]) are separate traits,
//! reported by [`Capabilities`]. Subscriptions ([`Stream::subscribe`], [`subscribe_feed`]) deliver
//! everything after a starting point, then live records, without loss or duplicates.
//!
//! Errors are one enum, [`Error`], naming the bad value. A database failure is
//! [`Error::Backend`] with a [`BackendErrorKind`]; [`Error::is_transient`] and
//! [`Error::is_conflict`] say whether a retry can succeed. Subscriptions retry transient errors
//! and end on any other, so a consumer learns of corrupt stored data instead of waiting forever.
//!
//! [`MemoryStore`] is the complete reference implementation. Backends live in their own crates
//! (`ledger-sqlite` is the embedded default).
//!
//! ```
//! use ledger_core::{ExpectedVersion, MemoryStore, ReadOptions, Stream};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct ItemAdded { sku: String, quantity: u32 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ledger_core::Result<()> {
//! let cart = Stream::<_, ItemAdded>::new(MemoryStore::new(), "cart-1")?;
//! cart.append(vec![ItemAdded { sku: "A-1".into(), quantity: 2 }], ExpectedVersion::NoStream)
//!     .await?;
//! // A second writer that still believes the stream is new loses:
//! let stale = cart.append(vec![ItemAdded { sku: "B-2".into(), quantity: 1 }],
//!                         ExpectedVersion::NoStream).await;
//! assert!(stale.unwrap_err().is_conflict());
//! let items = cart.read(&ReadOptions::new()).await?;
//! assert_eq!(items[0].payload, ItemAdded { sku: "A-1".into(), quantity: 2 });
//! assert_eq!(items[0].version, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `testkit`: the conformance suite ([`testkit`]) every backend runs, as public async functions,
//!   the [`conformance_tests!`] macro that instantiates it, and the model-based property test.
#![deny(missing_docs)]

pub mod append;
mod codec;
mod entry;
mod error;
mod feed;
mod lifecycle;
mod memory;
mod name;
mod read;
mod store;
mod stream;
mod subscribe;
#[cfg(feature = "testkit")]
pub mod testkit;
mod upcast;

pub use codec::{Codec, JsonCodec};
pub use entry::{AppendInput, AppendOutcome, Entry, ExpectedVersion, StreamStat};
pub use error::{BackendErrorKind, Error, Result};
pub use feed::{FeedRecord, Mutation, stored_position};
pub use lifecycle::Lifecycle;
pub use memory::MemoryStore;
pub use name::{
    MAX_STREAM_LEN, MAX_TABLE_LEN, validate_cursor_name, validate_stream_id, validate_table_name,
};
pub use read::{
    DEFAULT_LIMIT, Direction, Filter, ListOptions, MAX_LIMIT, ReadOptions, payload_contains,
    validate_search_text,
};
pub use store::{Capabilities, ChangeFeed, CursorStore, FeedOrder, Health, Search, Store, StoreId};
pub use stream::{ReadOnlyStream, Stream};
pub use subscribe::{SubscribeOptions, subscribe_feed, subscribe_stream};
pub use upcast::{FieldMapper, UpcastFn, Upcaster, UpcasterChain, upcaster};

/// A short name for a JSON value's kind, for error messages.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
