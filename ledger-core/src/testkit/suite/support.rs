//! What the behaviour modules share: imports, inputs, readers and assertions.

pub(super) use std::collections::{BTreeMap, BTreeSet};
pub(super) use std::fmt::Debug;
pub(super) use std::sync::Arc;
pub(super) use std::time::Duration;

pub(super) use chrono::{TimeDelta, Utc};
pub(super) use futures::StreamExt;
pub(super) use serde_json::{Value, json};
pub(super) use tokio::sync::Barrier;

pub(super) use crate::testkit::{CountingStore, StoreFactory, fresh_table};
pub(super) use crate::{
    AppendInput, AppendOutcome, Capabilities, ChangeFeed, CursorStore, Entry, Error,
    ExpectedVersion, FeedRecord, Health, ListOptions, MAX_LIMIT, MAX_STREAM_LEN, MAX_TABLE_LEN,
    Mutation, ReadOptions, Result, Search, Store, StoreId, Stream, StreamStat, SubscribeOptions,
    subscribe_feed,
};

/// How long a subscription may stay silent before a test gives up waiting for an item.
pub(super) const ITEM_TIMEOUT: Duration = Duration::from_secs(5);

/// An input whose payload is `{"n": n}`.
pub(super) fn item(n: u64) -> AppendInput {
    AppendInput::new(json!({ "n": n }))
}

pub(super) fn items(range: std::ops::RangeInclusive<u64>) -> Vec<AppendInput> {
    range.map(item).collect()
}

pub(super) fn tags(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|t| t.to_string()).collect()
}

pub(super) fn changes(list: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
        .collect()
}

pub(super) fn annotations(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `(id, version)` of every outcome; panics if one is a duplicate.
pub(super) fn appended<Id: Clone + Debug>(
    outcomes: &[AppendOutcome<Id>],
    context: &str,
) -> Vec<(Id, u64)> {
    outcomes
        .iter()
        .enumerate()
        .map(|(i, outcome)| match outcome {
            AppendOutcome::Appended { id, version } => (id.clone(), *version),
            AppendOutcome::Duplicate { id } => {
                panic!("{context}: input {i} was reported as a duplicate of {id:?}, expected it to be appended")
            }
        })
        .collect()
}

/// Appends `inputs` with [`ExpectedVersion::Any`], requires every one to be written, returns ids.
pub(super) async fn append_all<S: Store>(
    store: &S,
    stream: &str,
    inputs: Vec<AppendInput>,
) -> Vec<S::Id> {
    let count = inputs.len();
    let outcomes = store
        .append(stream, inputs, ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("appending {count} entries to {stream:?} failed: {e}"));
    assert_eq!(
        outcomes.len(),
        count,
        "append to {stream:?} must return one outcome per input"
    );
    appended(&outcomes, &format!("append to {stream:?}"))
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Appends `{"n": 1}` … `{"n": n}` in one batch and returns their ids.
pub(super) async fn append_n<S: Store>(store: &S, stream: &str, n: u64) -> Vec<S::Id> {
    append_all(store, stream, items(1..=n)).await
}

pub(super) async fn read_with<S: Store>(
    store: &S,
    stream: &str,
    options: &ReadOptions<S::Id>,
) -> Vec<Entry<S::Id>> {
    store
        .read(stream, options)
        .await
        .unwrap_or_else(|e| panic!("read of {stream:?} with {options:?} failed: {e}"))
}

/// Every entry of the stream (up to [`MAX_LIMIT`]), ascending.
pub(super) async fn read_all<S: Store>(store: &S, stream: &str) -> Vec<Entry<S::Id>> {
    read_with(store, stream, &ReadOptions::new().limit(MAX_LIMIT)).await
}

pub(super) async fn count_of<S: Store>(store: &S, stream: &str) -> u64 {
    store
        .count(stream)
        .await
        .unwrap_or_else(|e| panic!("count of {stream:?} failed: {e}"))
}

pub(super) async fn stat_of<S: Store>(store: &S, stream: &str) -> StreamStat<S::Id> {
    store
        .stat(stream)
        .await
        .unwrap_or_else(|e| panic!("stat of {stream:?} failed: {e}"))
}

pub(super) async fn list_with<S: Store>(store: &S, options: &ListOptions) -> Vec<String> {
    store
        .list_streams(options)
        .await
        .unwrap_or_else(|e| panic!("list_streams with {options:?} failed: {e}"))
}

pub(super) fn ids<Id: Clone>(entries: &[Entry<Id>]) -> Vec<Id> {
    entries.iter().map(|e| e.id.clone()).collect()
}

pub(super) fn versions<Id>(entries: &[Entry<Id>]) -> Vec<u64> {
    entries.iter().map(|e| e.version).collect()
}

/// The `n` of every `{"n": n}` payload.
pub(super) fn ns<Id: Debug>(entries: &[Entry<Id>]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| {
            e.payload["n"].as_u64().unwrap_or_else(|| {
                panic!(
                    "entry {:?} has payload {}, expected {{\"n\": <u64>}}",
                    e.id, e.payload
                )
            })
        })
        .collect()
}

pub(super) fn entry_by_id<'a, Id: PartialEq + Debug>(
    entries: &'a [Entry<Id>],
    id: &Id,
) -> &'a Entry<Id> {
    entries
        .iter()
        .find(|e| &e.id == id)
        .unwrap_or_else(|| panic!("entry {id:?} is missing from the read"))
}

/// Asserts that two payloads are the same JSON: equal as values, and written alike, so that an
/// integer is not a float and `-0.0` is not `0.0` (which `Value` equality cannot tell apart).
pub(super) fn assert_same_json(got: &Value, expected: &Value, context: &str) {
    let text = |v: &Value| serde_json::to_string(v).expect("a JSON value serializes");
    assert!(
        got == expected && text(got) == text(expected),
        "{context}: read back as {got}, written as {expected}"
    );
}

pub(super) fn assert_strictly_ascending<T: PartialOrd + Debug>(values: &[T], context: &str) {
    for pair in values.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{context}: must be strictly ascending, but {:?} is followed by {:?} in {values:?}",
            pair[0],
            pair[1]
        );
    }
}

pub(super) fn assert_not_supported<T>(result: Result<T>, context: &str) {
    assert_err!(result, Error::NotSupported(_), "{context}");
}

/// True if the store enforces dedup keys; otherwise checks that it refuses them.
pub(super) async fn supports_dedup<S: Store>(store: &S) -> bool {
    if store.capabilities().dedup {
        return true;
    }
    let result = store
        .append(
            "dedup-probe",
            vec![item(1).dedup_key("k")],
            ExpectedVersion::Any,
        )
        .await;
    assert_not_supported(
        result,
        "capabilities().dedup is false, so an append with a dedup key",
    );
    false
}

/// True if the store supports `set_tags`; otherwise checks that it answers `NotSupported`.
pub(super) async fn supports_tags<S: Store>(store: &S) -> bool {
    if store.capabilities().tags {
        return true;
    }
    let id = append_n(store, "tags-probe", 1).await.remove(0);
    let result = store.set_tags("tags-probe", &id, tags(&["t"])).await;
    assert_not_supported(result, "capabilities().tags is false, so set_tags");
    false
}

/// True if the store supports annotations; otherwise checks that writes and filters are refused.
pub(super) async fn supports_annotations<S: Store>(store: &S) -> bool {
    if store.capabilities().annotations {
        return true;
    }
    let id = append_n(store, "annotations-probe", 1).await.remove(0);
    let result = store
        .set_annotations("annotations-probe", &id, changes(&[("k", Some("v"))]))
        .await;
    assert_not_supported(
        result,
        "capabilities().annotations is false, so set_annotations",
    );
    let result = store
        .read(
            "annotations-probe",
            &ReadOptions::new().annotation("k", "v"),
        )
        .await;
    assert_not_supported(
        result,
        "capabilities().annotations is false, so a read with an annotation filter",
    );
    false
}

/// True if the store supports `rename_stream`; otherwise checks that it answers `NotSupported`.
pub(super) async fn supports_rename<S: Store>(store: &S) -> bool {
    if store.capabilities().rename {
        return true;
    }
    append_n(store, "rename-probe", 1).await;
    let result = store.rename_stream("rename-probe", "rename-probe-2").await;
    assert_not_supported(result, "capabilities().rename is false, so rename_stream");
    false
}

/// The search capability, checking that `capabilities().search` and `as_search()` agree.
pub(super) fn search_of<S: Store>(store: &S) -> Option<&dyn Search<Id = S::Id>> {
    match (store.capabilities().search, store.as_search()) {
        (true, Some(search)) => Some(search),
        (false, None) => None,
        (true, None) => panic!("capabilities().search is true but as_search() is None"),
        (false, Some(_)) => panic!("capabilities().search is false but as_search() is Some"),
    }
}

/// The change feed, checking that `capabilities().change_feed` and `as_change_feed()` agree.
pub(super) fn change_feed_of<S: Store>(store: &S) -> Option<&dyn ChangeFeed<Id = S::Id>> {
    match (store.capabilities().change_feed, store.as_change_feed()) {
        (Some(_), Some(feed)) => Some(feed),
        (None, None) => None,
        (Some(order), None) => {
            panic!("capabilities().change_feed is Some({order:?}) but as_change_feed() is None")
        }
        (None, Some(_)) => {
            panic!("capabilities().change_feed is None but as_change_feed() is Some")
        }
    }
}

/// The cursor store, checking that `capabilities().cursor_store` and `as_cursor_store()` agree.
pub(super) fn cursor_store_of<S: Store>(store: &S) -> Option<&dyn CursorStore> {
    match (store.capabilities().cursor_store, store.as_cursor_store()) {
        (true, Some(cursors)) => Some(cursors),
        (false, None) => None,
        (true, None) => panic!("capabilities().cursor_store is true but as_cursor_store() is None"),
        (false, Some(_)) => {
            panic!("capabilities().cursor_store is false but as_cursor_store() is Some")
        }
    }
}

/// The health check, checking that `capabilities().health` and `as_health()` agree.
pub(super) fn health_of<S: Store>(store: &S) -> Option<&dyn Health> {
    match (store.capabilities().health, store.as_health()) {
        (true, Some(health)) => Some(health),
        (false, None) => None,
        (true, None) => panic!("capabilities().health is true but as_health() is None"),
        (false, Some(_)) => panic!("capabilities().health is false but as_health() is Some"),
    }
}

pub(super) async fn read_feed_from<Id: StoreId>(
    feed: &dyn ChangeFeed<Id = Id>,
    after: Option<u64>,
    limit: u32,
) -> Vec<FeedRecord<Id>> {
    feed.read_feed(after, limit)
        .await
        .unwrap_or_else(|e| panic!("read_feed(after {after:?}, limit {limit}) failed: {e}"))
}

pub(super) fn positions<Id>(records: &[FeedRecord<Id>]) -> Vec<u64> {
    records.iter().map(|r| r.position).collect()
}

pub(super) fn kinds<Id>(records: &[FeedRecord<Id>]) -> Vec<&'static str> {
    records.iter().map(|r| r.mutation.kind()).collect()
}

/// A subscription that notices new records quickly and reads small pages (so catching up takes
/// several reads).
pub(super) fn fast_subscription() -> SubscribeOptions {
    SubscribeOptions {
        poll_interval: Duration::from_millis(20),
        batch: 4,
        ..SubscribeOptions::default()
    }
}

/// The next `n` items of a subscription; panics on an error, an end or a long silence.
pub(super) async fn next_n<T, St>(subscription: &mut St, n: usize, context: &str) -> Vec<T>
where
    St: futures::Stream<Item = Result<T>> + Unpin,
{
    let mut received = Vec::with_capacity(n);
    while received.len() < n {
        match tokio::time::timeout(ITEM_TIMEOUT, subscription.next()).await {
            Err(_) => panic!(
                "{context}: received {} of {n} items, then nothing for {ITEM_TIMEOUT:?}",
                received.len()
            ),
            Ok(None) => panic!(
                "{context}: subscription ended after {} of {n} items",
                received.len()
            ),
            Ok(Some(Err(e))) => panic!(
                "{context}: subscription failed after {} of {n} items: {e}",
                received.len()
            ),
            Ok(Some(Ok(item))) => received.push(item),
        }
    }
    received
}

/// Appends a sentinel entry to `stream` and asserts that it is the subscription's next item:
/// proof that nothing (no duplicate, no stray entry) came between the items already taken and
/// it, without waiting for a quiet spell.
pub(super) async fn assert_next_is_sentinel<S, St>(
    store: &S,
    stream: &str,
    subscription: &mut St,
    context: &str,
) where
    S: Store,
    St: futures::Stream<Item = Result<Entry<S::Id>>> + Unpin,
{
    let id = append_all(store, stream, vec![sentinel()]).await.remove(0);
    let next = next_n(subscription, 1, context).await.remove(0);
    assert!(
        next.id == id && next.payload == sentinel().payload,
        "{context}: expected the sentinel {id:?} next, got {next:?}"
    );
}

/// Appends a sentinel entry and asserts that its append is the feed subscription's next record.
pub(super) async fn assert_next_record_is_sentinel<S, St>(
    store: &S,
    subscription: &mut St,
    context: &str,
) where
    S: Store,
    St: futures::Stream<Item = Result<FeedRecord<S::Id>>> + Unpin,
{
    let id = append_all(store, "sentinel", vec![sentinel()])
        .await
        .remove(0);
    let next = next_n(subscription, 1, context).await.remove(0);
    let is_sentinel = matches!(
        &next.mutation,
        Mutation::Append { entries } if entries.len() == 1 && entries[0].id == id
    );
    assert!(
        is_sentinel,
        "{context}: expected the sentinel's append next, got {next:?}"
    );
}

fn sentinel() -> AppendInput {
    AppendInput::new(json!({ "sentinel": true }))
}
