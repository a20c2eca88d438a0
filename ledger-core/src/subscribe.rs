//! Subscriptions: everything after a starting point, then live records as they commit.
//!
//! A subscription keeps a cursor (the last id or position it delivered) and reads pages past it,
//! so the switch from catch-up to live can neither lose nor repeat a record. Once caught up it
//! waits for the store's commit signal ([`Store::commits`]) or the poll interval, whichever comes
//! first; the interval also covers writers in other processes. Correctness rests on the store's
//! read guarantee: ids within a stream, and feed positions, become visible in order.

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
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            poll_interval: Duration::from_millis(500),
            batch: 500,
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
    };
    stream::unfold(state, |mut st| async move {
        if st.failed {
            return None;
        }
        loop {
            mark_seen(&mut st.signal);
            let mut opts = ReadOptions::new().limit(st.options.batch);
            opts.after = st.cursor.clone();
            match st.store.read(&st.stream, &opts).await {
                Err(e) => {
                    st.failed = true;
                    return Some((vec![Err(e)], st));
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
    }
    let signal = store.commits();
    let state = State {
        store,
        after,
        options,
        signal,
        failed: false,
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
            match page {
                Err(e) => {
                    st.failed = true;
                    return Some((vec![Err(e)], st));
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
