//! A store wrapper that counts reads, so a test can wait until a subscription has read (and
//! found nothing) before it writes: the write can then only reach the subscription through a
//! wake-up, never through the read that was already under way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;

use crate::entry::{AppendInput, AppendOutcome, Entry, ExpectedVersion, StreamStat};
use crate::error::Result;
use crate::feed::FeedRecord;
use crate::read::{ListOptions, ReadOptions};
use crate::store::{Capabilities, ChangeFeed, CursorStore, Health, Search, Store};

/// Forwards every call to the wrapped store and counts completed `read` and `read_feed` calls.
#[derive(Clone)]
pub struct CountingStore<S> {
    inner: S,
    reads: Arc<tokio::sync::watch::Sender<u64>>,
}

impl<S: Store> CountingStore<S> {
    /// Wraps `inner`, with no reads counted.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            reads: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// Reads completed so far.
    pub fn reads(&self) -> u64 {
        *self.reads.borrow()
    }

    /// Waits until at least `n` reads have completed.
    pub async fn reads_reach(&self, n: u64) {
        let mut rx = self.reads.subscribe();
        rx.wait_for(|&reads| reads >= n)
            .await
            .expect("the counter lives as long as the store");
    }

    fn counted<T>(&self, result: Result<T>) -> Result<T> {
        self.reads.send_modify(|n| *n += 1);
        result
    }
}

#[async_trait]
impl<S: Store> Store for CountingStore<S> {
    type Id = S::Id;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<S::Id>>> {
        self.inner.append(stream, entries, expected).await
    }
    async fn read(&self, stream: &str, options: &ReadOptions<S::Id>) -> Result<Vec<Entry<S::Id>>> {
        let result = self.inner.read(stream, options).await;
        self.counted(result)
    }
    async fn count(&self, stream: &str) -> Result<u64> {
        self.inner.count(stream).await
    }
    async fn stat(&self, stream: &str) -> Result<StreamStat<S::Id>> {
        self.inner.stat(stream).await
    }
    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        self.inner.list_streams(options).await
    }
    async fn set_tags(&self, stream: &str, id: &S::Id, tags: BTreeSet<String>) -> Result<()> {
        self.inner.set_tags(stream, id, tags).await
    }
    async fn set_annotations(
        &self,
        stream: &str,
        id: &S::Id,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.inner.set_annotations(stream, id, changes).await
    }
    async fn trim(&self, stream: &str, up_to: &S::Id) -> Result<u64> {
        self.inner.trim(stream, up_to).await
    }
    async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename_stream(from, to).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.commits()
    }
    fn as_search(&self) -> Option<&dyn Search<Id = S::Id>> {
        self.inner.as_search()
    }
    fn as_change_feed(&self) -> Option<&dyn ChangeFeed<Id = S::Id>> {
        self.inner
            .as_change_feed()
            .map(|_| self as &dyn ChangeFeed<Id = S::Id>)
    }
    fn as_cursor_store(&self) -> Option<&dyn CursorStore> {
        self.inner.as_cursor_store()
    }
    fn as_health(&self) -> Option<&dyn Health> {
        self.inner.as_health()
    }
}

#[async_trait]
impl<S: Store> ChangeFeed for CountingStore<S> {
    type Id = S::Id;

    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord<S::Id>>> {
        let feed = self
            .inner
            .as_change_feed()
            .expect("offered only when the wrapped store has a change feed");
        let result = feed.read_feed(after, limit).await;
        self.counted(result)
    }
}
