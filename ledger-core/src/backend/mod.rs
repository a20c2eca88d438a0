//! For backend authors: the trait a storage backend implements, and the pieces every backend
//! shares (append planning, the commit signal, stored-record conversions).
//!
//! # Writing a backend
//!
//! A backend is a type that implements [`Backend`] (and the capability traits it offers); users
//! never call it directly. They hold a [`crate::Store`], made with [`crate::Store::new`], which
//! sits in front of every backend and does once, for all of them, what the contract asks before
//! a call reaches storage:
//!
//! - refuses every call after [`crate::Store::close`] with [`crate::Error::StoreClosed`];
//! - validates stream ids, append inputs (keys, metadata, tags, payload depth), tags,
//!   annotations, cursor names, search texts and page limits, naming the bad value;
//! - answers an empty append without the backend, and [`crate::Error::NotSupported`] for a
//!   capability the backend does not offer (from the `as_*` accessors);
//! - names the store in every [`crate::Error::Backend`] the backend returns.
//!
//! So a backend method may assume valid arguments and an open store, and writes only what is
//! specific to its storage:
//!
//! 1. **Append** ([`Backend::append`]): inside one transaction or lock, read the stream's version
//!    and which of the batch's dedup keys it already holds ([`append::dedup_keys`]), decide with
//!    [`append::plan_append`] (dedup within the batch and against the store, the expected-version
//!    check, the all-duplicates retry rule), write [`append::AppendPlan::rows`] and return
//!    [`append::AppendPlan::result`]. Let the database decide races: a unique `(stream,
//!    version)` and `(stream, dedup_key)` index, so that of two appenders expecting one version
//!    exactly one wins, from any process. Ids ascend with versions within a stream. A database
//!    that can decide none of this (no transactions, no unique constraints) leaves it to the
//!    store handle, a lock per stream, and reports [`crate::Conditions::Handle`].
//! 2. **Reads** keep [`crate::ReadOptions`] exactly: cursors by id and by version in both
//!    directions ([`crate::ReadOptions::is_past_cursors`]), every filter ANDed
//!    ([`crate::Filter::matches`] is the reference), ordered by id.
//! 3. **Capabilities** ([`Backend::capabilities`]) start from [`crate::Capabilities::none`] and
//!    name what the backend keeps; each `as_*` accessor returns the capability's implementation
//!    or `None`, and agrees with the flags (the suite checks both).
//! 4. **Change feed** (if offered): one record per mutation, in the mutation's transaction,
//!    never readable below a position a reader has seen ([`crate::FeedOrder`]). An append's
//!    record names its entries by id ([`feed::StoredChange`]) and reading joins them back
//!    ([`feed::join_entries`]), so the feed does not store every payload twice.
//! 5. **Wake-ups**: [`Backend::commits`] hands out a [`CommitSignal`] receiver that the
//!    backend raises after its commits (and on notifications from other processes, where the
//!    database has them); subscriptions poll otherwise.
//! 6. **Errors**: driver errors become [`crate::Error::Backend`] with a
//!    [`crate::BackendErrorKind`]; stored data that does not decode is
//!    [`crate::Error::corrupt`], never a panic.
//! 7. **Tests**: a `tests/conformance.rs` of a few lines runs the whole conformance suite and the
//!    model test against a real server ([`crate::testkit`], feature `testkit`).
//!
//! [`crate::MemoryStore`]'s backend (`memory.rs`) is the reference implementation, short enough
//! to read whole.

pub mod append;
pub mod feed;
pub mod replica;
mod signal;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::entry::{
    AppendInput, AppendResult, Entry, EntryId, ExpectedVersion, RawPayload, StreamStat,
};
use crate::error::{Error, Result};
use crate::feed::{FeedRecord, Lane};
use crate::read::{ListOptions, ReadOptions, SearchQuery};

pub use signal::CommitSignal;

/// A storage backend behind a [`crate::Store`]. Every method receives arguments the store has
/// validated, on an open store; see the [module docs](self).
///
/// The capability accessors have no defaults: a backend (or a layer wrapping one) says for each
/// capability whether it offers it, so none is hidden by forgetting it.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The store's name (its table or collection), for errors and metrics.
    fn name(&self) -> &str;

    /// The backend's name (`"sqlite"`, `"postgres"`, …), for metrics.
    fn kind(&self) -> &'static str;

    /// What this store offers.
    fn capabilities(&self) -> Capabilities;

    /// Appends a non-empty batch; see [`crate::Store::append`].
    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult>;

    /// One page of `stream`; see [`crate::Store::read`].
    async fn read(&self, stream: &str, options: &ReadOptions) -> Result<Vec<Entry>>;

    /// One page of `stream` with each payload as its JSON text; see [`crate::Store::read_json`].
    /// The default serializes what [`Backend::read`] returns; a backend that stores JSON text
    /// hands it over as it is instead.
    async fn read_json(
        &self,
        stream: &str,
        options: &ReadOptions,
    ) -> Result<Vec<Entry<RawPayload>>> {
        self.read(stream, options)
            .await?
            .into_iter()
            .map(|entry| {
                let id = entry.id;
                entry.map_payload(|payload| {
                    serde_json::value::to_raw_value(&payload)
                        .map_err(|e| Error::corrupt(format_args!("payload of entry {id}: {e}")))
                })
            })
            .collect()
    }

    /// See [`crate::Store::count`].
    async fn count(&self, stream: &str) -> Result<u64>;

    /// See [`crate::Store::stat`].
    async fn stat(&self, stream: &str) -> Result<StreamStat>;

    /// See [`crate::Store::list_streams`].
    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>>;

    /// See [`crate::Store::set_tags`]; [`Error::NotSupported`] without the capability.
    async fn set_tags(&self, stream: &str, id: EntryId, tags: BTreeSet<String>) -> Result<()>;

    /// See [`crate::Store::set_annotations`]; [`Error::NotSupported`] without the capability.
    async fn set_annotations(
        &self,
        stream: &str,
        id: EntryId,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()>;

    /// See [`crate::Store::trim`]; [`Error::NotSupported`] without the capability.
    async fn trim(&self, stream: &str, up_to: EntryId) -> Result<u64>;

    /// See [`crate::Store::rename_stream`]; [`Error::NotSupported`] without the capability.
    async fn rename_stream(&self, from: &str, to: &str) -> Result<()>;

    /// Releases connections; the store refuses every call from now on.
    async fn close(&self) -> Result<()>;

    /// The commit signal that wakes subscriptions; `None` means they poll alone.
    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>>;

    /// Search, where offered.
    fn as_search(&self) -> Option<&dyn SearchBackend>;

    /// The change feed, where offered and enabled.
    fn as_change_feed(&self) -> Option<&dyn ChangeFeedBackend>;

    /// Durable named cursors, where offered.
    fn as_cursor_store(&self) -> Option<&dyn CursorBackend>;

    /// Health checks, where offered.
    fn as_health(&self) -> Option<&dyn HealthBackend>;

    /// Applying replicated feed records, where offered.
    fn as_replica(&self) -> Option<&dyn ReplicaBackend>;
}

/// Search over payloads; see [`crate::Store::search`].
#[async_trait]
pub trait SearchBackend: Send + Sync {
    /// Entries of `stream` (of every stream with `None`) matching `query`, a mode the
    /// capabilities offer.
    async fn search(
        &self,
        stream: Option<&str>,
        query: &SearchQuery,
        options: &ReadOptions,
    ) -> Result<Vec<Entry>>;
}

/// The store's mutation log; see [`crate::Store::read_feed`].
#[async_trait]
pub trait ChangeFeedBackend: Send + Sync {
    /// Up to `limit` records with position greater than `after` (from the start with `None`),
    /// ascending. Never returns a record while an earlier position may still commit.
    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord>>;

    /// The highest position [`ChangeFeedBackend::read_feed`] can return now; `None` while the
    /// feed is empty.
    async fn feed_head(&self) -> Result<Option<u64>>;
}

/// Durable named positions; see [`crate::Store::get_cursor`].
#[async_trait]
pub trait CursorBackend: Send + Sync {
    /// The saved position, if any.
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>>;

    /// Saves `position` unless a greater one is already saved.
    async fn set_cursor(&self, name: &str, position: u64) -> Result<()>;
}

/// Liveness of the database; see [`crate::Store::health`].
#[async_trait]
pub trait HealthBackend: Send + Sync {
    /// `Ok` if the database answers.
    async fn health(&self) -> Result<()>;
}

/// Applying another store's feed records; see [`crate::Store::apply_replicated`].
#[async_trait]
pub trait ReplicaBackend: Send + Sync {
    /// Applies `records` (ascending positions, non-empty; with a `lane`, all of it and no
    /// renames) above the saved cursors, keeping their ids, versions and timestamps, and saves
    /// the cursor at the last record's position: `replica::apply_records` does it all on a
    /// backend's `ReplicaTarget`. Returns how many records were applied (not skipped).
    async fn apply(&self, cursor: &str, lane: Option<Lane>, records: &[FeedRecord]) -> Result<u64>;
}

/// A feed position or cursor as the SQL backends store it (`BIGINT`).
pub fn stored_position(position: u64) -> Result<i64> {
    i64::try_from(position).map_err(|_| {
        Error::InvalidArgument(format!(
            "position {position} exceeds the largest, {}",
            i64::MAX
        ))
    })
}

/// The string values of a payload, depth first, in document order: what substring search
/// matches (keys, numbers and JSON punctuation never match).
pub fn payload_strings(payload: &serde_json::Value) -> Vec<&str> {
    use serde_json::Value;
    let mut strings = Vec::new();
    let mut pending = vec![payload];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(s) => strings.push(s.as_str()),
            Value::Array(items) => pending.extend(items.iter().rev()),
            Value::Object(map) => pending.extend(map.values().rev()),
            _ => {}
        }
    }
    strings
}
