//! A checkpointed consumer of the change feed: the loop the bridge, projections and read models
//! all need, written once.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use crate::error::Result;
use crate::feed::{FeedRecord, MutationKind};
use crate::name::validate_cursor_name;
use crate::store::Store;
use crate::subscribe::{SubscribeOptions, feed_pages};

/// Where a consumer keeps its position in the feed.
#[async_trait]
pub trait Checkpoint: Send + Sync {
    /// The position of the last record handled, if any.
    async fn load(&self) -> Result<Option<u64>>;
    /// Records that every record up to `position` was handled.
    async fn save(&self, position: u64) -> Result<()>;
}

/// A checkpoint kept as a named cursor of a store ([`Store::set_cursor`]).
#[derive(Debug, Clone)]
pub struct CursorCheckpoint {
    store: Store,
    name: String,
}

impl CursorCheckpoint {
    /// The cursor `name` of `store` (1 to 256 bytes, no NUL).
    pub fn new(store: impl AsRef<Store>, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        validate_cursor_name(&name)?;
        Ok(CursorCheckpoint {
            store: store.as_ref().clone(),
            name,
        })
    }
}

#[async_trait]
impl Checkpoint for CursorCheckpoint {
    async fn load(&self) -> Result<Option<u64>> {
        self.store.get_cursor(&self.name).await
    }

    async fn save(&self, position: u64) -> Result<()> {
        self.store.set_cursor(&self.name, position).await
    }
}

/// Consumes a store's change feed from a checkpoint: each batch of records (those the filters
/// keep) goes to a handler, and once the handler succeeds the checkpoint moves past the batch,
/// so a restarted consumer resumes where it stopped. Delivery is at least once: a batch whose
/// handler failed, or was interrupted, is delivered again. A handler that commits its effects
/// and its own checkpoint in one transaction (see [`FeedConsumer::checkpoint`]) gets them
/// exactly once.
///
/// ```
/// use ledger_core::{AppendInput, ExpectedVersion, FeedConsumer, MemoryStore, MutationKind};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ledger_core::Result<()> {
/// let store = MemoryStore::new();
/// store.append("orders", vec![AppendInput::new(serde_json::json!({"total": 5}))], ExpectedVersion::Any).await?;
///
/// let consumer = FeedConsumer::new(&store, "projection")?.kinds([MutationKind::Append]);
/// let mut seen = 0;
/// let reached = consumer.run_once(|records| { seen += records.len(); async { Ok(()) } }).await?;
/// assert_eq!((seen, reached), (1, Some(1)));
/// // Run again: the checkpoint says everything was handled.
/// assert_eq!(consumer.run_once(|_| async { Ok(()) }).await?, Some(1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FeedConsumer {
    store: Store,
    checkpoint: Arc<dyn Checkpoint>,
    streams: Option<BTreeSet<String>>,
    kinds: Option<BTreeSet<MutationKind>>,
    options: SubscribeOptions,
}

impl FeedConsumer {
    /// A consumer of `store`'s feed whose checkpoint is the cursor `name` of the same store.
    pub fn new(store: impl AsRef<Store>, name: impl Into<String>) -> Result<Self> {
        let store = store.as_ref().clone();
        let checkpoint = CursorCheckpoint::new(&store, name)?;
        Ok(FeedConsumer {
            store,
            checkpoint: Arc::new(checkpoint),
            streams: None,
            kinds: None,
            options: SubscribeOptions::default(),
        })
    }

    /// Keeps the checkpoint elsewhere: in another store, or in the handler's own database,
    /// where the handler commits it with its effects.
    pub fn checkpoint(mut self, checkpoint: impl Checkpoint + 'static) -> Self {
        self.checkpoint = Arc::new(checkpoint);
        self
    }

    /// Hands over only records of these streams (the others still move the checkpoint).
    pub fn streams<I, S>(mut self, streams: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.streams = Some(streams.into_iter().map(Into::into).collect());
        self
    }

    /// Hands over only records of these kinds (the others still move the checkpoint).
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = MutationKind>) -> Self {
        self.kinds = Some(kinds.into_iter().collect());
        self
    }

    /// How the feed is read and waited on (page size, poll interval, retries).
    pub fn options(mut self, options: SubscribeOptions) -> Self {
        self.options = options;
        self
    }

    fn keeps(&self, record: &FeedRecord) -> bool {
        self.streams
            .as_ref()
            .is_none_or(|s| s.contains(&record.stream))
            && self
                .kinds
                .as_ref()
                .is_none_or(|k| k.contains(&record.mutation.kind()))
    }

    /// Hands one page to `handle` (if the filters keep any of it) and saves the checkpoint.
    async fn consume<F, Fut>(&self, page: Vec<FeedRecord>, handle: &mut F) -> Result<Option<u64>>
    where
        F: FnMut(Vec<FeedRecord>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let Some(last) = page.last().map(|r| r.position) else {
            return Ok(None);
        };
        let kept: Vec<FeedRecord> = page.into_iter().filter(|r| self.keeps(r)).collect();
        if !kept.is_empty() {
            handle(kept).await?;
        }
        self.checkpoint.save(last).await?;
        Ok(Some(last))
    }

    /// Handles every record after the checkpoint, then live ones as they commit, until
    /// `handle` or a read fails (transient read errors are retried). Dropping the future stops
    /// it; the batch in hand is delivered again next time.
    pub async fn run<F, Fut>(&self, mut handle: F) -> Result<()>
    where
        F: FnMut(Vec<FeedRecord>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let after = self.checkpoint.load().await?;
        let mut pages = feed_pages(self.store.clone(), after, self.options);
        while let Some(page) = pages.next().await {
            self.consume(page?, &mut handle).await?;
        }
        Ok(())
    }

    /// Handles every record after the checkpoint that has committed by now, then returns the
    /// position reached (`None` if the feed was empty and nothing was ever handled): for
    /// tests, one-shot backfills and catch-up before serving.
    pub async fn run_once<F, Fut>(&self, handle: F) -> Result<Option<u64>>
    where
        F: FnMut(Vec<FeedRecord>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        self.run_to(None, handle).await
    }

    /// Handles the records after the checkpoint up to position `until` (inclusive), then
    /// returns the position reached: for consumers that must stay behind another, such as the
    /// later stages of an ordered pipeline, each one going only as far as the stage before it.
    pub async fn run_until<F, Fut>(&self, until: u64, handle: F) -> Result<Option<u64>>
    where
        F: FnMut(Vec<FeedRecord>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        self.run_to(Some(until), handle).await
    }

    async fn run_to<F, Fut>(&self, until: Option<u64>, mut handle: F) -> Result<Option<u64>>
    where
        F: FnMut(Vec<FeedRecord>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let mut after = self.checkpoint.load().await?;
        loop {
            if until.is_some_and(|until| after.is_some_and(|after| after >= until)) {
                return Ok(after);
            }
            let mut page = self.store.read_feed(after, self.options.batch).await?;
            let full = page.len() == self.options.batch as usize;
            let cut = until.map(|until| page.iter().position(|r| r.position > until));
            if let Some(Some(at)) = cut {
                page.truncate(at);
            }
            if let Some(last) = self.consume(page, &mut handle).await? {
                after = Some(last);
            }
            if !full || matches!(cut, Some(Some(_))) {
                return Ok(after);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppendInput, ExpectedVersion, MemoryStore};

    #[tokio::test]
    async fn run_until_stops_at_the_bound_and_resumes_after_it() {
        let store = MemoryStore::new();
        for n in 0..5 {
            let entry = AppendInput::new(serde_json::json!({ "n": n }));
            store
                .append_one("s", entry, ExpectedVersion::Any)
                .await
                .unwrap();
        }
        let consumer = FeedConsumer::new(&store, "stage")
            .unwrap()
            .options(SubscribeOptions::new().batch(2));
        let mut seen = Vec::new();
        let reached = consumer
            .run_until(3, |records| {
                seen.extend(records.iter().map(|r| r.position));
                async { Ok(()) }
            })
            .await
            .unwrap();
        assert_eq!((reached, seen.clone()), (Some(3), vec![1, 2, 3]));
        // At the bound already: nothing more is handed over.
        let again = consumer.run_until(3, |_| async { panic!("past the bound") });
        assert_eq!(again.await.unwrap(), Some(3));
        let reached = consumer
            .run_once(|records| {
                seen.extend(records.iter().map(|r| r.position));
                async { Ok(()) }
            })
            .await
            .unwrap();
        assert_eq!((reached, seen), (Some(5), vec![1, 2, 3, 4, 5]));
    }
}
