//! The backend contract: one object-safe trait every store implements, plus optional capabilities.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Display};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::{AppendInput, AppendOutcome, Entry, ExpectedVersion, StreamStat};
use crate::error::Result;
use crate::feed::FeedRecord;
use crate::read::{ListOptions, ReadOptions};

/// What a store's entry id must offer: ordered, printable and parseable (so cursors travel as
/// strings) and serializable (so ids travel in change-feed records).
pub trait StoreId:
    Clone + Ord + Debug + Display + FromStr + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

impl<T> StoreId for T where
    T: Clone
        + Ord
        + Debug
        + Display
        + FromStr
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// How a store orders its change feed relative to commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedOrder {
    /// Positions are assigned in commit order: a reader never finds a new record below one it saw.
    CommitOrdered,
    /// Positions may be taken out of commit order, but readers stop below uncommitted ones.
    GapSafeWatermark,
}

/// What a store offers. The conformance suite requires every behaviour marked `true` and
/// [`crate::Error::NotSupported`] from every operation marked `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Appends are atomic: all entries of a batch are written, or none.
    pub atomic_append: bool,
    /// Dedup keys are enforced.
    pub dedup: bool,
    /// `set_tags` is supported.
    pub tags: bool,
    /// `set_annotations` and annotation filters are supported.
    pub annotations: bool,
    /// `rename_stream` is supported.
    pub rename: bool,
    /// [`Search`] is offered (see [`Search::search`]).
    pub search: bool,
    /// [`ChangeFeed`] is offered and enabled, with this ordering.
    pub change_feed: Option<FeedOrder>,
    /// [`CursorStore`] is offered.
    pub cursor_store: bool,
    /// [`Health`] is offered.
    pub health: bool,
}

impl Capabilities {
    /// Every capability, with a commit-ordered change feed.
    pub const fn all() -> Self {
        Capabilities {
            atomic_append: true,
            dedup: true,
            tags: true,
            annotations: true,
            rename: true,
            search: true,
            change_feed: Some(FeedOrder::CommitOrdered),
            cursor_store: true,
            health: true,
        }
    }

    /// The same capabilities without a change feed.
    pub const fn without_change_feed(mut self) -> Self {
        self.change_feed = None;
        self
    }
}

/// A store of entries: one table or collection, many streams.
///
/// Object-safe: `Arc<dyn Store<Id = i64>>` works. Optional capabilities are reached through the
/// `as_*` accessors, which wrappers must forward so that wrapping never hides a capability.
#[async_trait]
pub trait Store: Send + Sync {
    /// The id type of this store's entries (`i64` for the SQL backends).
    type Id: StoreId;

    /// What this store offers.
    fn capabilities(&self) -> Capabilities;

    /// Appends `entries` to `stream` if its version satisfies `expected`.
    ///
    /// Returns one outcome per input, in input order. Inputs whose dedup key is already in the
    /// stream, or earlier in the batch, are reported as duplicates and not written. A batch made
    /// only of duplicates succeeds whatever `expected` says, so an idempotent retry never fails.
    /// An empty batch writes nothing and returns an empty vector (after validating `stream`).
    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<Self::Id>>>;

    /// Reads one page of `stream`. A stream that does not exist reads as empty.
    async fn read(
        &self,
        stream: &str,
        options: &ReadOptions<Self::Id>,
    ) -> Result<Vec<Entry<Self::Id>>>;

    /// Number of entries the stream holds.
    async fn count(&self, stream: &str) -> Result<u64>;

    /// Count, first and last id, and last version of the stream.
    async fn stat(&self, stream: &str) -> Result<StreamStat<Self::Id>>;

    /// Stream ids holding at least one entry, ascending (bytewise). A stream trimmed to empty is
    /// not listed, though it still exists for [`ExpectedVersion`] checks: its version survives
    /// the trim, so versions are never reused.
    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>>;

    /// Replaces the tags of one entry. Setting the tags it already has changes nothing: no
    /// `updated_at`, no change-feed record.
    async fn set_tags(&self, stream: &str, id: &Self::Id, tags: BTreeSet<String>) -> Result<()>;

    /// Merges annotation changes into one entry: `Some` sets a key, `None` deletes it.
    /// Atomic under concurrent callers: no change is lost. Changes that leave the annotations as
    /// they were (none at all, a key set to its value, a missing key deleted) change nothing: no
    /// `updated_at`, no change-feed record. An unknown entry is
    /// [`crate::Error::EntryNotFound`] either way.
    async fn set_annotations(
        &self,
        stream: &str,
        id: &Self::Id,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()>;

    /// Deletes the stream's entries with id `<= up_to` and returns how many were deleted.
    /// The stream's version is kept, so later appends continue after it.
    async fn trim(&self, stream: &str, up_to: &Self::Id) -> Result<u64>;

    /// Moves every entry of `from` (ids and versions unchanged) and its version to `to`.
    /// `from` must exist and `to` must not ([`crate::Error::StreamNotFound`],
    /// [`crate::Error::StreamExists`]).
    async fn rename_stream(&self, from: &str, to: &str) -> Result<()>;

    /// Closes the store; every later call fails with [`crate::Error::StoreClosed`].
    async fn close(&self) -> Result<()>;

    /// Wakes subscriptions: the value changes after each commit made through this handle.
    /// `None` means subscribers rely on polling alone.
    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Full-text or substring search, where offered.
    fn as_search(&self) -> Option<&dyn Search<Id = Self::Id>> {
        None
    }

    /// The change feed, where offered and enabled.
    fn as_change_feed(&self) -> Option<&dyn ChangeFeed<Id = Self::Id>> {
        None
    }

    /// Durable named cursors, where offered.
    fn as_cursor_store(&self) -> Option<&dyn CursorStore> {
        None
    }

    /// Health checks, where offered.
    fn as_health(&self) -> Option<&dyn Health> {
        None
    }
}

/// Search over payloads.
#[async_trait]
pub trait Search: Send + Sync {
    /// The store's id type.
    type Id: StoreId;

    /// Entries of `stream` (with `None`, of every stream of the store) that have a string value
    /// in their payload, at any depth, containing `text` ignoring ASCII case: the semantics of
    /// [`crate::payload_contains`], which every backend keeps. Object keys, numbers, booleans and
    /// JSON punctuation are not searched. `text` must not be empty or contain NUL
    /// ([`crate::Error::InvalidArgument`]). Cursor, direction, limit and every filter of
    /// `options` apply as in [`Store::read`]. A backend may offer other modes (PostgreSQL's full
    /// text search), documented there.
    async fn search(
        &self,
        stream: Option<&str>,
        text: &str,
        options: &ReadOptions<Self::Id>,
    ) -> Result<Vec<Entry<Self::Id>>>;
}

/// The store's mutation log: one record per committed mutation, by position.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// The store's id type.
    type Id: StoreId;

    /// Up to `limit` records with position greater than `after` (from the start with `None`),
    /// ascending. Never returns a record while an earlier position may still commit.
    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord<Self::Id>>>;
}

/// Durable named positions (used by the bridge and by consumers of the change feed). Names are
/// 1 to 256 bytes without NUL ([`crate::validate_cursor_name`]).
#[async_trait]
pub trait CursorStore: Send + Sync {
    /// The saved position, if any.
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>>;

    /// Saves `position` unless a greater one is already saved: cursors never move back.
    async fn set_cursor(&self, name: &str, position: u64) -> Result<()>;
}

/// Liveness of the store's database.
#[async_trait]
pub trait Health: Send + Sync {
    /// `Ok` if the database answers.
    async fn health(&self) -> Result<()>;
}

#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    type Id = S::Id;

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<Self::Id>>> {
        (**self).append(stream, entries, expected).await
    }
    async fn read(
        &self,
        stream: &str,
        options: &ReadOptions<Self::Id>,
    ) -> Result<Vec<Entry<Self::Id>>> {
        (**self).read(stream, options).await
    }
    async fn count(&self, stream: &str) -> Result<u64> {
        (**self).count(stream).await
    }
    async fn stat(&self, stream: &str) -> Result<StreamStat<Self::Id>> {
        (**self).stat(stream).await
    }
    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        (**self).list_streams(options).await
    }
    async fn set_tags(&self, stream: &str, id: &Self::Id, tags: BTreeSet<String>) -> Result<()> {
        (**self).set_tags(stream, id, tags).await
    }
    async fn set_annotations(
        &self,
        stream: &str,
        id: &Self::Id,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        (**self).set_annotations(stream, id, changes).await
    }
    async fn trim(&self, stream: &str, up_to: &Self::Id) -> Result<u64> {
        (**self).trim(stream, up_to).await
    }
    async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        (**self).rename_stream(from, to).await
    }
    async fn close(&self) -> Result<()> {
        (**self).close().await
    }
    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        (**self).commits()
    }
    fn as_search(&self) -> Option<&dyn Search<Id = Self::Id>> {
        (**self).as_search()
    }
    fn as_change_feed(&self) -> Option<&dyn ChangeFeed<Id = Self::Id>> {
        (**self).as_change_feed()
    }
    fn as_cursor_store(&self) -> Option<&dyn CursorStore> {
        (**self).as_cursor_store()
    }
    fn as_health(&self) -> Option<&dyn Health> {
        (**self).as_health()
    }
}
