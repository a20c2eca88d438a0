//! Subscriptions: everything after a starting point, then live records as they commit.
//!
//! A subscription keeps a cursor (the last version or feed position it delivered) and reads
//! pages past it, so the switch from catch-up to live can neither lose nor repeat a record. Once
//! caught up it waits for the store's commit signal ([`Store::commits`]) or the poll interval,
//! whichever comes first; the interval also covers writers in other processes. Correctness rests
//! on the store's read guarantee: versions within a stream, and feed positions, become visible
//! in order. Stream subscriptions resume by version, never by id, so they hold on backends whose
//! ids do not rise in commit order across streams.
//!
//! A read that fails with a transient error ([`Error::is_transient`]: a dropped connection, a
//! restarting server, a timeout) is retried from the same cursor with growing pauses, so the
//! subscription resumes without loss or duplicate; set
//! [`SubscribeOptions::retry_transient_errors`] to `false` to receive such errors instead. Any
//! other error (corrupt stored data, a closed store) is yielded and ends the subscription: the
//! consumer sees it, and nothing is retried forever.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::feed::FeedRecord;
use crate::name::validate_stream_id;
use crate::read::ReadOptions;
use crate::store::Store;

/// How a subscription reads and waits.
///
/// ```
/// use std::time::Duration;
/// use ledger_core::SubscribeOptions;
/// let options = SubscribeOptions::new().poll_interval(Duration::from_secs(2)).batch(100);
/// assert!(options.retry_transient_errors);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Longest wait between reads once caught up (commit signals can wake it sooner).
    pub poll_interval: Duration,
    /// Page size of each read, 1..=10 000.
    pub batch: u32,
    /// Retry reads that fail with a transient error ([`Error::is_transient`]) instead of
    /// ending (default `true`).
    pub retry_transient_errors: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            poll_interval: Duration::from_millis(500),
            batch: 500,
            retry_transient_errors: true,
        }
    }
}

impl SubscribeOptions {
    /// Polls every 500 ms, reads 500 entries a page, retries transient errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`SubscribeOptions::poll_interval`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`SubscribeOptions::batch`].
    pub fn batch(mut self, batch: u32) -> Self {
        self.batch = batch;
        self
    }

    /// Sets [`SubscribeOptions::retry_transient_errors`].
    pub fn retry_transient_errors(mut self, retry: bool) -> Self {
        self.retry_transient_errors = retry;
        self
    }
}

/// Waits for the next commit signal or the poll interval.
async fn wait_for_commit(
    signal: &mut Option<tokio::sync::watch::Receiver<u64>>,
    poll_interval: Duration,
) {
    match signal {
        Some(rx) => {
            tokio::select! {
                changed = rx.changed() => {
                    // A closed sender (store dropped): fall back to polling alone.
                    if changed.is_err() {
                        *signal = None;
                    }
                }
                _ = tokio::time::sleep(poll_interval) => {}
            }
        }
        None => tokio::time::sleep(poll_interval).await,
    }
}

/// Longest pause between retries of a failing read.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// Decides what a failed read does: `Some(error)` ends the subscription with it, `None` means
/// the pause was taken and the read should be retried.
async fn on_read_error(
    error: Error,
    options: &SubscribeOptions,
    failures: &mut u32,
) -> Option<Error> {
    if !(options.retry_transient_errors && error.is_transient()) {
        return Some(error);
    }
    *failures += 1;
    let pause = options
        .poll_interval
        .saturating_mul(1 << (*failures - 1).min(16))
        .min(MAX_RETRY_PAUSE);
    tracing::warn!(%error, failures = *failures, ?pause, "subscription read failed; retrying");
    tokio::time::sleep(pause).await;
    None
}

/// Forgets commits signalled so far, so that a later wait only wakes for new ones.
fn mark_seen(signal: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(rx) = signal {
        rx.borrow_and_update();
    }
}

/// Entries of `stream` with version greater than `after_version`, then live entries as they are
/// appended. Yields an error and ends if a read fails with an error that is not retried;
/// resubscribe from the last version seen.
pub fn subscribe_stream(
    store: Store,
    stream: String,
    after_version: u64,
    options: SubscribeOptions,
) -> BoxStream<'static, Result<Entry>> {
    if let Err(e) = validate_stream_id(&stream) {
        return stream::once(async { Err(e) }).boxed();
    }
    let read = move |store: &Store, after: &u64, batch: u32| -> BoxFuture<'static, _> {
        let (store, stream) = (store.clone(), stream.clone());
        let options = ReadOptions::new().limit(batch).after_version(*after);
        Box::pin(async move { store.read(&stream, &options).await })
    };
    let advance = |after: &mut u64, entry: &Entry| *after = entry.version;
    flatten(tail(store, after_version, options, read, advance))
}

/// Change-feed records with position greater than `after` (from the start with `None`), then
/// live records as they commit. Yields [`Error::NotSupported`] if the store has no change feed.
pub fn subscribe_feed(
    store: Store,
    after: Option<u64>,
    options: SubscribeOptions,
) -> BoxStream<'static, Result<FeedRecord>> {
    flatten(feed_pages(store, after, options))
}

/// [`subscribe_feed`], a page of records at a time.
pub(crate) fn feed_pages(
    store: Store,
    after: Option<u64>,
    options: SubscribeOptions,
) -> BoxStream<'static, Result<Vec<FeedRecord>>> {
    let read = |store: &Store, after: &Option<u64>, batch: u32| -> BoxFuture<'static, _> {
        let (store, after) = (store.clone(), *after);
        Box::pin(async move { store.read_feed(after, batch).await })
    };
    let advance = |after: &mut Option<u64>, record: &FeedRecord| *after = Some(record.position);
    tail(store, after, options, read, advance)
}

fn flatten<T: Send + 'static>(
    pages: BoxStream<'static, Result<Vec<T>>>,
) -> BoxStream<'static, Result<T>> {
    pages
        .flat_map(|page| match page {
            Ok(items) => stream::iter(items.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => stream::iter(vec![Err(e)]),
        })
        .boxed()
}

/// Non-empty pages read past a cursor, forever: catching up first, then waiting for commits or
/// the poll interval. Transient read errors are retried (see the module docs); any other error
/// is the last item.
fn tail<T, K>(
    store: Store,
    cursor: K,
    options: SubscribeOptions,
    read: impl Fn(&Store, &K, u32) -> BoxFuture<'static, Result<Vec<T>>> + Send + 'static,
    advance: impl Fn(&mut K, &T) + Send + 'static,
) -> BoxStream<'static, Result<Vec<T>>>
where
    T: Send + 'static,
    K: Send + 'static,
{
    struct State<K, R, A> {
        store: Store,
        cursor: K,
        options: SubscribeOptions,
        signal: Option<tokio::sync::watch::Receiver<u64>>,
        failed: bool,
        failures: u32,
        read: R,
        advance: A,
    }
    let signal = store.commits();
    let state = State {
        store,
        cursor,
        options,
        signal,
        failed: false,
        failures: 0,
        read,
        advance,
    };
    stream::unfold(state, |mut st| async move {
        if st.failed {
            return None;
        }
        loop {
            mark_seen(&mut st.signal);
            let page = (st.read)(&st.store, &st.cursor, st.options.batch).await;
            if page.is_ok() {
                st.failures = 0;
            }
            match page {
                Err(e) => {
                    if let Some(e) = on_read_error(e, &st.options, &mut st.failures).await {
                        st.failed = true;
                        return Some((Err(e), st));
                    }
                }
                Ok(page) if page.is_empty() => {
                    wait_for_commit(&mut st.signal, st.options.poll_interval).await;
                }
                Ok(page) => {
                    if let Some(last) = page.last() {
                        (st.advance)(&mut st.cursor, last);
                    }
                    return Some((Ok(page), st));
                }
            }
        }
    })
    .boxed()
}
