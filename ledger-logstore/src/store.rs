//! The log store: every accepted write is an entry of a ledger stream first; the read model
//! follows the ledger's change feed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_core::{
    AppendInput, AppendOutcome, ExpectedVersion, FeedConsumer, MutationKind, Store,
    SubscribeOptions,
};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::filter::{Pagination, SearchFilters};
use crate::model::{Log, LogUpdate};
use crate::query::{self, FilterData, Histogram, HistogramKind, SearchResult, SearchStats};
use crate::readmodel::{self, LogEvent};
use crate::retention::Retention;

/// The ledger stream every log event goes to.
pub const LOG_STREAM: &str = "logs";

/// The ledger table the log store keeps its stream in, unless [`LogStoreOptions::ledger_table`]
/// names another.
pub const DEFAULT_LEDGER_TABLE: &str = "logstore_ledger";

/// How a [`LogStore`] keeps logs.
#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    /// Keep what requests sent and received (default `true`); off, only the figures are kept.
    pub content_logging: bool,
    /// The most bytes one content field keeps (default 256 KiB); longer ones become a preview
    /// and flag the log as a large payload.
    pub max_content_bytes: usize,
    /// The ledger table (default [`DEFAULT_LEDGER_TABLE`]).
    pub ledger_table: String,
    /// Retention: the one place it is configured (default: keep everything).
    pub retention: Option<Retention>,
    /// How long a `processing` log may wait for its end before [`LogStore::flush`] removes it
    /// (Bifrost's 30 minutes).
    pub processing_timeout: Duration,
}

impl Default for LogStoreOptions {
    fn default() -> LogStoreOptions {
        LogStoreOptions {
            content_logging: true,
            max_content_bytes: 256 * 1024,
            ledger_table: DEFAULT_LEDGER_TABLE.to_owned(),
            retention: None,
            processing_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// An LLM request-log store with Bifrost's operations, on a ledger. Clones share the store.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Store,
    db: Db,
    options: LogStoreOptions,
    /// One catch-up at a time in this process (others in other processes are safe anyway).
    projecting: Mutex<()>,
    follower: std::sync::Mutex<Option<JoinHandle<()>>>,
    pub(crate) dropped: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.follower.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("backend", &self.inner.ledger.backend_kind())
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens the log store at `url`: `sqlite:PATH` (the file is created if missing),
    /// `sqlite::memory:`, or `postgres://…`. Creates the tables if missing and brings the read
    /// model up to date before returning.
    pub async fn open(url: &str, options: LogStoreOptions) -> Result<LogStore> {
        let (ledger, db) = ledger_readmodel::open(url, &options.ledger_table)
            .await
            .map_err(|e| match e {
                ledger_core::Error::InvalidArgument(reason) => Error::invalid("url", reason),
                other => Error::Store(other),
            })?;
        readmodel::migrate(&db).await?;
        let store = LogStore {
            inner: Arc::new(Inner {
                ledger,
                db,
                options,
                projecting: Mutex::new(()),
                follower: std::sync::Mutex::new(None),
                dropped: AtomicU64::new(0),
            }),
        };
        store.catch_up().await?;
        Ok(store)
    }

    /// The ledger the logs are kept in.
    pub fn ledger(&self) -> &Store {
        &self.inner.ledger
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &LogStoreOptions {
        &self.inner.options
    }

    /// `Ok` if the database answers.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.inner.ledger.health().await?)
    }

    /// Applies every ledger event the read model has not yet applied. Writes through this
    /// store do it before they return; call it to see writes other processes made.
    pub async fn catch_up(&self) -> Result<()> {
        let _one = self.inner.projecting.lock().await;
        self.consumer()?
            .run_once(|records| {
                let db = self.inner.db.clone();
                async move {
                    readmodel::apply(&db, records)
                        .await
                        .map_err(ledger_core::Error::from)
                }
            })
            .await?;
        Ok(())
    }

    fn consumer(&self) -> Result<FeedConsumer> {
        Ok(FeedConsumer::new(&self.inner.ledger, "logstore")?
            .checkpoint(readmodel::checkpoint(&self.inner.db)?)
            .streams([LOG_STREAM])
            .kinds([MutationKind::Append])
            .options(
                SubscribeOptions::new()
                    .batch(2000)
                    .poll_interval(Duration::from_millis(200)),
            ))
    }

    /// Keeps the read model following the ledger in the background (for writes other
    /// processes make), until the store is dropped. Idempotent.
    pub fn follow(&self) -> Result<()> {
        let mut follower = self.inner.follower.lock().expect("follower lock");
        if follower.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let consumer = self.consumer()?;
        let weak = Arc::downgrade(&self.inner);
        *follower = Some(tokio::spawn(async move {
            loop {
                let result = consumer
                    .run(|records| {
                        let weak = weak.clone();
                        async move {
                            let Some(inner) = weak.upgrade() else {
                                return Ok(());
                            };
                            let _one = inner.projecting.lock().await;
                            readmodel::apply(&inner.db, records)
                                .await
                                .map_err(ledger_core::Error::from)
                        }
                    })
                    .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "log store read model: following the ledger failed; retrying");
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
        Ok(())
    }

    /// Prepares a log for the ledger: checked, `created_at` set, content dropped or capped as
    /// configured.
    fn accept(&self, mut log: Log, now: DateTime<Utc>) -> Result<Log> {
        log.validate()?;
        if log.created_at.is_none() {
            log.created_at = Some(now);
        }
        if !self.inner.options.content_logging {
            log.drop_content();
        } else {
            log.cap_content(self.inner.options.max_content_bytes);
        }
        Ok(log)
    }

    /// Appends events to the ledger (durable when this returns) and reports which were
    /// duplicates (creates of an id accepted before).
    pub(crate) async fn append(&self, inputs: Vec<AppendInput>) -> Result<Vec<bool>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let result = self
            .inner
            .ledger
            .append(LOG_STREAM, inputs, ExpectedVersion::Any)
            .await?;
        Ok(result
            .outcomes
            .iter()
            .map(|o| matches!(o, AppendOutcome::Duplicate { .. }))
            .collect())
    }

    /// A log made ready for the ledger, with its id as dedup key: a second create of one id
    /// is a duplicate, never a second log.
    pub(crate) fn create_input(&self, log: Log, now: DateTime<Utc>) -> Result<AppendInput> {
        let log = self.accept(log, now)?;
        let key = log.id.clone();
        let input = event_input(&LogEvent::Create { log: Box::new(log) })?.dedup_key(key);
        // What the ledger would refuse (content nested too deep) is refused here, alone, so
        // it never fails a batch of other logs.
        ledger_core::validate_append(LOG_STREAM, std::slice::from_ref(&input))
            .map_err(|e| Error::invalid("log", e))?;
        Ok(input)
    }

    fn create_inputs(&self, logs: Vec<Log>) -> Result<Vec<AppendInput>> {
        let now = Utc::now();
        logs.into_iter()
            .map(|log| self.create_input(log, now))
            .collect()
    }

    /// Stores a new log; [`Error::Duplicate`] if its id was accepted before.
    pub async fn create(&self, log: Log) -> Result<()> {
        let id = log.id.clone();
        let duplicate = self.append(self.create_inputs(vec![log])?).await?;
        self.catch_up().await?;
        if duplicate[0] {
            return Err(Error::Duplicate(id));
        }
        Ok(())
    }

    /// Stores a log unless one with its id exists; returns whether it was stored.
    pub async fn create_if_not_exists(&self, log: Log) -> Result<bool> {
        Ok(self.batch_create_if_not_exists(vec![log]).await? == 1)
    }

    /// Stores the logs whose ids are new (in one ledger append); returns how many. A bad log
    /// fails the batch before anything is written.
    pub async fn batch_create_if_not_exists(&self, logs: Vec<Log>) -> Result<usize> {
        let duplicates = self.append(self.create_inputs(logs)?).await?;
        self.catch_up().await?;
        Ok(duplicates.iter().filter(|d| !**d).count())
    }

    /// The whole log `id`, content included; [`Error::NotFound`] if there is none.
    pub async fn find_by_id(&self, id: &str) -> Result<Log> {
        query::find(&self.inner.db, id).await
    }

    /// Changes log `id` (a streaming completion finishing a `processing` log);
    /// [`Error::NotFound`] if there is no such log, [`Error::Invalid`] naming a field that is
    /// unknown, fixed or of the wrong type.
    pub async fn update(&self, id: &str, changes: LogUpdate) -> Result<()> {
        changes.validate()?;
        self.catch_up().await?;
        let current = self.find_by_id(id).await?;
        // The changed log obeys the same rules as a new one (content off or capped, keys
        // checked); the event records the fields as those rules left them.
        let accepted = self.accept(changes.apply_to(&current)?, Utc::now())?;
        let accepted = serde_json::to_value(&accepted).map_err(|e| Error::invalid("update", e))?;
        let mut recorded = changes.clone();
        for (name, value) in recorded.0.iter_mut() {
            *value = accepted.get(name).cloned().unwrap_or(Value::Null);
        }
        for flag in ["is_large_payload_request", "is_large_payload_response"] {
            if let Some(value) = accepted.get(flag) {
                recorded.0.insert(flag.to_owned(), value.clone());
            }
        }
        let event = LogEvent::Update {
            id: id.to_owned(),
            changes: recorded,
        };
        let input = event_input(&event)?;
        ledger_core::validate_append(LOG_STREAM, std::slice::from_ref(&input))
            .map_err(|e| Error::invalid("update", e))?;
        self.append(vec![input]).await?;
        self.catch_up().await
    }

    /// Deletes logs by id (those that exist); returns how many of the ids existed.
    pub async fn delete_logs(&self, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Err(Error::invalid("ids", "No log IDs provided"));
        }
        self.catch_up().await?;
        let distinct: Vec<String> = ids
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let existing = readmodel::existing(&self.inner.db, &distinct).await?;
        let event = LogEvent::Delete { ids: ids.to_vec() };
        self.append(vec![event_input(&event)?]).await?;
        self.catch_up().await?;
        Ok(existing)
    }

    /// Deletes `processing` logs accepted before `before` (requests that never finished).
    pub async fn flush(&self, before: DateTime<Utc>) -> Result<()> {
        self.catch_up().await?;
        let mut tx = self.inner.db.snapshot().await?;
        let stale = readmodel::stale_processing(&mut tx, before).await?;
        tx.commit().await?;
        if stale {
            self.append(vec![event_input(&LogEvent::Flush { before })?])
                .await?;
            self.catch_up().await?;
        }
        Ok(())
    }

    /// A page of logs matching `filters`, with the total count in the same snapshot.
    pub async fn search(&self, filters: &SearchFilters, page: &Pagination) -> Result<SearchResult> {
        query::search(&self.inner.db, filters, page).await
    }

    /// Count, success rate, average latency, tokens and cost of the logs matching `filters`.
    pub async fn stats(&self, filters: &SearchFilters) -> Result<SearchStats> {
        query::stats(&self.inner.db, filters).await
    }

    /// A histogram of finished logs matching `filters`, in buckets of `bucket_seconds`; with a
    /// start and end time, empty buckets in the range are filled with zeros.
    pub async fn histogram(
        &self,
        kind: HistogramKind,
        filters: &SearchFilters,
        bucket_seconds: i64,
    ) -> Result<Histogram> {
        query::histogram(&self.inner.db, kind, filters, bucket_seconds).await
    }

    /// Models, providers, keys, rules, engines and metadata values seen in the last 30 days.
    pub async fn filter_data(&self) -> Result<FilterData> {
        query::filter_data(&self.inner.db, Utc::now()).await
    }

    /// Logs the batched writer dropped because its queue was full (in drop mode).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn count_dropped(&self, n: u64) {
        self.inner.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Deletes up to `batch` logs accepted before `cutoff` (a deletion recorded in the ledger,
    /// like any other), then trims the ledger entries no live log needs; returns how many logs
    /// were deleted.
    pub async fn delete_logs_batch(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64> {
        if batch == 0 {
            return Err(Error::invalid(
                "batch",
                "a retention batch deletes at least 1 log",
            ));
        }
        self.catch_up().await?;
        let mut tx = self.inner.db.snapshot().await?;
        let expired = readmodel::expired(&mut tx, cutoff, batch).await?;
        tx.commit().await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let newest_expired = expired.iter().map(|(_, entry)| *entry).max();
        let ids: Vec<String> = expired.into_iter().map(|(id, _)| id).collect();
        let deleted = readmodel::existing(&self.inner.db, &ids).await?;
        self.append(vec![event_input(&LogEvent::Delete { ids })?])
            .await?;
        self.catch_up().await?;
        let mut tx = self.inner.db.snapshot().await?;
        let oldest_live = readmodel::oldest_live_entry(&mut tx).await?;
        tx.commit().await?;
        // Entries before the oldest live log's creation are applied and needed by no live log
        // (a change always follows its log's creation), and a rebuilt read model replays the
        // deletions that remain; the newest expired creation bounds the trim to this sweep.
        let trim_to = match (newest_expired, oldest_live) {
            (Some(expired), Some(live)) => Some(expired.min(live - 1)),
            (expired, None) => expired,
            (None, Some(_)) => None,
        };
        if let Some(entry) = trim_to.filter(|e| *e > 0) {
            self.inner
                .ledger
                .trim(LOG_STREAM, ledger_core::EntryId::new(entry))
                .await?;
        }
        Ok(deleted)
    }

    /// Deletes every log accepted before `cutoff`, `batch` at a time; returns how many.
    pub async fn delete_older_than(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64> {
        let mut total = 0;
        loop {
            let deleted = self.delete_logs_batch(cutoff, batch).await?;
            total += deleted;
            if deleted < u64::from(batch) {
                return Ok(total);
            }
        }
    }

    /// Closes the ledger (and the read model's connections with it).
    pub async fn close(&self) -> Result<()> {
        if let Some(task) = self.inner.follower.lock().expect("follower lock").take() {
            task.abort();
        }
        Ok(self.inner.ledger.close().await?)
    }
}

fn event_input(event: &LogEvent) -> Result<AppendInput> {
    let payload = serde_json::to_value(event).map_err(|e| Error::invalid("log", e))?;
    Ok(AppendInput::new(payload))
}
