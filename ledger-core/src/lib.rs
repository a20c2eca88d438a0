//! Core of `ledger`: typed, append-only streams of entries over pluggable stores.
//!
//! A [`Store`] is one entity type (a table or collection); a stream is one instance inside it,
//! named by a string and created by its first append. Entries carry a JSON payload, a per-stream
//! version, optional order and dedup keys, a schema version, immutable metadata, and mutable tags
//! and annotations. Appends check an [`ExpectedVersion`] (optimistic concurrency decided by the
//! database) and skip inputs whose dedup key is taken, reporting an [`AppendOutcome`] per input
//! and the stream's version afterwards ([`AppendResult`]).
//!
//! [`Store`] is one type for every backend (SQLite, PostgreSQL, … in their own crates, or
//! `ledger::open(url)` to pick one at run time): it validates every call the same way before a
//! backend sees it, and reports what the backend offers in [`Capabilities`]. Ids are
//! [`EntryId`]s, the same 64-bit integers on every backend.
//!
//! The typed layer, [`Stream`], encodes payloads with a [`Codec`] ([`JsonCodec`] by default),
//! upcasts older entries on read through [`Upcaster`] steps such as [`FieldMapper`], reads a
//! whole stream page by page ([`Stream::read_all`]), and retries optimistic decisions
//! ([`Stream::decide`]). It reads payloads as JSON text ([`Store::read_json`], a
//! [`RawPayload`] each) and decodes that text straight into the event type, building no
//! [`serde_json::Value`] unless an upcast needs one. Subscriptions ([`Store::subscribe`], [`Store::subscribe_feed`]) deliver
//! everything after a starting point, then live records, without loss or duplicates; a
//! [`FeedConsumer`] does so from a checkpoint it keeps. [`Layer`]s wrap a store to trace or
//! measure it without hiding anything it offers.
//!
//! Errors are one enum, [`Error`], naming the bad value. A database failure is
//! [`Error::Backend`] with a [`BackendErrorKind`]; [`Error::is_transient`] and
//! [`Error::is_conflict`] say whether a retry can succeed. Subscriptions retry transient errors
//! and end on any other, so a consumer learns of corrupt stored data instead of waiting forever.
//!
//! [`MemoryStore`] is the complete reference implementation; [`backend`] is for backend authors
//! (with a guide to writing one).
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
//! let store = MemoryStore::new();
//! let cart = Stream::<ItemAdded>::new(&store, "cart-1")?;
//! let first = cart
//!     .append(vec![ItemAdded { sku: "A-1".into(), quantity: 2 }], ExpectedVersion::NoStream)
//!     .await?;
//! assert_eq!(first.next_expected(), ExpectedVersion::Exact(1));
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
//! - `testkit`: the conformance suite ([`testkit`]) every backend runs, the
//!   [`conformance_main!`] macro that runs it (reporting what a store's capabilities exclude as
//!   skipped), and the model-based property test.
//! - `testcontainers` (implies `testkit`): with `LEDGER_TEST_SERVERS=containers`, server tests
//!   start official Docker images instead of the native servers (`testkit::containers`).
#![deny(missing_docs)]

pub mod backend;
mod capabilities;
mod codec;
mod consumer;
mod entry;
mod error;
mod feed;
mod layer;
mod memory;
mod name;
mod read;
mod store;
mod stream;
mod subscribe;
#[cfg(feature = "testkit")]
pub mod testkit;
mod upcast;
mod validate;

pub use capabilities::{
    Capabilities, Conditions, FeedOrder, Replication, SearchModes, TimestampPrecision,
};
pub use codec::{Codec, JsonCodec};
pub use consumer::{Checkpoint, CursorCheckpoint, FeedConsumer};
pub use entry::{
    AppendInput, AppendOutcome, AppendResult, Entry, EntryId, ExpectedVersion, RawPayload,
    StreamStat,
};
pub use error::{BackendErrorKind, CodecError, Error, Result};
pub use feed::{FeedRecord, Lane, LaneRun, Mutation, MutationKind};
pub use layer::{Call, Layer, Operation, Outcome};
pub use memory::MemoryStore;
pub use name::{
    MAX_REPLICATION_CURSOR_LEN, MAX_STREAM_LEN, MAX_TABLE_LEN, validate_cursor_name,
    validate_replication_cursor, validate_stream_id, validate_table_name,
};
pub use read::{
    DEFAULT_LIMIT, Direction, Filter, ListOptions, MAX_LIMIT, ReadOptions, SearchMode, SearchQuery,
    payload_contains,
};
pub use store::Store;
pub use stream::{ReadOnlyStream, Stream};
pub use subscribe::{SubscribeOptions, subscribe_feed, subscribe_stream};
pub use upcast::{FieldMapper, UpcastFn, Upcaster, UpcasterChain, upcaster};
pub use validate::{MAX_PAYLOAD_DEPTH, validate_append};

impl AsRef<Store> for Store {
    fn as_ref(&self) -> &Store {
        self
    }
}

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
