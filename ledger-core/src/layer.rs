//! Layers: decorators that see every call of a store (to trace, time or count it) and forward
//! every capability, so wrapping a store never hides one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::backend::{
    Backend, ChangeFeedBackend, CursorBackend, HealthBackend, ReplicaBackend, SearchBackend,
};
use crate::capabilities::Capabilities;
use crate::entry::{
    AppendInput, AppendResult, Entry, EntryId, ExpectedVersion, RawPayload, StreamStat,
};
use crate::error::{Error, Result};
use crate::feed::{FeedRecord, Lane};
use crate::read::{ListOptions, ReadOptions, SearchQuery};
use crate::store::Store;

/// One operation of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`Store::append`].
    Append,
    /// [`Store::read`].
    Read,
    /// [`Store::count`].
    Count,
    /// [`Store::stat`].
    Stat,
    /// [`Store::list_streams`].
    ListStreams,
    /// [`Store::set_tags`].
    SetTags,
    /// [`Store::set_annotations`].
    SetAnnotations,
    /// [`Store::trim`].
    Trim,
    /// [`Store::rename_stream`].
    RenameStream,
    /// [`Store::close`].
    Close,
    /// [`Store::search`].
    Search,
    /// [`Store::read_feed`].
    ReadFeed,
    /// [`Store::get_cursor`].
    GetCursor,
    /// [`Store::set_cursor`].
    SetCursor,
    /// [`Store::health`].
    Health,
    /// [`Store::apply_replicated`].
    ApplyReplicated,
}

impl Operation {
    /// The operation's name, as used in metrics and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Append => "append",
            Operation::Read => "read",
            Operation::Count => "count",
            Operation::Stat => "stat",
            Operation::ListStreams => "list_streams",
            Operation::SetTags => "set_tags",
            Operation::SetAnnotations => "set_annotations",
            Operation::Trim => "trim",
            Operation::RenameStream => "rename_stream",
            Operation::Close => "close",
            Operation::Search => "search",
            Operation::ReadFeed => "read_feed",
            Operation::GetCursor => "get_cursor",
            Operation::SetCursor => "set_cursor",
            Operation::Health => "health",
            Operation::ApplyReplicated => "apply_replicated",
        }
    }
}

/// A call as a layer sees it: which operation, on which store. Stream ids and payloads are not
/// part of it, so a layer cannot put them into metric attributes by mistake.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The operation.
    pub operation: Operation,
    /// The wrapped store's name.
    pub store: &'a str,
    /// The wrapped store's backend (`"sqlite"`, …).
    pub backend: &'static str,
}

/// How a call ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// The error, if it failed.
    pub error: Option<&'a Error>,
    /// Entries appended or read, records read or applied (0 for other operations).
    pub items: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// A decorator's hooks; every one has a default that does nothing. Wrap a store with
/// [`Store::layer`].
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use ledger_core::{AppendInput, Call, ExpectedVersion, Layer, MemoryStore, Outcome};
///
/// #[derive(Default)]
/// struct Appended(AtomicU64);
/// impl Layer for Appended {
///     fn finished(&self, call: &Call<'_>, outcome: &Outcome<'_>) {
///         if call.operation == ledger_core::Operation::Append {
///             self.0.fetch_add(outcome.items, Ordering::Relaxed);
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ledger_core::Result<()> {
/// let counter = Arc::new(Appended::default());
/// let store = MemoryStore::new().layer(counter.clone());
/// store.append("s", vec![AppendInput::new(serde_json::json!(1))], ExpectedVersion::Any).await?;
/// assert_eq!(counter.0.load(Ordering::Relaxed), 1);
/// assert!(store.capabilities().change_feed.is_some()); // nothing hidden
/// # Ok(())
/// # }
/// ```
pub trait Layer: Send + Sync + 'static {
    /// Wraps the future that performs one call (to run it inside a tracing span, say).
    fn instrument<'a>(&'a self, call: &Call<'a>, run: BoxFuture<'a, ()>) -> BoxFuture<'a, ()> {
        let _ = call;
        run
    }

    /// Told when a call has finished.
    fn finished(&self, call: &Call<'_>, outcome: &Outcome<'_>) {
        let _ = (call, outcome);
    }
}

/// A shared layer, so its owner keeps a handle on it (to read what it counted, say).
impl<L: Layer> Layer for std::sync::Arc<L> {
    fn instrument<'a>(&'a self, call: &Call<'a>, run: BoxFuture<'a, ()>) -> BoxFuture<'a, ()> {
        (**self).instrument(call, run)
    }

    fn finished(&self, call: &Call<'_>, outcome: &Outcome<'_>) {
        (**self).finished(call, outcome)
    }
}

impl Store {
    /// This store wrapped in `layer`: every call goes through its hooks, every capability is
    /// offered exactly as before.
    pub fn layer(&self, layer: impl Layer) -> Store {
        Store::new(Layered {
            inner: self.clone(),
            layer,
        })
    }
}

/// A store seen through a layer.
struct Layered<L> {
    inner: Store,
    layer: L,
}

/// What a result carries, for [`Outcome::items`].
trait Items {
    fn items(&self) -> u64 {
        0
    }
}
impl Items for AppendResult {
    fn items(&self) -> u64 {
        self.appended().count() as u64
    }
}
impl<P> Items for Vec<Entry<P>> {
    fn items(&self) -> u64 {
        self.len() as u64
    }
}
impl Items for Vec<FeedRecord> {
    fn items(&self) -> u64 {
        self.len() as u64
    }
}
impl Items for Vec<String> {}
impl Items for StreamStat {}
impl Items for Option<u64> {}
impl Items for () {}

/// How many records an `apply_replicated` applied is its result.
struct Applied(u64);
impl Items for Applied {
    fn items(&self) -> u64 {
        self.0
    }
}
/// A count or a number of deleted entries.
struct Number(u64);
impl Items for Number {}

impl<L: Layer> Layered<L> {
    async fn call<T: Items + Send>(
        &self,
        operation: Operation,
        run: impl std::future::Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let call = Call {
            operation,
            store: self.inner.name(),
            backend: self.inner.backend_kind(),
        };
        let started = Instant::now();
        let mut result = None;
        let run = async {
            result = Some(run.await);
        };
        self.layer.instrument(&call, Box::pin(run)).await;
        let result = result.expect("a layer's instrument() must run the call");
        let outcome = Outcome {
            error: result.as_ref().err(),
            items: result.as_ref().map_or(0, Items::items),
            elapsed: started.elapsed(),
        };
        self.layer.finished(&call, &outcome);
        result
    }
}

#[async_trait]
impl<L: Layer> Backend for Layered<L> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &'static str {
        self.inner.backend_kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        let run = self.inner.append(stream, entries, expected);
        self.call(Operation::Append, run).await
    }

    async fn read(&self, stream: &str, options: &ReadOptions) -> Result<Vec<Entry>> {
        self.call(Operation::Read, self.inner.read(stream, options))
            .await
    }

    async fn read_json(
        &self,
        stream: &str,
        options: &ReadOptions,
    ) -> Result<Vec<Entry<RawPayload>>> {
        self.call(Operation::Read, self.inner.read_json(stream, options))
            .await
    }

    async fn count(&self, stream: &str) -> Result<u64> {
        let run = async { self.inner.count(stream).await.map(Number) };
        self.call(Operation::Count, run).await.map(|n| n.0)
    }

    async fn stat(&self, stream: &str) -> Result<StreamStat> {
        self.call(Operation::Stat, self.inner.stat(stream)).await
    }

    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        let run = self.inner.list_streams(options);
        self.call(Operation::ListStreams, run).await
    }

    async fn set_tags(&self, stream: &str, id: EntryId, tags: BTreeSet<String>) -> Result<()> {
        let run = self.inner.set_tags(stream, id, tags);
        self.call(Operation::SetTags, run).await
    }

    async fn set_annotations(
        &self,
        stream: &str,
        id: EntryId,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let run = self.inner.set_annotations(stream, id, changes);
        self.call(Operation::SetAnnotations, run).await
    }

    async fn trim(&self, stream: &str, up_to: EntryId) -> Result<u64> {
        let run = async { self.inner.trim(stream, up_to).await.map(Number) };
        self.call(Operation::Trim, run).await.map(|n| n.0)
    }

    async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        let run = self.inner.rename_stream(from, to);
        self.call(Operation::RenameStream, run).await
    }

    async fn close(&self) -> Result<()> {
        self.call(Operation::Close, self.inner.close()).await
    }

    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.commits()
    }

    fn as_search(&self) -> Option<&dyn SearchBackend> {
        self.inner.capabilities().search.any().then_some(self as _)
    }

    fn as_change_feed(&self) -> Option<&dyn ChangeFeedBackend> {
        self.inner.capabilities().change_feed.map(|_| self as _)
    }

    fn as_cursor_store(&self) -> Option<&dyn CursorBackend> {
        self.inner.capabilities().cursor_store.then_some(self as _)
    }

    fn as_health(&self) -> Option<&dyn HealthBackend> {
        self.inner.capabilities().health.then_some(self as _)
    }

    fn as_replica(&self) -> Option<&dyn ReplicaBackend> {
        self.inner.capabilities().replication.map(|_| self as _)
    }
}

#[async_trait]
impl<L: Layer> SearchBackend for Layered<L> {
    async fn search(
        &self,
        stream: Option<&str>,
        query: &SearchQuery,
        options: &ReadOptions,
    ) -> Result<Vec<Entry>> {
        let run = self.inner.search(stream, query.clone(), options);
        self.call(Operation::Search, run).await
    }
}

#[async_trait]
impl<L: Layer> ChangeFeedBackend for Layered<L> {
    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord>> {
        let run = self.inner.read_feed(after, limit);
        self.call(Operation::ReadFeed, run).await
    }

    async fn feed_head(&self) -> Result<Option<u64>> {
        let run = self.inner.feed_head();
        self.call(Operation::ReadFeed, run).await
    }
}

#[async_trait]
impl<L: Layer> CursorBackend for Layered<L> {
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>> {
        self.call(Operation::GetCursor, self.inner.get_cursor(name))
            .await
    }

    async fn set_cursor(&self, name: &str, position: u64) -> Result<()> {
        let run = self.inner.set_cursor(name, position);
        self.call(Operation::SetCursor, run).await
    }
}

#[async_trait]
impl<L: Layer> HealthBackend for Layered<L> {
    async fn health(&self) -> Result<()> {
        self.call(Operation::Health, self.inner.health()).await
    }
}

#[async_trait]
impl<L: Layer> ReplicaBackend for Layered<L> {
    async fn apply(&self, cursor: &str, lane: Option<Lane>, records: &[FeedRecord]) -> Result<u64> {
        let run = async {
            match lane {
                Some(lane) => {
                    self.inner
                        .apply_replicated_lane(cursor, lane, records)
                        .await
                }
                None => self.inner.apply_replicated(cursor, records).await,
            }
            .map(Applied)
        };
        self.call(Operation::ApplyReplicated, run)
            .await
            .map(|a| a.0)
    }
}
