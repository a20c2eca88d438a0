//! What the behaviour modules share: imports, inputs, readers and assertions.

pub(super) use std::collections::{BTreeMap, BTreeSet};
pub(super) use std::fmt::Debug;
pub(super) use std::sync::Arc;
pub(super) use std::time::Duration;

pub(super) use chrono::{TimeDelta, Utc};
pub(super) use futures::StreamExt;
pub(super) use serde_json::{Value, json};
pub(super) use tokio::sync::Barrier;

pub(super) use crate::testkit::{ReadCounter, StoreFactory, fresh_table};
pub(super) use crate::{
    AppendInput, AppendOutcome, AppendResult, Entry, EntryId, Error, ExpectedVersion, FeedOrder,
    FeedRecord, ListOptions, MAX_LIMIT, MAX_STREAM_LEN, MAX_TABLE_LEN, Mutation, MutationKind,
    ReadOptions, Result, Store, Stream, StreamStat, SubscribeOptions,
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
pub(super) fn appended(result: &AppendResult, context: &str) -> Vec<(EntryId, u64)> {
    result
        .outcomes
        .iter()
        .enumerate()
        .map(|(i, outcome)| match outcome {
            AppendOutcome::Appended { id, version } => (*id, *version),
            AppendOutcome::Duplicate { id } => {
                panic!("{context}: input {i} was reported as a duplicate of {id:?}, expected it to be appended")
            }
        })
        .collect()
}

/// Appends `inputs` with [`ExpectedVersion::Any`], requires every one to be written, returns ids.
pub(super) async fn append_all(
    store: &Store,
    stream: &str,
    inputs: Vec<AppendInput>,
) -> Vec<EntryId> {
    let count = inputs.len();
    let outcomes = store
        .append(stream, inputs, ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("appending {count} entries to {stream:?} failed: {e}"));
    assert_eq!(
        outcomes.outcomes.len(),
        count,
        "append to {stream:?} must return one outcome per input"
    );
    appended(&outcomes, &format!("append to {stream:?}"))
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Appends `{"n": 1}` … `{"n": n}` in one batch and returns their ids.
pub(super) async fn append_n(store: &Store, stream: &str, n: u64) -> Vec<EntryId> {
    append_all(store, stream, items(1..=n)).await
}

pub(super) async fn read_with(store: &Store, stream: &str, options: &ReadOptions) -> Vec<Entry> {
    store
        .read(stream, options)
        .await
        .unwrap_or_else(|e| panic!("read of {stream:?} with {options:?} failed: {e}"))
}

/// Every entry of the stream (up to [`MAX_LIMIT`]), ascending.
pub(super) async fn read_all(store: &Store, stream: &str) -> Vec<Entry> {
    read_with(store, stream, &ReadOptions::new().limit(MAX_LIMIT)).await
}

pub(super) async fn count_of(store: &Store, stream: &str) -> u64 {
    store
        .count(stream)
        .await
        .unwrap_or_else(|e| panic!("count of {stream:?} failed: {e}"))
}

pub(super) async fn stat_of(store: &Store, stream: &str) -> StreamStat {
    store
        .stat(stream)
        .await
        .unwrap_or_else(|e| panic!("stat of {stream:?} failed: {e}"))
}

pub(super) async fn list_with(store: &Store, options: &ListOptions) -> Vec<String> {
    store
        .list_streams(options)
        .await
        .unwrap_or_else(|e| panic!("list_streams with {options:?} failed: {e}"))
}

pub(super) fn ids(entries: &[Entry]) -> Vec<EntryId> {
    entries.iter().map(|e| e.id).collect()
}

pub(super) fn versions(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.version).collect()
}

/// The `n` of every `{"n": n}` payload.
pub(super) fn ns(entries: &[Entry]) -> Vec<u64> {
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

pub(super) fn entry_by_id<'a>(entries: &'a [Entry], id: &EntryId) -> &'a Entry {
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

pub(super) fn assert_not_supported<T: Debug>(result: Result<T>, context: &str) {
    assert_err!(result, Error::NotSupported(_), "{context}");
}

pub(super) async fn read_feed_from(
    store: &Store,
    after: Option<u64>,
    limit: u32,
) -> Vec<FeedRecord> {
    store
        .read_feed(after, limit)
        .await
        .unwrap_or_else(|e| panic!("read_feed(after {after:?}, limit {limit}) failed: {e}"))
}

pub(super) fn positions(records: &[FeedRecord]) -> Vec<u64> {
    records.iter().map(|r| r.position).collect()
}

pub(super) fn kinds(records: &[FeedRecord]) -> Vec<MutationKind> {
    records.iter().map(|r| r.mutation.kind()).collect()
}

/// A subscription that notices new records quickly and reads small pages (so catching up takes
/// several reads).
pub(super) fn fast_subscription() -> SubscribeOptions {
    SubscribeOptions::new()
        .poll_interval(Duration::from_millis(20))
        .batch(4)
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
pub(super) async fn assert_next_is_sentinel<St>(
    store: &Store,
    stream: &str,
    subscription: &mut St,
    context: &str,
) where
    St: futures::Stream<Item = Result<Entry>> + Unpin,
{
    let id = append_all(store, stream, vec![sentinel()]).await.remove(0);
    let next = next_n(subscription, 1, context).await.remove(0);
    assert!(
        next.id == id && next.payload == sentinel().payload,
        "{context}: expected the sentinel {id:?} next, got {next:?}"
    );
}

/// Appends a sentinel entry and asserts that its append is the feed subscription's next record.
pub(super) async fn assert_next_record_is_sentinel<St>(
    store: &Store,
    subscription: &mut St,
    context: &str,
) where
    St: futures::Stream<Item = Result<FeedRecord>> + Unpin,
{
    let id = append_all(store, "sentinel", vec![sentinel()])
        .await
        .remove(0);
    let next = next_n(subscription, 1, context).await.remove(0);
    let is_sentinel = matches!(
        &next.mutation,
        Mutation::Append { entries, .. } if entries.len() == 1 && entries[0].id == id
    );
    assert!(
        is_sentinel,
        "{context}: expected the sentinel's append next, got {next:?}"
    );
}

fn sentinel() -> AppendInput {
    AppendInput::new(json!({ "sentinel": true }))
}
