//! The bridge: read a page of the source's feed, apply it to the sink, repeat.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use ledger_core::{Error, FeedRecord, Lane, Mutation, MutationKind, Store};

use crate::error::BridgeError;
use crate::metrics::{Metrics, Stage};
use crate::options::BridgeOptions;

/// Attempts of a record the sink refuses (not a transient error) before it is taken as
/// rejected: a refusal can be a race another bridge on the same sink won, which the next
/// attempt, finding the record applied, passes over.
const REFUSALS_BEFORE_REJECTING: u32 = 3;

/// What a bridge has done since it was built.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads of the source's feed.
    pub polls: u64,
    /// Records the sink applied (records it had applied before, which a restarted bridge
    /// reads again, are not counted).
    pub applied: u64,
    /// Records passed over, by kind ([`BridgeOptions::skip`]).
    pub skipped: BTreeMap<MutationKind, u64>,
    /// Failed reads and applies, retried or not.
    pub errors: u64,
    /// The position of the last record handled (applied, or passed over): where the next read
    /// starts.
    pub position: Option<u64>,
    /// Positions between the source's head and [`Stats::position`], as of the last page (0 once
    /// caught up).
    pub lag_records: u64,
    /// Age of the oldest record not yet applied, when it was read (0 once caught up).
    pub lag_seconds: f64,
}

impl Stats {
    /// Records passed over, of every kind.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Replicates a source store's change feed into a sink store.
///
/// Each page of records is applied with [`Store::apply_replicated`] (or, with
/// [`BridgeOptions::parallel`], lane by lane with [`Store::apply_replicated_lane`]), which skips
/// what the sink already applied and saves the bridge's cursor with the records where the sink
/// has transactions. So a bridge stopped or killed anywhere resumes from the sink's cursor and
/// neither loses nor repeats a record; two bridges with one name on one sink share the work
/// without doubling it. Clones share the bridge.
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<Inner>,
}

struct Inner {
    source: Store,
    sink: Store,
    options: BridgeOptions,
    metrics: Metrics,
    stats: Mutex<Stats>,
    progress: watch::Sender<Stats>,
    running: Mutex<bool>,
}

/// A bridge running in the background ([`Bridge::start`]).
pub struct Running {
    bridge: Bridge,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), BridgeError>>,
}

impl Running {
    /// Stops the bridge once the page in hand is applied (a page whose apply is being retried
    /// is left to be applied next time), and returns what it did, or the error it stopped with.
    pub async fn stop(self) -> Result<Stats, BridgeError> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until the bridge stops by itself, which it does only on an error it cannot retry.
    pub async fn wait(self) -> Result<Stats, BridgeError> {
        let outcome = match self.task.await {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Ok(()),
        };
        outcome.map(|()| self.bridge.stats())
    }

    /// Whether the bridge has stopped (with an error, unless it was told to).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Bridge {
    /// A bridge from `source`, which must have a change feed, to `sink`, which must apply
    /// replicated records ([`ledger_core::Capabilities::replication`]).
    pub fn new(
        source: impl AsRef<Store>,
        sink: impl AsRef<Store>,
        options: BridgeOptions,
    ) -> Result<Bridge, BridgeError> {
        let (source, sink) = (source.as_ref().clone(), sink.as_ref().clone());
        options.validate().map_err(BridgeError::Config)?;
        if source.capabilities().change_feed.is_none() {
            return Err(BridgeError::Config(format!(
                "source store {:?} ({}) has no change feed to replicate: open it with the \
                 change feed on",
                source.name(),
                source.backend_kind()
            )));
        }
        if sink.capabilities().replication.is_none() {
            return Err(BridgeError::Config(format!(
                "sink store {:?} ({}) cannot apply replicated records",
                sink.name(),
                sink.backend_kind()
            )));
        }
        let meter = options
            .meter
            .clone()
            .unwrap_or_else(|| opentelemetry::global::meter("ledger-bridge"));
        let metrics = Metrics::new(&meter, &options.name);
        let (progress, _) = watch::channel(Stats::default());
        Ok(Bridge {
            inner: Arc::new(Inner {
                source,
                sink,
                options,
                metrics,
                stats: Mutex::new(Stats::default()),
                progress,
                running: Mutex::new(false),
            }),
        })
    }

    /// The bridge's options.
    pub fn options(&self) -> &BridgeOptions {
        &self.inner.options
    }

    /// What the bridge has done so far.
    pub fn stats(&self) -> Stats {
        self.inner.stats.lock().expect("stats lock").clone()
    }

    /// The stats after every page and every catch-up: for reporting a long backfill's progress.
    pub fn progress(&self) -> watch::Receiver<Stats> {
        self.inner.progress.subscribe()
    }

    /// Applies every record committed to the source by now that the sink has not applied, then
    /// returns the stats: for tests and one-shot backfills.
    pub async fn run_once(&self) -> Result<Stats, BridgeError> {
        let (_keep, stop) = watch::channel(false);
        self.pump(stop, false).await?;
        Ok(self.stats())
    }

    /// Runs until `shutdown` completes (then finishes the page in hand), or an error it cannot
    /// retry: for a process whose job is the bridge (`bridge.run_until(tokio::signal::ctrl_c())`).
    pub async fn run_until<F: Future + Send>(&self, shutdown: F) -> Result<Stats, BridgeError> {
        let (stop, stopped) = watch::channel(false);
        let pump = self.pump(stopped, true);
        tokio::pin!(pump);
        tokio::select! {
            outcome = &mut pump => return outcome.map(|()| self.stats()),
            _ = shutdown => {
                let _ = stop.send(true);
            }
        }
        pump.await.map(|()| self.stats())
    }

    /// Runs the bridge in a task of its own until [`Running::stop`]; dropping the handle stops
    /// it the same way. A bridge runs once at a time ([`BridgeError::AlreadyRunning`]); to share
    /// the work of one sink, build more bridges.
    pub fn start(&self) -> Result<Running, BridgeError> {
        {
            let mut running = self.inner.running.lock().expect("running lock");
            if *running {
                return Err(BridgeError::AlreadyRunning(self.inner.options.name.clone()));
            }
            *running = true;
        }
        let (stop, stopped) = watch::channel(false);
        let bridge = self.clone();
        let task = tokio::spawn(async move {
            let outcome = bridge.pump(stopped, true).await;
            *bridge.inner.running.lock().expect("running lock") = false;
            if let Err(e) = &outcome {
                tracing::error!(bridge = %bridge.inner.options.name, error = %e, "bridge stopped");
            }
            outcome
        });
        Ok(Running {
            bridge: self.clone(),
            stop,
            task,
        })
    }

    /// Reads and applies pages until caught up (`follow` false) or told to stop.
    async fn pump(&self, mut stop: watch::Receiver<bool>, follow: bool) -> Result<(), BridgeError> {
        let options = &self.inner.options;
        tracing::info!(bridge = %options.name, source = %self.inner.source.name(),
            sink = %self.inner.sink.name(), "bridge started");
        let Some(mut after) = self.start_position(&stop).await? else {
            return Ok(());
        };
        self.update(|s| s.position = after);
        let mut signal = self.inner.source.commits();
        // A full page is applied while the next is read: the source and the sink work at once.
        let mut prefetched: Option<Vec<FeedRecord>> = None;
        loop {
            if stopped(&stop) {
                break;
            }
            let page = match prefetched.take() {
                Some(page) => page,
                None => {
                    mark_seen(&mut signal);
                    match self.read(after, &stop).await? {
                        Some(page) => page,
                        None => break,
                    }
                }
            };
            let Some(last) = page.last().map(|r| r.position) else {
                self.caught_up();
                if !follow {
                    break;
                }
                wait_for_commit(&mut signal, options.poll_interval, &mut stop).await;
                continue;
            };
            let full = page.len() == options.batch as usize;
            let span = tracing::debug_span!("ledger.bridge.page", bridge = %options.name,
                first = page[0].position, last, records = page.len());
            let apply = self.apply_page(&page, &stop).instrument(span);
            let (applied, next) = if full {
                mark_seen(&mut signal);
                let (applied, next) = tokio::join!(apply, self.read(Some(last), &stop));
                (applied?, next?)
            } else {
                (apply.await?, None)
            };
            if !applied {
                break;
            }
            after = Some(last);
            self.progressed(last, full).await;
            if full && next.is_none() {
                break; // stopped while the next read was failing
            }
            prefetched = next;
            if !full && !follow {
                break;
            }
        }
        let stats = self.stats();
        tracing::info!(bridge = %options.name, applied = stats.applied,
            skipped = stats.skipped_total(), errors = stats.errors, position = ?stats.position,
            "bridge stopped");
        Ok(())
    }

    /// The sink's saved cursor (`None` inside when stopped while the sink was failing).
    async fn start_position(
        &self,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<Option<u64>>, BridgeError> {
        let sink = &self.inner.sink;
        if !sink.capabilities().cursor_store || self.inner.options.replay_from_start {
            // Nothing to resume from: replay everything, which the sink passes over.
            return Ok(Some(None));
        }
        let name = &self.inner.options.name;
        let loaded = self
            .retrying(Stage::Sink, stop, Error::is_transient, || {
                sink.get_cursor(name)
            })
            .await;
        self.outcome(loaded, stop, |source| BridgeError::Sink {
            store: sink.name().to_owned(),
            source,
        })
    }

    /// One page of the source's feed after `after` (`None` when stopped while failing).
    async fn read(
        &self,
        after: Option<u64>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<Vec<FeedRecord>>, BridgeError> {
        let source = &self.inner.source;
        let batch = self.inner.options.batch;
        let page = self
            .retrying(Stage::Source, stop, Error::is_transient, || {
                source.read_feed(after, batch)
            })
            .await;
        self.inner.metrics.poll();
        self.update(|s| s.polls += 1);
        if let Ok(page) = &page
            && let Some(time) = page.iter().find_map(committed_at)
        {
            let age = (Utc::now() - time).to_std().unwrap_or_default();
            self.update(|s| s.lag_seconds = age.as_secs_f64());
        }
        self.outcome(page, stop, |source_error| BridgeError::Source {
            store: source.name().to_owned(),
            source: source_error,
        })
    }

    /// Applies one page; `false` if stopped before it was.
    async fn apply_page(
        &self,
        page: &[FeedRecord],
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, BridgeError> {
        let started = Instant::now();
        let options = &self.inner.options;
        let kept: Cow<'_, [FeedRecord]> = if options.skip.is_empty() {
            Cow::Borrowed(page)
        } else {
            let (kept, skipped): (Vec<_>, Vec<_>) = page
                .iter()
                .cloned()
                .partition(|r| !options.skip.contains(&r.mutation.kind()));
            for record in &skipped {
                let kind = record.mutation.kind();
                self.inner.metrics.skipped(kind);
                self.update(|s| *s.skipped.entry(kind).or_default() += 1);
            }
            Cow::Owned(kept)
        };
        let last = page.last().map(|r| r.position);
        let mut applied = 0;
        if options.parallel <= 1 {
            if !kept.is_empty() {
                let Some(n) = self.apply(None, &kept, stop).await? else {
                    return Ok(false);
                };
                applied += n;
            }
        } else {
            for run in Lane::runs(&kept) {
                let Some(n) = self.apply_lanes(run.lanes, stop).await? else {
                    return Ok(false);
                };
                applied += n;
                if let Some(rename) = &run.rename {
                    let Some(n) = self.apply(None, std::slice::from_ref(rename), stop).await?
                    else {
                        return Ok(false);
                    };
                    applied += n;
                }
            }
        }
        // The cursor covers the page: saved with the records when one call applied them all,
        // saved here when lanes did, or when the page ends with records passed over.
        if last != kept.last().map(|r| r.position) || options.parallel > 1 {
            let position = last.expect("a page is never empty");
            if !self.save_cursor(position, stop).await? {
                return Ok(false);
            }
        }
        self.inner.metrics.applied(applied);
        self.inner.metrics.page(started.elapsed().as_secs_f64());
        self.update(|s| s.applied += applied);
        Ok(true)
    }

    /// Applies each lane's records, up to [`BridgeOptions::parallel`] lanes at once; once
    /// every lane is done, the first error, if any.
    async fn apply_lanes(
        &self,
        lanes: BTreeMap<Lane, Vec<FeedRecord>>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<u64>, BridgeError> {
        let outcomes: Vec<_> = futures::stream::iter(lanes)
            .map(|(lane, records)| async move { self.apply(Some(lane), &records, stop).await })
            .buffer_unordered(self.inner.options.parallel)
            .collect()
            .await;
        let mut applied = Some(0);
        for outcome in outcomes {
            match outcome? {
                Some(n) => applied = applied.map(|a| a + n),
                None => applied = None,
            }
        }
        Ok(applied)
    }

    /// Applies `records` (of one lane, or all) with retries. If the sink keeps refusing them,
    /// they are applied one at a time, so the bridge stops exactly at the record refused, with
    /// every record before it applied. `None` if stopped first.
    async fn apply(
        &self,
        lane: Option<Lane>,
        records: &[FeedRecord],
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<u64>, BridgeError> {
        let error = match self.attempt(lane, records, stop).await {
            Ok(n) => return Ok(Some(n)),
            Err(_) if stopped(stop) => return Ok(None),
            Err(e) => e,
        };
        if let [record] = records {
            return Err(self.rejected(record, error));
        }
        let mut applied = 0;
        for record in records {
            match self.attempt(lane, std::slice::from_ref(record), stop).await {
                Ok(n) => applied += n,
                Err(_) if stopped(stop) => return Ok(None),
                Err(e) => return Err(self.rejected(record, e)),
            }
        }
        Ok(Some(applied))
    }

    fn rejected(&self, record: &FeedRecord, source: Error) -> BridgeError {
        BridgeError::Rejected {
            store: self.inner.sink.name().to_owned(),
            position: record.position,
            stream: record.stream.clone(),
            kind: record.mutation.kind(),
            source,
        }
    }

    /// One apply call, retried: transient errors until they pass, refusals a few times.
    async fn attempt(
        &self,
        lane: Option<Lane>,
        records: &[FeedRecord],
        stop: &watch::Receiver<bool>,
    ) -> ledger_core::Result<u64> {
        let (sink, name) = (&self.inner.sink, self.inner.options.name.as_str());
        let refusals = AtomicU32::new(0);
        let call = || async {
            match lane {
                Some(lane) => sink.apply_replicated_lane(name, lane, records).await,
                None => sink.apply_replicated(name, records).await,
            }
        };
        let refused = |e: &Error| {
            e.is_transient()
                || refusals.fetch_add(1, Ordering::Relaxed) + 1 < REFUSALS_BEFORE_REJECTING
        };
        self.retrying(Stage::Sink, stop, refused, call).await
    }

    /// Saves the bridge's cursor in the sink (where it keeps cursors); `false` if stopped first.
    async fn save_cursor(
        &self,
        position: u64,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, BridgeError> {
        let sink = &self.inner.sink;
        if !sink.capabilities().cursor_store {
            return Ok(true);
        }
        let name = &self.inner.options.name;
        let saved = self
            .retrying(Stage::Sink, stop, Error::is_transient, || {
                sink.set_cursor(name, position)
            })
            .await;
        let saved = self.outcome(saved, stop, |source| BridgeError::Sink {
            store: sink.name().to_owned(),
            source,
        })?;
        Ok(saved.is_some())
    }

    /// `call`, retried with backoff while the bridge is not stopped and `retry` says an error
    /// is worth another attempt ([`Error::is_transient`] for all but applies).
    async fn retrying<T, Fut>(
        &self,
        stage: Stage,
        stop: &watch::Receiver<bool>,
        retry: impl Fn(&Error) -> bool,
        call: impl FnMut() -> Fut,
    ) -> ledger_core::Result<T>
    where
        Fut: Future<Output = ledger_core::Result<T>>,
    {
        call.retry(self.backoff())
            .sleep(stoppable_sleep(stop.clone()))
            .when(|e: &Error| !stopped(stop) && retry(e))
            .notify(|e: &Error, pause: Duration| self.failed(stage, e, pause))
            .await
            .inspect_err(|e| self.failed(stage, e, Duration::ZERO))
    }

    /// What a retried call comes to: its value, `None` if it failed because the bridge was
    /// stopped while retrying, or the error it stops the bridge with.
    fn outcome<T>(
        &self,
        result: ledger_core::Result<T>,
        stop: &watch::Receiver<bool>,
        error: impl FnOnce(Error) -> BridgeError,
    ) -> Result<Option<T>, BridgeError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.is_transient() && stopped(stop) => Ok(None),
            Err(e) => Err(error(e)),
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(self.inner.options.max_retry_delay)
            .with_jitter()
            .without_max_times()
    }

    /// Counts a failed call (`pause` before its retry; zero when it is not retried).
    fn failed(&self, stage: Stage, error: &Error, pause: Duration) {
        self.inner.metrics.error(stage);
        self.update(|s| s.errors += 1);
        tracing::warn!(bridge = %self.inner.options.name, stage = ?stage, %error, ?pause,
            "bridge call failed");
    }

    fn update(&self, change: impl FnOnce(&mut Stats)) {
        let mut stats = self.inner.stats.lock().expect("stats lock");
        change(&mut stats);
    }

    /// Publishes the stats after a page ending at `last`; `full` pages may have more behind.
    async fn progressed(&self, last: u64, full: bool) {
        let lag_records = if full {
            match self.inner.source.feed_head().await {
                Ok(head) => head.unwrap_or(0).saturating_sub(last),
                Err(e) => {
                    tracing::debug!(error = %e, "reading the source's feed head failed");
                    self.stats().lag_records
                }
            }
        } else {
            0
        };
        self.update(|s| {
            s.position = Some(last);
            s.lag_records = lag_records;
            if !full {
                s.lag_seconds = 0.0;
            }
        });
        self.publish();
    }

    /// Publishes the stats after a read that found nothing new.
    fn caught_up(&self) {
        self.update(|s| {
            s.lag_records = 0;
            s.lag_seconds = 0.0;
        });
        self.publish();
    }

    fn publish(&self) {
        let stats = self.stats();
        self.inner.metrics.lag(stats.lag_records, stats.lag_seconds);
        self.inner.progress.send_replace(stats);
    }
}

/// Forgets commits signalled so far: a read is about to see them.
fn mark_seen(signal: &mut Option<watch::Receiver<u64>>) {
    if let Some(rx) = signal {
        rx.borrow_and_update();
    }
}

/// Whether the bridge was told to stop (or its handle is gone).
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// A retry pause that ends early when the bridge is told to stop.
fn stoppable_sleep(
    stop: watch::Receiver<bool>,
) -> impl Fn(Duration) -> futures::future::BoxFuture<'static, ()> + 'static {
    move |pause| {
        let mut stop = stop.clone();
        Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        })
    }
}

/// Waits for a commit signal, the poll interval, or the stop.
async fn wait_for_commit(
    signal: &mut Option<watch::Receiver<u64>>,
    poll_interval: Duration,
    stop: &mut watch::Receiver<bool>,
) {
    let commit = async {
        match signal {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // The store is gone: poll alone from now on.
                    *signal = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = commit => {}
        _ = tokio::time::sleep(poll_interval) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// When the source committed `record`, where the record says.
fn committed_at(record: &FeedRecord) -> Option<DateTime<Utc>> {
    match &record.mutation {
        Mutation::Append { entries, .. } => entries.iter().map(|e| e.created_at).max(),
        Mutation::SetTags { updated_at, .. } | Mutation::SetAnnotations { updated_at, .. } => {
            Some(*updated_at)
        }
        _ => None,
    }
}
