//! Subscriptions: everything after a starting point, then live records as they commit.
//!
//! A subscription keeps a cursor (the last id or position it delivered) and reads pages past it,
//! so the switch from catch-up to live can neither lose nor repeat a record. Once caught up it
//! waits for the store's commit signal ([`Store::commits`]) or the poll interval, whichever comes
//! first; the interval also covers writers in other processes. Correctness rests on the store's
//! read guarantee: ids within a stream, and feed positions, become visible in order.
//!
//! A read that fails with a transient error ([`Error::is_transient`]: a dropped connection, a
//! restarting server, a timeout) is retried from the same cursor with growing pauses, so the
//! subscription resumes without loss or duplicate; set
//! [`SubscribeOptions::retry_transient_errors`] to `false` to receive such errors instead. Any
//! other error (corrupt stored data, a closed store) is yielded and ends the subscription: the
//! consumer sees it, and nothing is retried forever.

use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::feed::FeedRecord;
use crate::name::validate_stream_id;
use crate::read::ReadOptions;
use crate::store::Store;

/// How a subscription reads and waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
/// appended. Yields an error and ends if a read fails; resubscribe from the last version seen.
pub fn subscribe_stream<S>(
    store: S,
    stream: String,
    after_version: u64,
    options: SubscribeOptions,
) -> BoxStream<'static, Result<Entry<S::Id>>>
where
    S: Store + 'static,
{
    struct State<S: Store> {
        store: S,
        stream: String,
        cursor: Option<S::Id>,
        after_version: u64,
        options: SubscribeOptions,
        signal: Option<tokio::sync::watch::Receiver<u64>>,
        failed: bool,
        failures: u32,
    }
    if let Err(e) = validate_stream_id(&stream) {
        return stream::once(async { Err(e) }).boxed();
    }
    let signal = store.commits();
    let state = State {
        store,
        stream,
        cursor: None,
        after_version,
        options,
        signal,
        failed: false,
        failures: 0,
    };
    stream::unfold(state, |mut st| async move {
        if st.failed {
            return None;
        }
        loop {
            mark_seen(&mut st.signal);
            let mut opts = ReadOptions::new().limit(st.options.batch);
            opts.after = st.cursor.clone();
            let page = st.store.read(&st.stream, &opts).await;
            if page.is_ok() {
                st.failures = 0;
            }
            match page {
                Err(e) => {
                    if let Some(e) = on_read_error(e, &st.options, &mut st.failures).await {
                        st.failed = true;
                        return Some((vec![Err(e)], st));
                    }
                }
                Ok(page) if page.is_empty() => {
                    wait_for_commit(&mut st.signal, st.options.poll_interval).await;
                }
                Ok(page) => {
                    st.cursor = page.last().map(|e| e.id.clone());
                    let fresh: Vec<_> = page
                        .into_iter()
                        .filter(|e| e.version > st.after_version)
                        .map(Ok)
                        .collect();
                    if let Some(Ok(last)) = fresh.last() {
                        st.after_version = last.version;
                        return Some((fresh, st));
                    }
                }
            }
        }
    })
    .flat_map(stream::iter)
    .boxed()
}

/// Change-feed records with position greater than `after` (from the start with `None`), then
/// live records as they commit. Yields [`Error::NotSupported`] if the store has no change feed.
pub fn subscribe_feed<S>(
    store: S,
    after: Option<u64>,
    options: SubscribeOptions,
) -> BoxStream<'static, Result<FeedRecord<S::Id>>>
where
    S: Store + 'static,
{
    struct State<S> {
        store: S,
        after: Option<u64>,
        options: SubscribeOptions,
        signal: Option<tokio::sync::watch::Receiver<u64>>,
        failed: bool,
        failures: u32,
    }
    let signal = store.commits();
    let state = State {
        store,
        after,
        options,
        signal,
        failed: false,
        failures: 0,
    };
    stream::unfold(state, |mut st| async move {
        if st.failed {
            return None;
        }
        loop {
            mark_seen(&mut st.signal);
            let page = match st.store.as_change_feed() {
                None => Err(Error::NotSupported("this store has no change feed".into())),
                Some(feed) => feed.read_feed(st.after, st.options.batch).await,
            };
            if page.is_ok() {
                st.failures = 0;
            }
            match page {
                Err(e) => {
                    if let Some(e) = on_read_error(e, &st.options, &mut st.failures).await {
                        st.failed = true;
                        return Some((vec![Err(e)], st));
                    }
                }
                Ok(page) if page.is_empty() => {
                    wait_for_commit(&mut st.signal, st.options.poll_interval).await;
                }
                Ok(page) => {
                    st.after = page.last().map(|r| r.position);
                    return Some((page.into_iter().map(Ok).collect(), st));
                }
            }
        }
    })
    .flat_map(stream::iter)
    .boxed()
}
