//! One public async function per behaviour; each panics with a message when the store breaks it.
//!
//! Every function opens its own store on a fresh table ([`StoreFactory::fresh`]) and uses only the
//! public API. Ids are opaque: every id a test uses comes from an append. Behaviours gated by a
//! [`Capabilities`] flag are tested fully when the flag is set; when it is not, the test checks
//! that the operation answers [`Error::NotSupported`] (or that the `as_*` accessor is `None`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use super::{StoreFactory, fresh_table};
use crate::{
    AppendInput, AppendOutcome, Capabilities, ChangeFeed, CursorStore, Entry, Error,
    ExpectedVersion, FeedRecord, FieldMapper, Health, ListOptions, MAX_LIMIT, MAX_STREAM_LEN,
    MAX_TABLE_LEN, Mutation, ReadOptions, Result, Search, Store, StoreId, Stream, StreamStat,
    SubscribeOptions, subscribe_feed, upcaster,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Asserts that `$result` is an `Err` matching `$pattern`; the rest is a `format!` context.
macro_rules! assert_err {
    ($result:expr, $pattern:pat if $guard:expr, $($context:tt)+) => {
        match $result {
            Ok(_) => panic!(
                "{}: expected Err({} if {}), got Ok",
                format_args!($($context)+),
                stringify!($pattern),
                stringify!($guard)
            ),
            Err(error) => assert!(
                matches!(error, $pattern if $guard),
                "{}: expected Err({} if {}), got Err({error:?})",
                format_args!($($context)+),
                stringify!($pattern),
                stringify!($guard)
            ),
        }
    };
    ($result:expr, $pattern:pat, $($context:tt)+) => {
        match $result {
            Ok(_) => panic!(
                "{}: expected Err({}), got Ok",
                format_args!($($context)+),
                stringify!($pattern)
            ),
            Err(error) => assert!(
                matches!(error, $pattern),
                "{}: expected Err({}), got Err({error:?})",
                format_args!($($context)+),
                stringify!($pattern)
            ),
        }
    };
}

/// How long a subscription may stay silent before a test gives up waiting for an item.
const ITEM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a subscription must stay silent to count as having delivered everything.
const QUIET_PERIOD: Duration = Duration::from_millis(150);

/// An input whose payload is `{"n": n}`.
fn item(n: u64) -> AppendInput {
    AppendInput::new(json!({ "n": n }))
}

fn items(range: std::ops::RangeInclusive<u64>) -> Vec<AppendInput> {
    range.map(item).collect()
}

fn tags(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|t| t.to_string()).collect()
}

fn changes(list: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
        .collect()
}

fn annotations(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `(id, version)` of every outcome; panics if one is a duplicate.
fn appended<Id: Clone + Debug>(outcomes: &[AppendOutcome<Id>], context: &str) -> Vec<(Id, u64)> {
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
async fn append_all<S: Store>(store: &S, stream: &str, inputs: Vec<AppendInput>) -> Vec<S::Id> {
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
async fn append_n<S: Store>(store: &S, stream: &str, n: u64) -> Vec<S::Id> {
    append_all(store, stream, items(1..=n)).await
}

async fn read_with<S: Store>(
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
async fn read_all<S: Store>(store: &S, stream: &str) -> Vec<Entry<S::Id>> {
    read_with(store, stream, &ReadOptions::new().limit(MAX_LIMIT)).await
}

async fn count_of<S: Store>(store: &S, stream: &str) -> u64 {
    store
        .count(stream)
        .await
        .unwrap_or_else(|e| panic!("count of {stream:?} failed: {e}"))
}

async fn stat_of<S: Store>(store: &S, stream: &str) -> StreamStat<S::Id> {
    store
        .stat(stream)
        .await
        .unwrap_or_else(|e| panic!("stat of {stream:?} failed: {e}"))
}

async fn list_with<S: Store>(store: &S, options: &ListOptions) -> Vec<String> {
    store
        .list_streams(options)
        .await
        .unwrap_or_else(|e| panic!("list_streams with {options:?} failed: {e}"))
}

fn ids<Id: Clone>(entries: &[Entry<Id>]) -> Vec<Id> {
    entries.iter().map(|e| e.id.clone()).collect()
}

fn versions<Id>(entries: &[Entry<Id>]) -> Vec<u64> {
    entries.iter().map(|e| e.version).collect()
}

/// The `n` of every `{"n": n}` payload.
fn ns<Id: Debug>(entries: &[Entry<Id>]) -> Vec<u64> {
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

fn entry_by_id<'a, Id: PartialEq + Debug>(entries: &'a [Entry<Id>], id: &Id) -> &'a Entry<Id> {
    entries
        .iter()
        .find(|e| &e.id == id)
        .unwrap_or_else(|| panic!("entry {id:?} is missing from the read"))
}

fn assert_strictly_ascending<T: PartialOrd + Debug>(values: &[T], context: &str) {
    for pair in values.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{context}: must be strictly ascending, but {:?} is followed by {:?} in {values:?}",
            pair[0],
            pair[1]
        );
    }
}

fn assert_not_supported<T>(result: Result<T>, context: &str) {
    assert_err!(result, Error::NotSupported(_), "{context}");
}

/// True if the store enforces dedup keys; otherwise checks that it refuses them.
async fn supports_dedup<S: Store>(store: &S) -> bool {
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
async fn supports_tags<S: Store>(store: &S) -> bool {
    if store.capabilities().tags {
        return true;
    }
    let id = append_n(store, "tags-probe", 1).await.remove(0);
    let result = store.set_tags("tags-probe", &id, tags(&["t"])).await;
    assert_not_supported(result, "capabilities().tags is false, so set_tags");
    false
}

/// True if the store supports annotations; otherwise checks that writes and filters are refused.
async fn supports_annotations<S: Store>(store: &S) -> bool {
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
async fn supports_rename<S: Store>(store: &S) -> bool {
    if store.capabilities().rename {
        return true;
    }
    append_n(store, "rename-probe", 1).await;
    let result = store.rename_stream("rename-probe", "rename-probe-2").await;
    assert_not_supported(result, "capabilities().rename is false, so rename_stream");
    false
}

/// The search capability, checking that `capabilities().search` and `as_search()` agree.
fn search_of<S: Store>(store: &S) -> Option<&dyn Search<Id = S::Id>> {
    match (store.capabilities().search, store.as_search()) {
        (true, Some(search)) => Some(search),
        (false, None) => None,
        (true, None) => panic!("capabilities().search is true but as_search() is None"),
        (false, Some(_)) => panic!("capabilities().search is false but as_search() is Some"),
    }
}

/// The change feed, checking that `capabilities().change_feed` and `as_change_feed()` agree.
fn change_feed_of<S: Store>(store: &S) -> Option<&dyn ChangeFeed<Id = S::Id>> {
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
fn cursor_store_of<S: Store>(store: &S) -> Option<&dyn CursorStore> {
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
fn health_of<S: Store>(store: &S) -> Option<&dyn Health> {
    match (store.capabilities().health, store.as_health()) {
        (true, Some(health)) => Some(health),
        (false, None) => None,
        (true, None) => panic!("capabilities().health is true but as_health() is None"),
        (false, Some(_)) => panic!("capabilities().health is false but as_health() is Some"),
    }
}

async fn read_feed_from<Id: StoreId>(
    feed: &dyn ChangeFeed<Id = Id>,
    after: Option<u64>,
    limit: u32,
) -> Vec<FeedRecord<Id>> {
    feed.read_feed(after, limit)
        .await
        .unwrap_or_else(|e| panic!("read_feed(after {after:?}, limit {limit}) failed: {e}"))
}

fn positions<Id>(records: &[FeedRecord<Id>]) -> Vec<u64> {
    records.iter().map(|r| r.position).collect()
}

fn kinds<Id>(records: &[FeedRecord<Id>]) -> Vec<&'static str> {
    records.iter().map(|r| r.mutation.kind()).collect()
}

/// A subscription that notices new records quickly and reads small pages (so catching up takes
/// several reads).
fn fast_subscription() -> SubscribeOptions {
    SubscribeOptions {
        poll_interval: Duration::from_millis(20),
        batch: 4,
        ..SubscribeOptions::default()
    }
}

/// The next `n` items of a subscription; panics on an error, an end or a long silence.
async fn next_n<T, St>(subscription: &mut St, n: usize, context: &str) -> Vec<T>
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

/// Asserts that a subscription yields nothing more (no duplicate after the expected items).
async fn assert_quiet<T: Debug, St>(subscription: &mut St, context: &str)
where
    St: futures::Stream<Item = Result<T>> + Unpin,
{
    if let Ok(item) = tokio::time::timeout(QUIET_PERIOD, subscription.next()).await {
        panic!("{context}: expected nothing more, got {item:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Append and read back
// ---------------------------------------------------------------------------------------------

/// Append then read returns every field as given, with ids and versions from the append, a
/// recent `created_at` and no `updated_at`.
pub async fn append_then_read_round_trips_every_field<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let mut full = AppendInput::new(json!({"kind": "order", "lines": [1, 2], "total": 12.5}))
        .order_key("customer-7")
        .schema_version(2)
        .metadata("source", "checkout")
        .metadata("region", "eu")
        .tag("priority")
        .tag("paid");
    if store.capabilities().dedup {
        full = full.dedup_key("request-42");
    }
    let inputs = vec![full, AppendInput::new(json!("bare")), item(3)];
    let before = Utc::now() - TimeDelta::seconds(5);
    let outcomes = store
        .append("round-trip", inputs.clone(), ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("append failed: {e}"));
    let after = Utc::now() + TimeDelta::seconds(5);
    let written = appended(&outcomes, "first append");
    assert_eq!(
        written.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        [1, 2, 3],
        "versions of the first append to a new stream"
    );
    let written_ids: Vec<_> = written.iter().map(|(id, _)| id.clone()).collect();
    assert_strictly_ascending(&written_ids, "ids returned by one append");

    let entries = read_all(&store, "round-trip").await;
    assert_eq!(entries.len(), 3, "entries read back: {entries:?}");
    for (i, (entry, input)) in entries.iter().zip(&inputs).enumerate() {
        assert_eq!(
            entry.id, written_ids[i],
            "entry {i}: id must be the one append returned"
        );
        assert_eq!(entry.stream, "round-trip", "entry {i}: stream");
        assert_eq!(entry.version, i as u64 + 1, "entry {i}: version");
        assert_eq!(entry.payload, input.payload, "entry {i}: payload");
        assert_eq!(entry.order_key, input.order_key, "entry {i}: order_key");
        assert_eq!(entry.dedup_key, input.dedup_key, "entry {i}: dedup_key");
        assert_eq!(
            entry.schema_version, input.schema_version,
            "entry {i}: schema_version"
        );
        assert_eq!(entry.metadata, input.metadata, "entry {i}: metadata");
        assert_eq!(entry.tags, input.tags, "entry {i}: tags");
        assert!(
            entry.annotations.is_empty(),
            "entry {i}: annotations must start empty, got {:?}",
            entry.annotations
        );
        assert!(
            entry.created_at >= before && entry.created_at <= after,
            "entry {i}: created_at {} is not within a few seconds of now ({before} .. {after})",
            entry.created_at
        );
        assert_eq!(
            entry.created_at.timestamp_subsec_nanos() % 1_000,
            0,
            "entry {i}: created_at {} has sub-microsecond precision; stores keep microseconds",
            entry.created_at
        );
        assert_eq!(
            entry.updated_at, None,
            "entry {i}: updated_at must be None until tags or annotations change"
        );
    }

    let next = store
        .append("round-trip", vec![item(4)], ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("second append failed: {e}"));
    let next = appended(&next, "second append");
    assert_eq!(next[0].1, 4, "a second append continues the versions");
    assert!(
        next[0].0 > written_ids[2],
        "a later append gets a greater id: {:?} after {:?}",
        next[0].0,
        written_ids[2]
    );
}

/// The schema version given at append is stored and read back.
pub async fn schema_version_is_stored_and_read_back<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let inputs = vec![
        item(1).schema_version(3),
        item(2),
        item(3).schema_version(u32::MAX),
    ];
    append_all(&store, "schemas", inputs).await;
    let entries = read_all(&store, "schemas").await;
    let got: Vec<u32> = entries.iter().map(|e| e.schema_version).collect();
    assert_eq!(
        got,
        [3, 1, u32::MAX],
        "schema versions read back (the whole u32 range must be kept)"
    );
}

/// An empty batch writes nothing and returns no outcomes, whatever the expected version.
pub async fn empty_append_returns_nothing_and_writes_nothing<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let outcomes = store
        .append("empty-batch", Vec::new(), ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("empty append failed: {e}"));
    assert!(outcomes.is_empty(), "an empty batch returns no outcomes");
    assert_eq!(
        count_of(&store, "empty-batch").await,
        0,
        "count after an empty append"
    );
    assert_eq!(
        stat_of(&store, "empty-batch").await.last_version,
        0,
        "an empty append must not create the stream's version"
    );
    assert!(
        list_with(&store, &ListOptions::new()).await.is_empty(),
        "an empty append must not create a stream"
    );

    append_n(&store, "empty-batch", 2).await;
    let outcomes = store
        .append("empty-batch", Vec::new(), ExpectedVersion::Exact(99))
        .await
        .unwrap_or_else(|e| panic!("empty append with a wrong expected version failed: {e}"));
    assert!(outcomes.is_empty(), "an empty batch returns no outcomes");
    assert_eq!(
        count_of(&store, "empty-batch").await,
        2,
        "count after an empty append"
    );

    assert_err!(
        store.append("", Vec::new(), ExpectedVersion::Any).await,
        Error::InvalidName { kind: "stream", .. },
        "an empty batch still validates the stream id"
    );
}

/// Entries of different streams (even ids differing only in case or trailing space) are kept
/// apart, and each stream has its own versions.
pub async fn streams_are_isolated<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let streams = [("iso", 2u64), ("ISO", 1), ("iso ", 3), ("iso-other", 4)];
    for (stream, n) in streams {
        append_n(&store, stream, n).await;
    }
    for (stream, n) in streams {
        let entries = read_all(&store, stream).await;
        assert_eq!(
            versions(&entries),
            (1..=n).collect::<Vec<_>>(),
            "versions of stream {stream:?}"
        );
        assert!(
            entries.iter().all(|e| e.stream == stream),
            "stream {stream:?} returned entries of other streams: {entries:?}"
        );
        assert_eq!(count_of(&store, stream).await, n, "count of {stream:?}");
    }
}

/// `count` and `stat` describe the stream: count, first and last id, last version.
pub async fn count_and_stat_describe_the_stream<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let mut all = append_n(&store, "stats", 3).await;
    append_n(&store, "stats-other", 2).await;
    all.extend(append_n(&store, "stats", 2).await);
    assert_eq!(
        count_of(&store, "stats").await,
        5,
        "count after 3 + 2 entries"
    );
    assert_eq!(
        stat_of(&store, "stats").await,
        StreamStat {
            stream: "stats".to_owned(),
            count: 5,
            first_id: Some(all[0].clone()),
            last_id: Some(all[4].clone()),
            last_version: 5,
        },
        "stat after 3 + 2 entries"
    );
}

/// A stream that was never written reads as empty, counts 0 and has an empty stat.
pub async fn missing_stream_reads_as_empty<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "present", 1).await;
    assert!(
        read_with(&store, "absent", &ReadOptions::new())
            .await
            .is_empty(),
        "reading a missing stream returns no entries"
    );
    assert!(
        read_with(&store, "absent", &ReadOptions::new().descending())
            .await
            .is_empty(),
        "reading a missing stream descending returns no entries"
    );
    assert_eq!(
        count_of(&store, "absent").await,
        0,
        "count of a missing stream"
    );
    assert_eq!(
        stat_of(&store, "absent").await,
        StreamStat {
            stream: "absent".to_owned(),
            count: 0,
            first_id: None,
            last_id: None,
            last_version: 0,
        },
        "stat of a missing stream"
    );
}

// ---------------------------------------------------------------------------------------------
// Dedup
// ---------------------------------------------------------------------------------------------

/// A dedup key already in the stream makes the input a duplicate of the stored entry; it is not
/// written.
pub async fn duplicate_dedup_key_in_stream_is_skipped<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_dedup(&store).await {
        return;
    }
    let first = append_all(&store, "dedup", vec![item(1).dedup_key("k1")]).await;
    let outcomes = store
        .append("dedup", vec![item(2).dedup_key("k1")], ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("append of a duplicate failed: {e}"));
    assert_eq!(
        outcomes,
        vec![AppendOutcome::Duplicate {
            id: first[0].clone()
        }],
        "a second append with the same dedup key"
    );
    let entries = read_all(&store, "dedup").await;
    assert_eq!(ns(&entries), [1], "only the first entry is stored");
    assert_eq!(
        stat_of(&store, "dedup").await.last_version,
        1,
        "a duplicate does not advance the version"
    );
}

/// Inputs without a dedup key are never duplicates, even when identical.
pub async fn entries_without_dedup_key_are_all_written<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let same = AppendInput::new(json!({"same": true})).order_key("o");
    append_all(&store, "no-key", vec![same.clone(), same.clone()]).await;
    append_all(&store, "no-key", vec![same]).await;
    assert_eq!(
        count_of(&store, "no-key").await,
        3,
        "identical entries without a dedup key are all written"
    );
}

/// The same dedup key in two streams does not collide: both entries are written.
pub async fn same_dedup_key_in_two_streams_is_written_to_both<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_dedup(&store).await {
        return;
    }
    append_all(&store, "dedup-a", vec![item(1).dedup_key("shared")]).await;
    append_all(&store, "dedup-b", vec![item(2).dedup_key("shared")]).await;
    assert_eq!(
        ns(&read_all(&store, "dedup-a").await),
        [1],
        "stream dedup-a"
    );
    assert_eq!(
        ns(&read_all(&store, "dedup-b").await),
        [2],
        "stream dedup-b"
    );
}

/// A dedup key repeated inside one batch: the later input is a duplicate of the earlier one.
pub async fn duplicate_dedup_key_in_same_batch_is_skipped<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_dedup(&store).await {
        return;
    }
    let outcomes = store
        .append(
            "batch-dedup",
            vec![
                item(1).dedup_key("k1"),
                item(2).dedup_key("k2"),
                item(3).dedup_key("k1"),
                item(4),
            ],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap_or_else(|e| panic!("append failed: {e}"));
    let entries = read_all(&store, "batch-dedup").await;
    assert_eq!(ns(&entries), [1, 2, 4], "entries written by the batch");
    assert_eq!(
        outcomes,
        vec![
            AppendOutcome::Appended {
                id: entries[0].id.clone(),
                version: 1
            },
            AppendOutcome::Appended {
                id: entries[1].id.clone(),
                version: 2
            },
            AppendOutcome::Duplicate {
                id: entries[0].id.clone()
            },
            AppendOutcome::Appended {
                id: entries[2].id.clone(),
                version: 3
            },
        ],
        "outcomes of a batch repeating a dedup key"
    );
}

/// A batch made only of duplicates succeeds whatever the expected version and writes nothing;
/// a batch with one new input still checks it.
pub async fn all_duplicate_retry_succeeds_whatever_expected_version<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_dedup(&store).await {
        return;
    }
    let batch = vec![item(1).dedup_key("k1"), item(2).dedup_key("k2")];
    let first = store
        .append("retry", batch.clone(), ExpectedVersion::NoStream)
        .await
        .unwrap_or_else(|e| panic!("first append failed: {e}"));
    let ids: Vec<_> = appended(&first, "first append")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let duplicates: Vec<_> = ids
        .iter()
        .map(|id| AppendOutcome::Duplicate { id: id.clone() })
        .collect();
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(7),
        ExpectedVersion::Exact(0),
        ExpectedVersion::StreamExists,
        ExpectedVersion::Any,
    ] {
        let retry = store
            .append("retry", batch.clone(), expected)
            .await
            .unwrap_or_else(|e| {
                panic!("an all-duplicate retry with {expected:?} must succeed, got: {e}")
            });
        assert_eq!(retry, duplicates, "retry with {expected:?}");
    }
    assert_eq!(count_of(&store, "retry").await, 2, "retries write nothing");
    assert_eq!(
        stat_of(&store, "retry").await.last_version,
        2,
        "retries do not advance the version"
    );

    let mixed = vec![item(1).dedup_key("k1"), item(3).dedup_key("k3")];
    assert_err!(
        store
            .append("retry", mixed, ExpectedVersion::Exact(7))
            .await,
        Error::Conflict {
            expected: ExpectedVersion::Exact(7),
            actual: 2,
            ..
        },
        "a batch with a new input and a wrong expected version"
    );
    assert_eq!(
        count_of(&store, "retry").await,
        2,
        "a conflicting batch writes nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// Expected version
// ---------------------------------------------------------------------------------------------

/// `ExpectedVersion::Any` appends to new and existing streams alike.
pub async fn expected_any_always_appends<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    for round in 1..=3u64 {
        let outcomes = store
            .append("any", vec![item(round)], ExpectedVersion::Any)
            .await
            .unwrap_or_else(|e| panic!("append {round} with Any failed: {e}"));
        assert_eq!(
            appended(&outcomes, "append with Any")[0].1,
            round,
            "version of append {round}"
        );
    }
}

/// `ExpectedVersion::NoStream` appends to a new stream and conflicts on an existing one.
pub async fn expected_no_stream_conflicts_on_existing_stream<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    store
        .append("no-stream", vec![item(1)], ExpectedVersion::NoStream)
        .await
        .unwrap_or_else(|e| panic!("NoStream on a new stream must succeed: {e}"));
    assert_err!(
        store
            .append("no-stream", vec![item(2)], ExpectedVersion::NoStream)
            .await,
        Error::Conflict {
            expected: ExpectedVersion::NoStream,
            actual: 1,
            ..
        },
        "NoStream on a stream at version 1"
    );
    assert_eq!(
        ns(&read_all(&store, "no-stream").await),
        [1],
        "a conflicting append writes nothing"
    );
}

/// `ExpectedVersion::StreamExists` conflicts on a new stream and appends to an existing one.
pub async fn expected_stream_exists_conflicts_on_new_stream<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    assert_err!(
        store
            .append("exists", vec![item(1)], ExpectedVersion::StreamExists)
            .await,
        Error::Conflict {
            expected: ExpectedVersion::StreamExists,
            actual: 0,
            ..
        },
        "StreamExists on a new stream"
    );
    assert_eq!(
        count_of(&store, "exists").await,
        0,
        "a conflicting append writes nothing"
    );
    assert!(
        list_with(&store, &ListOptions::new()).await.is_empty(),
        "a conflicting append creates no stream"
    );
    append_n(&store, "exists", 1).await;
    let outcomes = store
        .append("exists", vec![item(2)], ExpectedVersion::StreamExists)
        .await
        .unwrap_or_else(|e| panic!("StreamExists on an existing stream must succeed: {e}"));
    assert_eq!(appended(&outcomes, "StreamExists")[0].1, 2, "version");
}

/// `ExpectedVersion::Exact(n)` appends when the stream is at `n` (0: new) and conflicts with the
/// actual version otherwise.
pub async fn expected_exact_version_conflicts_when_different<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    store
        .append("exact", vec![item(1)], ExpectedVersion::Exact(0))
        .await
        .unwrap_or_else(|e| panic!("Exact(0) on a new stream must succeed: {e}"));
    store
        .append("exact", vec![item(2), item(3)], ExpectedVersion::Exact(1))
        .await
        .unwrap_or_else(|e| panic!("Exact(1) on a stream at version 1 must succeed: {e}"));
    for stale in [0, 1, 2, 4, 100] {
        assert_err!(
            store
                .append("exact", vec![item(99)], ExpectedVersion::Exact(stale))
                .await,
            Error::Conflict {
                actual: 3,
                expected: ExpectedVersion::Exact(e),
                ..
            } if e == stale,
            "Exact({stale}) on a stream at version 3"
        );
    }
    assert_err!(
        store
            .append("exact-new", vec![item(1)], ExpectedVersion::Exact(2))
            .await,
        Error::Conflict {
            expected: ExpectedVersion::Exact(2),
            actual: 0,
            ..
        },
        "Exact(2) on a new stream"
    );
    assert_eq!(
        ns(&read_all(&store, "exact").await),
        [1, 2, 3],
        "conflicting appends write nothing"
    );
    assert_eq!(count_of(&store, "exact-new").await, 0, "count of exact-new");
    store
        .append("exact", vec![item(4)], ExpectedVersion::Exact(3))
        .await
        .unwrap_or_else(|e| panic!("Exact(3) on a stream at version 3 must succeed: {e}"));
}

// ---------------------------------------------------------------------------------------------
// Reading: cursors and direction
// ---------------------------------------------------------------------------------------------

/// Pages of 2 over 5 entries, each continuing after the last id, have sizes 2, 2, 1, 0.
pub async fn read_pages_with_after_cursor<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "pages", 5).await;
    append_n(&store, "pages-other", 3).await;
    let mut cursor = None;
    let mut pages = Vec::new();
    for _ in 0..4 {
        let mut options = ReadOptions::new().limit(2);
        options.after = cursor.clone();
        let page = read_with(&store, "pages", &options).await;
        cursor = page.last().map(|e| e.id.clone()).or(cursor);
        pages.push(ids(&page));
    }
    assert_eq!(
        pages,
        vec![
            all[0..2].to_vec(),
            all[2..4].to_vec(),
            all[4..5].to_vec(),
            Vec::new()
        ],
        "pages of 2 over 5 entries"
    );
}

/// A descending read returns the newest entry first, entry by entry.
pub async fn read_descending_returns_newest_first<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "desc", 5).await;
    let entries = read_with(&store, "desc", &ReadOptions::new().descending()).await;
    assert_eq!(entries.len(), 5, "descending read of 5 entries");
    for (i, entry) in entries.iter().enumerate() {
        let expected = 5 - i as u64;
        assert_eq!(entry.id, all[4 - i], "descending entry {i}: id");
        assert_eq!(entry.version, expected, "descending entry {i}: version");
        assert_eq!(
            entry.payload,
            json!({ "n": expected }),
            "descending entry {i}: payload"
        );
    }
    let newest = read_with(&store, "desc", &ReadOptions::new().descending().limit(2)).await;
    assert_eq!(
        ids(&newest),
        [all[4].clone(), all[3].clone()],
        "descending, limit 2"
    );
}

/// A descending read after a cursor returns the ids below it, newest first.
pub async fn read_descending_after_cursor_returns_lower_ids<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "desc-after", 5).await;
    let below = read_with(
        &store,
        "desc-after",
        &ReadOptions::new().descending().after(all[3].clone()),
    )
    .await;
    assert_eq!(
        ids(&below),
        [all[2].clone(), all[1].clone(), all[0].clone()],
        "descending after the 4th id"
    );
    let page = read_with(
        &store,
        "desc-after",
        &ReadOptions::new()
            .descending()
            .after(all[3].clone())
            .limit(2),
    )
    .await;
    assert_eq!(
        ids(&page),
        [all[2].clone(), all[1].clone()],
        "descending after the 4th id, limit 2"
    );
    let none = read_with(
        &store,
        "desc-after",
        &ReadOptions::new().descending().after(all[0].clone()),
    )
    .await;
    assert!(none.is_empty(), "descending after the first id: {none:?}");
}

// ---------------------------------------------------------------------------------------------
// Reading: filters
// ---------------------------------------------------------------------------------------------

/// The order-key filter keeps entries with exactly that order key.
pub async fn read_filters_by_order_key<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "by-order",
        vec![
            item(1).order_key("a"),
            item(2).order_key("b"),
            item(3),
            item(4).order_key("a"),
            item(5).order_key("A"),
        ],
    )
    .await;
    for (key, expected) in [
        ("a", vec![1, 4]),
        ("b", vec![2]),
        ("A", vec![5]),
        ("z", vec![]),
    ] {
        let entries = read_with(&store, "by-order", &ReadOptions::new().order_key(key)).await;
        assert_eq!(ns(&entries), expected, "order_key = {key:?}");
    }
}

/// The tag filter keeps entries carrying that tag.
pub async fn read_filters_by_tag<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "by-tag",
        vec![
            item(1).tag("red"),
            item(2).tag("red").tag("big"),
            item(3).tag("big"),
            item(4),
        ],
    )
    .await;
    for (tag, expected) in [("red", vec![1, 2]), ("big", vec![2, 3]), ("re", vec![])] {
        let entries = read_with(&store, "by-tag", &ReadOptions::new().tag(tag)).await;
        assert_eq!(ns(&entries), expected, "tag = {tag:?}");
    }
}

/// The all-tags filter keeps entries carrying every one of the tags.
pub async fn read_filters_by_all_tags<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "by-tags",
        vec![
            item(1).tag("red"),
            item(2).tag("red").tag("big"),
            item(3).tag("big"),
            item(4).tag("red").tag("big").tag("old"),
        ],
    )
    .await;
    for (wanted, expected) in [
        (vec!["red", "big"], vec![2, 4]),
        (vec!["red"], vec![1, 2, 4]),
        (vec!["big", "old", "red"], vec![4]),
        (vec!["red", "big", "new"], vec![]),
    ] {
        let options = ReadOptions::new().all_tags(wanted.clone());
        let entries = read_with(&store, "by-tags", &options).await;
        assert_eq!(ns(&entries), expected, "all tags {wanted:?}");
    }
}

/// Metadata filters keep entries with the key at exactly that value; several are ANDed.
pub async fn read_filters_by_metadata<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "by-meta",
        vec![
            item(1).metadata("env", "prod").metadata("region", "eu"),
            item(2).metadata("env", "prod").metadata("region", "us"),
            item(3).metadata("env", "dev").metadata("region", "eu"),
            item(4),
        ],
    )
    .await;
    let cases = [
        (vec![("env", "prod")], vec![1, 2]),
        (vec![("region", "eu")], vec![1, 3]),
        (vec![("env", "prod"), ("region", "eu")], vec![1]),
        (vec![("env", "dev"), ("region", "us")], vec![]),
        (vec![("env", "staging")], vec![]),
        (vec![("region", "prod")], vec![]),
    ];
    for (pairs, expected) in cases {
        let options = pairs
            .iter()
            .fold(ReadOptions::new(), |o, (k, v)| o.metadata(*k, *v));
        let entries = read_with(&store, "by-meta", &options).await;
        assert_eq!(ns(&entries), expected, "metadata filter {pairs:?}");
    }
}

/// Annotation filters keep entries whose annotations (set after append) match; several are ANDed.
pub async fn read_filters_by_annotation<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_annotations(&store).await {
        return;
    }
    let all = append_n(&store, "by-annotation", 3).await;
    store
        .set_annotations(
            "by-annotation",
            &all[0],
            changes(&[("status", Some("done")), ("owner", Some("ann"))]),
        )
        .await
        .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
    store
        .set_annotations(
            "by-annotation",
            &all[1],
            changes(&[("status", Some("open"))]),
        )
        .await
        .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
    let cases = [
        (vec![("status", "done")], vec![1]),
        (vec![("status", "open")], vec![2]),
        (vec![("status", "done"), ("owner", "ann")], vec![1]),
        (vec![("status", "done"), ("owner", "bob")], vec![]),
        (vec![("status", "closed")], vec![]),
    ];
    for (pairs, expected) in cases {
        let options = pairs
            .iter()
            .fold(ReadOptions::new(), |o, (k, v)| o.annotation(*k, *v));
        let entries = read_with(&store, "by-annotation", &options).await;
        assert_eq!(ns(&entries), expected, "annotation filter {pairs:?}");
    }
}

/// The created-at range includes `created_from` and excludes `created_before`.
pub async fn read_filters_by_created_at_range<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    for n in 1..=4 {
        append_all(&store, "by-time", vec![item(n)]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let entries = read_all(&store, "by-time").await;
    let created: Vec<_> = entries.iter().map(|e| e.created_at).collect();
    assert_strictly_ascending(
        &created,
        "created_at of appends made 5 ms apart (precondition of this test)",
    );
    let cases = [
        (Some(created[1]), None, vec![2, 3, 4]),
        (None, Some(created[2]), vec![1, 2]),
        (Some(created[1]), Some(created[3]), vec![2, 3]),
        (Some(created[2]), Some(created[2]), vec![]),
        (
            Some(created[0]),
            Some(created[3] + TimeDelta::microseconds(1)),
            vec![1, 2, 3, 4],
        ),
    ];
    for (from, before, expected) in cases {
        let mut options = ReadOptions::new();
        options.filter.created_from = from;
        options.filter.created_before = before;
        let got = read_with(&store, "by-time", &options).await;
        assert_eq!(
            ns(&got),
            expected,
            "created_from {from:?} (inclusive), created_before {before:?} (exclusive)"
        );
    }
}

/// Filters of different kinds are ANDed, and combine with cursor, direction and limit.
pub async fn read_filters_combine_with_and<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let inputs = (1..=8u64)
        .map(|n| {
            let mut input = item(n).order_key(if n % 2 == 1 { "odd" } else { "even" });
            if [1, 3, 4, 5, 7].contains(&n) {
                input = input.tag("x");
            }
            if [3, 5, 6, 7].contains(&n) {
                input = input.metadata("m", "1");
            }
            input
        })
        .collect();
    let all = append_all(&store, "combined", inputs).await;
    let filtered = || {
        ReadOptions::new()
            .order_key("odd")
            .tag("x")
            .metadata("m", "1")
    };
    let cases = [
        (filtered(), vec![3, 5, 7]),
        (filtered().limit(2), vec![3, 5]),
        (filtered().after(all[2].clone()), vec![5, 7]),
        (filtered().descending(), vec![7, 5, 3]),
        (filtered().descending().after(all[6].clone()), vec![5, 3]),
        (filtered().all_tags(["x", "y"]), vec![]),
        (filtered().order_key("even"), vec![]),
    ];
    for (options, expected) in cases {
        let got = read_with(&store, "combined", &options).await;
        assert_eq!(ns(&got), expected, "read with {options:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Trim
// ---------------------------------------------------------------------------------------------

/// Trim deletes the entries up to and including the id and returns how many it deleted.
pub async fn trim_deletes_up_to_id_inclusive<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "trim", 5).await;
    let other = append_n(&store, "trim-other", 2).await;
    let deleted = store
        .trim("trim", &all[1])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_eq!(deleted, 2, "trim up to the 2nd id deletes 2 entries");
    let remaining = read_all(&store, "trim").await;
    assert_eq!(
        ids(&remaining),
        all[2..].to_vec(),
        "entries left after trim"
    );
    assert_eq!(versions(&remaining), [3, 4, 5], "versions left after trim");
    assert_eq!(
        stat_of(&store, "trim").await,
        StreamStat {
            stream: "trim".to_owned(),
            count: 3,
            first_id: Some(all[2].clone()),
            last_id: Some(all[4].clone()),
            last_version: 5,
        },
        "stat after trim"
    );
    let again = store
        .trim("trim", &all[1])
        .await
        .unwrap_or_else(|e| panic!("second trim failed: {e}"));
    assert_eq!(again, 0, "trimming the same prefix again deletes nothing");
    assert_eq!(
        ids(&read_all(&store, "trim-other").await),
        other,
        "trim leaves other streams alone"
    );
}

/// Trim keeps the stream's version: the next append continues after it, even when every entry
/// was deleted, and the stream still counts as existing for expected-version checks.
pub async fn trim_keeps_stream_version<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "trim-all", 3).await;
    let deleted = store
        .trim("trim-all", &all[2])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_eq!(deleted, 3, "trim up to the last id deletes everything");
    assert_eq!(
        stat_of(&store, "trim-all").await,
        StreamStat {
            stream: "trim-all".to_owned(),
            count: 0,
            first_id: None,
            last_id: None,
            last_version: 3,
        },
        "stat of a fully trimmed stream"
    );
    assert_err!(
        store
            .append("trim-all", vec![item(4)], ExpectedVersion::NoStream)
            .await,
        Error::Conflict {
            expected: ExpectedVersion::NoStream,
            actual: 3,
            ..
        },
        "NoStream on a fully trimmed stream"
    );
    let outcomes = store
        .append("trim-all", vec![item(4)], ExpectedVersion::Exact(3))
        .await
        .unwrap_or_else(|e| panic!("Exact(3) after trimming a stream at version 3: {e}"));
    let (id, version) = appended(&outcomes, "append after trim").remove(0);
    assert_eq!(version, 4, "the version continues after a trim");
    assert!(
        id > all[2],
        "ids are not reused after a trim: {id:?} vs {:?}",
        all[2]
    );
    assert_eq!(
        stat_of(&store, "trim-all").await.last_version,
        4,
        "stat.last_version after append"
    );
}

/// Trimming a stream that was never written deletes nothing.
pub async fn trim_of_unknown_stream_deletes_nothing<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "known", 2).await;
    let deleted = store
        .trim("unknown", &all[1])
        .await
        .unwrap_or_else(|e| panic!("trim of an unknown stream failed: {e}"));
    assert_eq!(deleted, 0, "trim of an unknown stream");
    assert_eq!(
        count_of(&store, "known").await,
        2,
        "other streams are untouched"
    );
}

// ---------------------------------------------------------------------------------------------
// Tags and annotations
// ---------------------------------------------------------------------------------------------

/// `set_tags` replaces the entry's tags and sets its `updated_at`; other entries are untouched.
pub async fn set_tags_replaces_tags_and_sets_updated_at<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_tags(&store).await {
        return;
    }
    let all = append_all(
        &store,
        "tagged",
        vec![item(1).tag("a").tag("b"), item(2).tag("a").tag("b")],
    )
    .await;
    store
        .set_tags("tagged", &all[0], tags(&["c", "d"]))
        .await
        .unwrap_or_else(|e| panic!("set_tags failed: {e}"));
    let entries = read_all(&store, "tagged").await;
    let changed = entry_by_id(&entries, &all[0]);
    assert_eq!(
        changed.tags,
        tags(&["c", "d"]),
        "tags are replaced, not merged"
    );
    let updated = changed
        .updated_at
        .unwrap_or_else(|| panic!("set_tags must set updated_at: {changed:?}"));
    assert!(
        updated >= changed.created_at,
        "updated_at {updated} is before created_at {}",
        changed.created_at
    );
    let untouched = entry_by_id(&entries, &all[1]);
    assert_eq!(untouched.tags, tags(&["a", "b"]), "other entry's tags");
    assert_eq!(untouched.updated_at, None, "other entry's updated_at");

    store
        .set_tags("tagged", &all[0], BTreeSet::new())
        .await
        .unwrap_or_else(|e| panic!("set_tags to no tags failed: {e}"));
    let entries = read_all(&store, "tagged").await;
    let cleared = entry_by_id(&entries, &all[0]);
    assert!(
        cleared.tags.is_empty(),
        "tags after set_tags(empty): {:?}",
        cleared.tags
    );
    assert!(
        cleared.updated_at >= Some(updated),
        "updated_at must not go back: {:?} after {updated}",
        cleared.updated_at
    );
    assert_eq!(
        ns(&read_with(&store, "tagged", &ReadOptions::new().tag("a")).await),
        [2],
        "the tag filter sees replaced tags"
    );
}

/// `set_annotations` merges: `Some` sets a key, `None` deletes one, other keys are kept, and
/// `updated_at` is set.
pub async fn set_annotations_merges_and_none_deletes<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_annotations(&store).await {
        return;
    }
    let all = append_n(&store, "annotated", 2).await;
    store
        .set_annotations(
            "annotated",
            &all[0],
            changes(&[("x", Some("1")), ("y", Some("2"))]),
        )
        .await
        .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
    let entries = read_all(&store, "annotated").await;
    let first = entry_by_id(&entries, &all[0]);
    assert_eq!(
        first.annotations,
        annotations(&[("x", "1"), ("y", "2")]),
        "annotations after the first change"
    );
    let updated = first
        .updated_at
        .unwrap_or_else(|| panic!("set_annotations must set updated_at: {first:?}"));
    assert!(updated >= first.created_at, "updated_at before created_at");

    store
        .set_annotations(
            "annotated",
            &all[0],
            changes(&[("x", None), ("z", Some("3")), ("never-set", None)]),
        )
        .await
        .unwrap_or_else(|e| panic!("second set_annotations failed: {e}"));
    let entries = read_all(&store, "annotated").await;
    let merged = entry_by_id(&entries, &all[0]);
    assert_eq!(
        merged.annotations,
        annotations(&[("y", "2"), ("z", "3")]),
        "None deletes x, z is added, y is kept"
    );
    assert!(
        merged.updated_at >= Some(updated),
        "updated_at must not go back: {:?} after {updated}",
        merged.updated_at
    );
    let untouched = entry_by_id(&entries, &all[1]);
    assert!(
        untouched.annotations.is_empty(),
        "other entry's annotations"
    );
    assert_eq!(untouched.updated_at, None, "other entry's updated_at");
}

/// `set_tags` on an entry that is not in the stream (another stream's id, a trimmed id, a
/// stream never written) is `EntryNotFound` and changes nothing.
pub async fn set_tags_on_unknown_entry_is_entry_not_found<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_tags(&store).await {
        return;
    }
    let mine = append_n(&store, "nf", 2).await;
    let theirs = append_all(&store, "nf-other", vec![item(9).tag("keep")]).await;
    assert_err!(
        store.set_tags("nf", &theirs[0], tags(&["x"])).await,
        Error::EntryNotFound { .. },
        "set_tags with another stream's id"
    );
    let other = read_all(&store, "nf-other").await;
    assert_eq!(
        other[0].tags,
        tags(&["keep"]),
        "the other stream's entry is unchanged"
    );
    assert_eq!(
        other[0].updated_at, None,
        "the other stream's entry is unchanged"
    );

    store
        .trim("nf", &mine[0])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_err!(
        store.set_tags("nf", &mine[0], tags(&["x"])).await,
        Error::EntryNotFound { .. },
        "set_tags with a trimmed id"
    );
    assert_err!(
        store.set_tags("nf-never", &mine[1], tags(&["x"])).await,
        Error::EntryNotFound { .. },
        "set_tags on a stream that was never written"
    );
}

/// `set_annotations` on an entry that is not in the stream is `EntryNotFound` and changes
/// nothing.
pub async fn set_annotations_on_unknown_entry_is_entry_not_found<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_annotations(&store).await {
        return;
    }
    let mine = append_n(&store, "nf", 2).await;
    let theirs = append_n(&store, "nf-other", 1).await;
    let set = changes(&[("k", Some("v"))]);
    assert_err!(
        store.set_annotations("nf", &theirs[0], set.clone()).await,
        Error::EntryNotFound { .. },
        "set_annotations with another stream's id"
    );
    let other = read_all(&store, "nf-other").await;
    assert!(
        other[0].annotations.is_empty(),
        "the other stream's entry is unchanged"
    );
    assert_eq!(
        other[0].updated_at, None,
        "the other stream's entry is unchanged"
    );

    store
        .trim("nf", &mine[0])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_err!(
        store.set_annotations("nf", &mine[0], set.clone()).await,
        Error::EntryNotFound { .. },
        "set_annotations with a trimmed id"
    );
    assert_err!(
        store.set_annotations("nf-never", &mine[1], set).await,
        Error::EntryNotFound { .. },
        "set_annotations on a stream that was never written"
    );
}

// ---------------------------------------------------------------------------------------------
// Listing streams
// ---------------------------------------------------------------------------------------------

/// `list_streams` is ascending bytewise and continues strictly after its cursor.
pub async fn list_streams_is_ascending_and_strictly_after_cursor<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let names = ["beta", "Alpha", "gamma", "a_b", "alpha", "delta", "a-b"];
    for name in names {
        append_n(&store, name, 1).await;
    }
    let mut sorted = strings(&names);
    sorted.sort();
    assert_eq!(
        list_with(&store, &ListOptions::new()).await,
        sorted,
        "all streams, ascending bytewise"
    );
    let cases = [
        ("alpha", strings(&["beta", "delta", "gamma"])),
        ("b", strings(&["beta", "delta", "gamma"])),
        ("beta", strings(&["delta", "gamma"])),
        (
            "Alpha",
            strings(&["a-b", "a_b", "alpha", "beta", "delta", "gamma"]),
        ),
        ("gamma", Vec::new()),
        ("zzz", Vec::new()),
    ];
    for (after, expected) in cases {
        assert_eq!(
            list_with(&store, &ListOptions::new().after(after)).await,
            expected,
            "streams strictly after {after:?}"
        );
    }
}

/// `list_streams` pages with a limit: 2, 2, 1, then nothing past the end.
pub async fn list_streams_pages_with_limit<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    for name in ["s3", "s1", "s5", "s2", "s4"] {
        append_n(&store, name, 2).await;
    }
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..4 {
        let mut options = ListOptions::new().limit(2);
        options.after = cursor.clone();
        let page = list_with(&store, &options).await;
        cursor = page.last().cloned().or(cursor);
        pages.push(page);
    }
    assert_eq!(
        pages,
        vec![
            strings(&["s1", "s2"]),
            strings(&["s3", "s4"]),
            strings(&["s5"]),
            Vec::new()
        ],
        "pages of 2 over 5 streams"
    );
}

/// A fully trimmed stream is absent from `list_streams`; a partly trimmed one stays.
pub async fn list_streams_omits_fully_trimmed_streams<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "a", 1).await;
    let b = append_n(&store, "b", 2).await;
    let c = append_n(&store, "c", 2).await;
    store
        .trim("b", &b[1])
        .await
        .unwrap_or_else(|e| panic!("trim b failed: {e}"));
    store
        .trim("c", &c[0])
        .await
        .unwrap_or_else(|e| panic!("trim c failed: {e}"));
    assert_eq!(
        list_with(&store, &ListOptions::new()).await,
        strings(&["a", "c"]),
        "b was fully trimmed, c only partly"
    );
}

// ---------------------------------------------------------------------------------------------
// Rename
// ---------------------------------------------------------------------------------------------

/// `rename_stream` moves entries with ids and versions unchanged; the version continues under
/// the new name and the old name is empty.
pub async fn rename_stream_moves_entries_and_version<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_rename(&store).await {
        return;
    }
    append_n(&store, "old", 3).await;
    let before = read_all(&store, "old").await;
    store
        .rename_stream("old", "new")
        .await
        .unwrap_or_else(|e| panic!("rename failed: {e}"));
    let after = read_all(&store, "new").await;
    assert_eq!(after.len(), 3, "entries under the new name: {after:?}");
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        assert_eq!(new.id, old.id, "entry {i}: id unchanged");
        assert_eq!(new.version, old.version, "entry {i}: version unchanged");
        assert_eq!(new.payload, old.payload, "entry {i}: payload unchanged");
        assert_eq!(
            new.created_at, old.created_at,
            "entry {i}: created_at unchanged"
        );
        assert_eq!(new.stream, "new", "entry {i}: stream is the new name");
    }
    assert!(
        read_all(&store, "old").await.is_empty(),
        "old name reads empty"
    );
    assert_eq!(
        stat_of(&store, "old").await,
        StreamStat {
            stream: "old".to_owned(),
            count: 0,
            first_id: None,
            last_id: None,
            last_version: 0,
        },
        "the old name keeps no entries and no version"
    );
    assert_eq!(
        list_with(&store, &ListOptions::new()).await,
        strings(&["new"]),
        "streams after rename"
    );
    let outcomes = store
        .append("new", vec![item(4)], ExpectedVersion::Exact(3))
        .await
        .unwrap_or_else(|e| panic!("Exact(3) on the renamed stream: {e}"));
    assert_eq!(
        appended(&outcomes, "append after rename")[0].1,
        4,
        "version continues"
    );
    let outcomes = store
        .append("old", vec![item(1)], ExpectedVersion::NoStream)
        .await
        .unwrap_or_else(|e| panic!("NoStream on the freed old name: {e}"));
    assert_eq!(
        appended(&outcomes, "append to the old name")[0].1,
        1,
        "old name restarts"
    );
}

/// Renaming a stream that was never written is `StreamNotFound`.
pub async fn rename_of_missing_stream_is_stream_not_found<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_rename(&store).await {
        return;
    }
    assert_err!(
        store.rename_stream("ghost", "target").await,
        Error::StreamNotFound(_),
        "rename of a missing stream"
    );
    assert_eq!(count_of(&store, "target").await, 0, "nothing is created");
}

/// Renaming onto an existing stream is `StreamExists` and moves nothing.
pub async fn rename_onto_existing_stream_is_stream_exists<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    if !supports_rename(&store).await {
        return;
    }
    append_n(&store, "src", 2).await;
    append_n(&store, "dst", 1).await;
    assert_err!(
        store.rename_stream("src", "dst").await,
        Error::StreamExists(_),
        "rename onto an existing stream"
    );
    assert_eq!(count_of(&store, "src").await, 2, "source unchanged");
    assert_eq!(count_of(&store, "dst").await, 1, "target unchanged");
    assert!(
        read_all(&store, "dst")
            .await
            .iter()
            .all(|e| e.stream == "dst"),
        "target entries unchanged"
    );
}

// ---------------------------------------------------------------------------------------------
// Closing
// ---------------------------------------------------------------------------------------------

/// After `close()`, every call fails with `StoreClosed`.
pub async fn closed_store_refuses_every_call<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let caps: Capabilities = store.capabilities();
    let id = append_n(&store, "closing", 2).await.remove(0);
    store
        .close()
        .await
        .unwrap_or_else(|e| panic!("close failed: {e}"));

    assert_err!(
        store
            .append("closing", vec![item(3)], ExpectedVersion::Any)
            .await,
        Error::StoreClosed,
        "append after close"
    );
    assert_err!(
        store.read("closing", &ReadOptions::new()).await,
        Error::StoreClosed,
        "read after close"
    );
    assert_err!(
        store.count("closing").await,
        Error::StoreClosed,
        "count after close"
    );
    assert_err!(
        store.stat("closing").await,
        Error::StoreClosed,
        "stat after close"
    );
    assert_err!(
        store.list_streams(&ListOptions::new()).await,
        Error::StoreClosed,
        "list_streams after close"
    );
    assert_err!(
        store.trim("closing", &id).await,
        Error::StoreClosed,
        "trim after close"
    );
    // An unsupported operation may answer NotSupported before noticing the store is closed.
    let set_tags = store.set_tags("closing", &id, tags(&["x"])).await;
    if caps.tags {
        assert_err!(set_tags, Error::StoreClosed, "set_tags after close");
    } else {
        assert_err!(
            set_tags,
            Error::StoreClosed | Error::NotSupported(_),
            "set_tags after close"
        );
    }
    let set_annotations = store
        .set_annotations("closing", &id, changes(&[("k", Some("v"))]))
        .await;
    if caps.annotations {
        assert_err!(
            set_annotations,
            Error::StoreClosed,
            "set_annotations after close"
        );
    } else {
        assert_err!(
            set_annotations,
            Error::StoreClosed | Error::NotSupported(_),
            "set_annotations after close"
        );
    }
    let rename = store.rename_stream("closing", "closed").await;
    if caps.rename {
        assert_err!(rename, Error::StoreClosed, "rename_stream after close");
    } else {
        assert_err!(
            rename,
            Error::StoreClosed | Error::NotSupported(_),
            "rename_stream after close"
        );
    }
    if let Some(search) = search_of(&store) {
        assert_err!(
            search
                .search(Some("closing"), "n", &ReadOptions::new())
                .await,
            Error::StoreClosed,
            "search after close"
        );
    }
    if let Some(feed) = change_feed_of(&store) {
        assert_err!(
            feed.read_feed(None, 10).await,
            Error::StoreClosed,
            "read_feed after close"
        );
    }
    if let Some(cursors) = cursor_store_of(&store) {
        assert_err!(
            cursors.get_cursor("c").await,
            Error::StoreClosed,
            "get_cursor after close"
        );
        assert_err!(
            cursors.set_cursor("c", 1).await,
            Error::StoreClosed,
            "set_cursor after close"
        );
    }
    if let Some(health) = health_of(&store) {
        assert_err!(
            health.health().await,
            Error::StoreClosed,
            "health after close"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// Of 16 concurrent appenders expecting the same exact version, exactly one wins; the others
/// get `Conflict` and write nothing.
pub async fn concurrent_exact_appends_have_exactly_one_winner<F: StoreFactory>(factory: &F) {
    const TASKS: u64 = 16;
    let store = factory.fresh().await;
    append_n(&store, "race", 3).await;
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append("race", vec![item(100 + i)], ExpectedVersion::Exact(3))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("appender task panicked") {
            Ok(outcomes) => {
                let written = appended(&outcomes, "winning append");
                assert_eq!(written[0].1, 4, "task {i}: the winner writes version 4");
                winners.push(i);
            }
            Err(Error::Conflict {
                expected, actual, ..
            }) => {
                assert_eq!(
                    expected,
                    ExpectedVersion::Exact(3),
                    "task {i}: conflict's expected"
                );
                assert_eq!(actual, 4, "task {i}: conflict's actual version");
            }
            Err(e) => panic!("task {i}: expected Ok or Conflict, got {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {TASKS} appenders wins: {winners:?}"
    );
    assert_eq!(
        count_of(&store, "race").await,
        4,
        "the stream holds n + 1 entries"
    );
    assert_eq!(
        versions(&read_all(&store, "race").await),
        [1, 2, 3, 4],
        "versions"
    );
}

/// 16 concurrent appenders with `Any`, several batches each, produce versions 1..=N without
/// gaps or duplicates, in id order, each batch contiguous.
pub async fn concurrent_any_appends_produce_gapless_versions<F: StoreFactory>(factory: &F) {
    const TASKS: u64 = 16;
    const ROUNDS: u64 = 4;
    const BATCH: u64 = 2;
    let store = factory.fresh().await;
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut written = Vec::new();
                for round in 0..ROUNDS {
                    let first = (task * ROUNDS + round) * BATCH;
                    let batch = items(first..=first + BATCH - 1);
                    let outcomes = store
                        .append("crowd", batch, ExpectedVersion::Any)
                        .await
                        .unwrap_or_else(|e| panic!("task {task} round {round}: {e}"));
                    written.push(appended(&outcomes, "append with Any"));
                }
                written
            })
        })
        .collect();
    let mut from_outcomes = Vec::new();
    for (task, handle) in tasks.into_iter().enumerate() {
        for batch in handle.await.expect("appender task panicked") {
            let batch_versions: Vec<u64> = batch.iter().map(|(_, v)| *v).collect();
            let contiguous: Vec<u64> = (batch_versions[0]..batch_versions[0] + BATCH).collect();
            assert_eq!(
                batch_versions, contiguous,
                "task {task}: one batch's versions are contiguous"
            );
            from_outcomes.extend(batch);
        }
    }
    let total = TASKS * ROUNDS * BATCH;
    let entries = read_all(&store, "crowd").await;
    assert_eq!(entries.len() as u64, total, "every entry is stored");
    assert_eq!(
        versions(&entries),
        (1..=total).collect::<Vec<_>>(),
        "versions in id order are exactly 1..={total}"
    );
    assert_strictly_ascending(&ids(&entries), "ids in read order");
    from_outcomes.sort();
    let from_read: Vec<_> = entries.iter().map(|e| (e.id.clone(), e.version)).collect();
    assert_eq!(
        from_outcomes, from_read,
        "outcomes match the stored entries"
    );
}

/// Concurrent `set_annotations` calls on one entry, each setting its own key, lose no key.
pub async fn concurrent_set_annotations_lose_no_key<F: StoreFactory>(factory: &F) {
    const TASKS: usize = 16;
    let store = factory.fresh().await;
    if !supports_annotations(&store).await {
        return;
    }
    let id = append_n(&store, "busy", 1).await.remove(0);
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            let id = id.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let change = BTreeMap::from([(format!("k{i:02}"), Some(format!("v{i}")))]);
                store.set_annotations("busy", &id, change).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        task.await
            .expect("annotating task panicked")
            .unwrap_or_else(|e| panic!("task {i}: set_annotations failed: {e}"));
    }
    let expected: BTreeMap<String, String> = (0..TASKS)
        .map(|i| (format!("k{i:02}"), format!("v{i}")))
        .collect();
    let entries = read_all(&store, "busy").await;
    assert_eq!(entries[0].annotations, expected, "every task's key is kept");
}

// ---------------------------------------------------------------------------------------------
// Limits, names and input validation
// ---------------------------------------------------------------------------------------------

/// Page sizes 0 and 10 001 are `InvalidArgument` for read, list_streams and search; 1 and
/// 10 000 are accepted.
pub async fn limits_outside_1_to_10000_are_invalid_argument<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "limits", 3).await;
    for limit in [0, MAX_LIMIT + 1] {
        assert_err!(
            store.read("limits", &ReadOptions::new().limit(limit)).await,
            Error::InvalidArgument(_),
            "read with limit {limit}"
        );
        assert_err!(
            store
                .read("limits-missing", &ReadOptions::new().limit(limit))
                .await,
            Error::InvalidArgument(_),
            "read of a missing stream with limit {limit}"
        );
        assert_err!(
            store.list_streams(&ListOptions::new().limit(limit)).await,
            Error::InvalidArgument(_),
            "list_streams with limit {limit}"
        );
        if let Some(search) = search_of(&store) {
            assert_err!(
                search
                    .search(None, "n", &ReadOptions::new().limit(limit))
                    .await,
                Error::InvalidArgument(_),
                "search with limit {limit}"
            );
        }
    }
    let max = read_with(&store, "limits", &ReadOptions::new().limit(MAX_LIMIT)).await;
    assert_eq!(max.len(), 3, "read with limit {MAX_LIMIT}");
    let one = read_with(&store, "limits", &ReadOptions::new().limit(1)).await;
    assert_eq!(ns(&one), [1], "read with limit 1");
    assert_eq!(
        list_with(&store, &ListOptions::new().limit(MAX_LIMIT)).await,
        strings(&["limits"]),
        "list_streams with limit {MAX_LIMIT}"
    );
}

/// Table names outside `^[A-Za-z_][A-Za-z0-9_]{0,62}$` are `InvalidName`.
pub async fn invalid_table_names_are_rejected<F: StoreFactory>(factory: &F) {
    let too_long = "x".repeat(MAX_TABLE_LEN + 1);
    for name in [
        "",
        "1abc",
        "a-b",
        "a b",
        "a.b",
        "a;drop table x",
        "a\0b",
        "é",
        "tablé",
        too_long.as_str(),
    ] {
        assert_err!(
            factory.open(name).await,
            Error::InvalidName { kind: "table", .. },
            "opening table {name:?}"
        );
    }
}

/// A table name of the maximum length (63 bytes, mixed case) is accepted and usable.
pub async fn table_name_of_63_characters_is_accepted<F: StoreFactory>(factory: &F) {
    let mut name = fresh_table().to_uppercase();
    while name.len() < MAX_TABLE_LEN {
        name.push('x');
    }
    let store = factory
        .open(&name)
        .await
        .unwrap_or_else(|e| panic!("opening a store on 63-byte table {name:?} failed: {e}"));
    append_n(&store, "long-table", 2).await;
    assert_eq!(
        count_of(&store, "long-table").await,
        2,
        "count in table {name:?}"
    );
    assert_eq!(
        ns(&read_all(&store, "long-table").await),
        [1, 2],
        "entries in table {name:?}"
    );
}

/// Stream ids that are empty, contain NUL or exceed 256 bytes are `InvalidName`.
pub async fn invalid_stream_names_are_rejected<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let too_long = "s".repeat(MAX_STREAM_LEN + 1);
    // 129 characters but 258 bytes: the limit is in bytes.
    let too_many_bytes = "é".repeat(129);
    for name in ["", "a\0b", too_long.as_str(), too_many_bytes.as_str()] {
        assert_err!(
            store
                .append(name, vec![item(1)], ExpectedVersion::Any)
                .await,
            Error::InvalidName { kind: "stream", .. },
            "append to stream {name:?}"
        );
        assert_err!(
            store.read(name, &ReadOptions::new()).await,
            Error::InvalidName { kind: "stream", .. },
            "read of stream {name:?}"
        );
        assert_err!(
            store.count(name).await,
            Error::InvalidName { kind: "stream", .. },
            "count of stream {name:?}"
        );
        assert_err!(
            store.stat(name).await,
            Error::InvalidName { kind: "stream", .. },
            "stat of stream {name:?}"
        );
    }
    assert!(
        list_with(&store, &ListOptions::new()).await.is_empty(),
        "rejected appends create no stream"
    );
}

/// Stream ids of 256 bytes, with unicode, or with SQL metacharacters are stored and read back.
pub async fn long_unicode_and_sql_metacharacter_stream_ids_work<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let ascii = "s".repeat(MAX_STREAM_LEN);
    let unicode = "é".repeat(MAX_STREAM_LEN / 2);
    let names = [
        ascii.as_str(),
        unicode.as_str(),
        "'; DROP TABLE x; --",
        "ストリーム/ü \"dq\" 'sq' %_\\ 🚀",
        "a\tb\nc",
    ];
    for name in names {
        store
            .append(name, vec![item(1), item(2)], ExpectedVersion::NoStream)
            .await
            .unwrap_or_else(|e| panic!("append to stream {name:?} failed: {e}"));
    }
    for name in names {
        let entries = read_all(&store, name).await;
        assert_eq!(ns(&entries), [1, 2], "entries of stream {name:?}");
        assert!(
            entries.iter().all(|e| e.stream == name),
            "entries of {name:?} carry their stream id exactly: {entries:?}"
        );
        assert_eq!(count_of(&store, name).await, 2, "count of {name:?}");
        assert_eq!(
            stat_of(&store, name).await.last_version,
            2,
            "stat of {name:?}"
        );
    }
    let mut sorted = strings(&names);
    sorted.sort();
    assert_eq!(
        list_with(&store, &ListOptions::new()).await,
        sorted,
        "list_streams returns the ids exactly, ascending bytewise"
    );
}

/// Schema version 0 and empty dedup or order keys are `InvalidArgument`; nothing of the batch
/// is written.
pub async fn invalid_inputs_are_rejected_and_nothing_written<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let cases = [
        ("schema version 0", vec![item(1).schema_version(0)]),
        ("empty order key", vec![item(1).order_key("")]),
        (
            "a valid input followed by schema version 0",
            vec![item(1), item(2).schema_version(0)],
        ),
    ];
    for (what, batch) in cases {
        assert_err!(
            store.append("invalid", batch, ExpectedVersion::Any).await,
            Error::InvalidArgument(_),
            "append with {what}"
        );
    }
    let empty_key = store
        .append(
            "invalid",
            vec![item(1), item(2).dedup_key("")],
            ExpectedVersion::Any,
        )
        .await;
    if store.capabilities().dedup {
        assert_err!(
            empty_key,
            Error::InvalidArgument(_),
            "append with an empty dedup key"
        );
    } else {
        assert_err!(
            empty_key,
            Error::InvalidArgument(_) | Error::NotSupported(_),
            "append with an empty dedup key"
        );
    }
    assert_eq!(count_of(&store, "invalid").await, 0, "nothing is written");
    assert_eq!(
        stat_of(&store, "invalid").await.last_version,
        0,
        "the version does not move"
    );
}

// ---------------------------------------------------------------------------------------------
// Typed streams: upcasting and read-only handles
// ---------------------------------------------------------------------------------------------

/// Payload of schema version 3 in the upcasting tests (v1 called `name` `title`; v2 had no
/// `currency`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PriceV3 {
    name: String,
    cents: u64,
    currency: String,
}

fn price(name: &str, cents: u64, currency: &str) -> PriceV3 {
    PriceV3 {
        name: name.to_owned(),
        cents,
        currency: currency.to_owned(),
    }
}

/// A stream at schema version 3 reads v1 entries through two upcasting steps (a `FieldMapper`
/// 1→2 and a closure 2→3) and v2 entries through one; stored payloads are left as written.
pub async fn stream_upcasts_old_entries_through_two_steps<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "prices",
        vec![
            AppendInput::new(json!({"title": "apple", "cents": u64::MAX})),
            AppendInput::new(json!({"name": "pear", "cents": 90})).schema_version(2),
        ],
    )
    .await;
    let stream = Stream::<F::Store, PriceV3>::new(store.clone(), "prices")
        .expect("valid stream id")
        .schema_version(3)
        .expect("valid schema version")
        .upcaster(FieldMapper::new(1).rename("title", "name"))
        .upcaster(upcaster(2, |mut v| {
            v["currency"] = json!("EUR");
            Ok(v)
        }));
    stream
        .append(vec![price("plum", 50, "USD")], ExpectedVersion::Exact(2))
        .await
        .unwrap_or_else(|e| panic!("typed append failed: {e}"));
    let entries = stream
        .read(&ReadOptions::new())
        .await
        .unwrap_or_else(|e| panic!("typed read failed: {e}"));
    let payloads: Vec<_> = entries.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(
        payloads,
        [
            price("apple", u64::MAX, "EUR"),
            price("pear", 90, "EUR"),
            price("plum", 50, "USD"),
        ],
        "payloads upcast to schema version 3"
    );
    let schema_versions: Vec<u32> = entries.iter().map(|e| e.schema_version).collect();
    assert_eq!(
        schema_versions,
        [1, 2, 3],
        "entries report the schema version written"
    );
    let raw = read_all(&store, "prices").await;
    assert_eq!(
        raw[0].payload,
        json!({"title": "apple", "cents": u64::MAX}),
        "upcasting never rewrites the stored payload"
    );
}

/// Reading an entry older than the stream's schema version without an upcaster for one step is
/// `NoUpcaster { from, to }` naming the missing step.
pub async fn missing_upcaster_is_no_upcaster_error<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "old-prices",
        vec![AppendInput::new(json!({"title": "apple", "cents": 1}))],
    )
    .await;
    let without_second = Stream::<F::Store, PriceV3>::new(store.clone(), "old-prices")
        .expect("valid stream id")
        .schema_version(3)
        .expect("valid schema version")
        .upcaster(FieldMapper::new(1).rename("title", "name"));
    assert_err!(
        without_second.read(&ReadOptions::new()).await,
        Error::NoUpcaster { from: 2, to: 3 },
        "reading a v1 entry at v3 without a 2→3 step"
    );
    let without_first = Stream::<F::Store, PriceV3>::new(store.clone(), "old-prices")
        .expect("valid stream id")
        .schema_version(3)
        .expect("valid schema version")
        .upcaster(upcaster(2, Ok));
    assert_err!(
        without_first.read(&ReadOptions::new()).await,
        Error::NoUpcaster { from: 1, to: 2 },
        "reading a v1 entry at v3 without a 1→2 step"
    );
}

/// A read-only stream refuses every write with `ReadOnly` and reads normally.
pub async fn read_only_stream_refuses_writes_and_reads<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "ro", 2).await;
    let read_only = Stream::<F::Store, Value>::new(store.clone(), "ro")
        .expect("valid stream id")
        .read_only();
    assert_err!(
        read_only
            .append(vec![json!({"n": 3})], ExpectedVersion::Any)
            .await,
        Error::ReadOnly(_),
        "append through a read-only stream"
    );
    assert_err!(
        read_only
            .append_inputs(vec![item(3)], ExpectedVersion::Any)
            .await,
        Error::ReadOnly(_),
        "append_inputs through a read-only stream"
    );
    assert_err!(
        read_only.set_tags(&all[0], tags(&["x"])).await,
        Error::ReadOnly(_),
        "set_tags through a read-only stream"
    );
    assert_err!(
        read_only
            .set_annotations(&all[0], changes(&[("k", Some("v"))]))
            .await,
        Error::ReadOnly(_),
        "set_annotations through a read-only stream"
    );
    assert_err!(
        read_only.trim(&all[1]).await,
        Error::ReadOnly(_),
        "trim through a read-only stream"
    );
    let entries = read_only
        .read(&ReadOptions::new())
        .await
        .unwrap_or_else(|e| panic!("read through a read-only stream failed: {e}"));
    let payloads: Vec<_> = entries.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(
        payloads,
        [json!({"n": 1}), json!({"n": 2})],
        "read-only read"
    );
    assert_eq!(read_only.count().await.ok(), Some(2), "read-only count");
    assert_eq!(
        read_only.stat().await.ok().map(|s| s.last_version),
        Some(2),
        "read-only stat"
    );
    let stored = read_all(&store, "ro").await;
    assert!(
        stored
            .iter()
            .all(|e| e.tags.is_empty() && e.annotations.is_empty()),
        "refused writes change nothing: {stored:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Change feed
// ---------------------------------------------------------------------------------------------

/// Every mutation type writes one feed record, in order, with ascending positions and the
/// stored entries or changes.
pub async fn change_feed_records_every_mutation_in_order<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let Some(feed) = change_feed_of(&store) else {
        return;
    };
    let caps = store.capabilities();
    assert!(
        read_feed_from(feed, None, 100).await.is_empty(),
        "the change feed of a fresh store is empty"
    );
    let mut expected: Vec<(String, Mutation<_>)> = Vec::new();

    let all = append_n(&store, "feed", 3).await;
    let entries = read_all(&store, "feed").await;
    expected.push(("feed".into(), Mutation::Append { entries }));
    append_all(&store, "feed-other", vec![item(7).tag("t")]).await;
    let entries = read_all(&store, "feed-other").await;
    expected.push(("feed-other".into(), Mutation::Append { entries }));

    if caps.tags {
        store
            .set_tags("feed", &all[0], tags(&["x", "y"]))
            .await
            .unwrap_or_else(|e| panic!("set_tags failed: {e}"));
        let entries = read_all(&store, "feed").await;
        let updated_at = entry_by_id(&entries, &all[0])
            .updated_at
            .expect("set_tags sets updated_at");
        expected.push((
            "feed".into(),
            Mutation::SetTags {
                id: all[0].clone(),
                tags: tags(&["x", "y"]),
                updated_at,
            },
        ));
    }
    if caps.annotations {
        let change = changes(&[("a", Some("1")), ("gone", None)]);
        store
            .set_annotations("feed", &all[1], change.clone())
            .await
            .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
        let entries = read_all(&store, "feed").await;
        let updated_at = entry_by_id(&entries, &all[1])
            .updated_at
            .expect("set_annotations sets updated_at");
        expected.push((
            "feed".into(),
            Mutation::SetAnnotations {
                id: all[1].clone(),
                changes: change,
                updated_at,
            },
        ));
    }
    let deleted = store
        .trim("feed", &all[1])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_eq!(deleted, 2, "trim deletes 2 entries");
    expected.push((
        "feed".into(),
        Mutation::Trim {
            up_to: all[1].clone(),
            deleted: 2,
        },
    ));
    if caps.rename {
        store
            .rename_stream("feed", "feed-renamed")
            .await
            .unwrap_or_else(|e| panic!("rename failed: {e}"));
        expected.push((
            "feed".into(),
            Mutation::Rename {
                to: "feed-renamed".into(),
            },
        ));
    }

    let records = read_feed_from(feed, None, 100).await;
    let expected_kinds: Vec<_> = expected.iter().map(|(_, m)| m.kind()).collect();
    assert_eq!(kinds(&records), expected_kinds, "kinds of the feed records");
    assert_strictly_ascending(&positions(&records), "feed positions");
    for (i, (record, (stream, mutation))) in records.iter().zip(&expected).enumerate() {
        assert_eq!(
            &record.stream,
            stream,
            "record {i} ({}): stream",
            mutation.kind()
        );
        assert_eq!(
            &record.mutation,
            mutation,
            "record {i} ({}): mutation",
            mutation.kind()
        );
    }
}

/// `read_feed` after a position continues with the records past it, and respects its limit.
pub async fn change_feed_read_after_position_continues<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let Some(feed) = change_feed_of(&store) else {
        return;
    };
    for n in 1..=4 {
        append_all(&store, "feed-pages", vec![item(n)]).await;
    }
    let all = read_feed_from(feed, None, 100).await;
    assert_eq!(all.len(), 4, "one record per append: {all:?}");
    assert_eq!(
        read_feed_from(feed, Some(all[0].position), 100).await,
        all[1..],
        "records after the first position"
    );
    assert_eq!(
        read_feed_from(feed, Some(all[1].position), 1).await,
        all[2..3],
        "one record after the second position"
    );
    assert_eq!(
        read_feed_from(feed, None, 2).await,
        all[..2],
        "the first two records"
    );
    let last = all[3].position;
    assert!(
        read_feed_from(feed, Some(last), 100).await.is_empty(),
        "nothing after the last position"
    );
    append_all(&store, "feed-pages", vec![item(5)]).await;
    let next = read_feed_from(feed, Some(last), 100).await;
    assert_eq!(
        next.len(),
        1,
        "one new record after the last position: {next:?}"
    );
    assert!(next[0].position > last, "new positions are greater");
    assert!(
        matches!(&next[0].mutation, Mutation::Append { entries } if ns(entries) == [5]),
        "the new record is the last append: {next:?}"
    );
}

/// An append made only of duplicates writes no feed record; a partly duplicate one records only
/// the new entries.
pub async fn duplicate_only_append_writes_no_feed_record<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let Some(feed) = change_feed_of(&store) else {
        return;
    };
    if !supports_dedup(&store).await {
        return;
    }
    let batch = vec![item(1).dedup_key("k1"), item(2).dedup_key("k2")];
    append_all(&store, "feed-dedup", batch.clone()).await;
    let before = read_feed_from(feed, None, 100).await;
    let last = before
        .last()
        .expect("the first append is recorded")
        .position;
    store
        .append("feed-dedup", batch, ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("duplicate retry failed: {e}"));
    assert!(
        read_feed_from(feed, Some(last), 100).await.is_empty(),
        "a duplicate-only append writes no feed record"
    );
    store
        .append(
            "feed-dedup",
            vec![item(1).dedup_key("k1"), item(3).dedup_key("k3")],
            ExpectedVersion::Any,
        )
        .await
        .unwrap_or_else(|e| panic!("partly duplicate append failed: {e}"));
    let after = read_feed_from(feed, Some(last), 100).await;
    assert_eq!(
        after.len(),
        1,
        "a partly duplicate append writes one record: {after:?}"
    );
    assert!(
        matches!(&after[0].mutation, Mutation::Append { entries } if ns(entries) == [3]),
        "the record holds only the new entry: {after:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

/// `Stream::subscribe(0, …)` delivers the existing entries, then entries appended while it
/// runs, in order, with nothing lost or repeated.
pub async fn subscribe_delivers_existing_then_live_entries<F: StoreFactory>(factory: &F) {
    const LIVE: u64 = 12;
    let store = factory.fresh().await;
    append_n(&store, "sub", 3).await;
    let stream = Stream::<F::Store, Value>::new(store.clone(), "sub").expect("valid stream id");
    let mut subscription = stream.subscribe(0, fast_subscription());
    let existing = next_n(&mut subscription, 3, "existing entries").await;
    assert_eq!(versions(&existing), [1, 2, 3], "existing entries' versions");
    assert_eq!(ns(&existing), [1, 2, 3], "existing entries' payloads");

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 4..4 + LIVE {
                append_all(&store, "sub", vec![item(n)]).await;
                append_n(&store, "sub-other", 1).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let live = next_n(&mut subscription, LIVE as usize, "live entries").await;
    writer.await.expect("writer task panicked");
    assert_eq!(
        versions(&live),
        (4..4 + LIVE).collect::<Vec<_>>(),
        "live entries' versions"
    );
    assert_eq!(
        ns(&live),
        (4..4 + LIVE).collect::<Vec<_>>(),
        "live entries' payloads"
    );
    assert!(
        live.iter().all(|e| e.stream == "sub"),
        "only this stream's entries"
    );
    assert_quiet(&mut subscription, "after the last live entry").await;
}

/// `Stream::subscribe(v, …)` starts after version `v`, then continues live.
pub async fn subscribe_from_middle_version_skips_earlier_entries<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "sub-mid", 5).await;
    let stream = Stream::<F::Store, Value>::new(store.clone(), "sub-mid").expect("valid stream id");
    let mut subscription = stream.subscribe(2, fast_subscription());
    let existing = next_n(&mut subscription, 3, "entries after version 2").await;
    assert_eq!(versions(&existing), [3, 4, 5], "entries after version 2");
    append_all(&store, "sub-mid", vec![item(6)]).await;
    let live = next_n(&mut subscription, 1, "live entry").await;
    assert_eq!(versions(&live), [6], "live entry's version");
    assert_eq!(ns(&live), [6], "live entry's payload");
    assert_quiet(&mut subscription, "after the live entry").await;
}

/// `subscribe_feed` delivers existing feed records, then live ones, in order, and can resume
/// from a position; without a change feed it yields `NotSupported`.
pub async fn subscribe_feed_delivers_existing_then_live_records<F: StoreFactory>(factory: &F) {
    const LIVE: u64 = 10;
    let store = factory.fresh().await;
    if change_feed_of(&store).is_none() {
        let mut subscription = subscribe_feed(store.clone(), None, fast_subscription());
        match tokio::time::timeout(ITEM_TIMEOUT, subscription.next()).await {
            Ok(Some(Err(Error::NotSupported(_)))) => {}
            other => {
                panic!("subscribe_feed without a change feed: expected NotSupported, got {other:?}")
            }
        }
        return;
    }
    append_n(&store, "sub-feed", 2).await;
    let mut subscription = subscribe_feed(store.clone(), None, fast_subscription());
    let existing = next_n(&mut subscription, 1, "existing feed record").await;
    assert!(
        matches!(&existing[0].mutation, Mutation::Append { entries } if ns(entries) == [1, 2]),
        "the existing record is the first append: {existing:?}"
    );
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 3..3 + LIVE {
                append_all(&store, "sub-feed", vec![item(n)]).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let live = next_n(&mut subscription, LIVE as usize, "live feed records").await;
    writer.await.expect("writer task panicked");
    let appended_ns: Vec<Vec<u64>> = live
        .iter()
        .map(|r| match &r.mutation {
            Mutation::Append { entries } => ns(entries),
            other => panic!("expected only append records, got {other:?}"),
        })
        .collect();
    let expected: Vec<Vec<u64>> = (3..3 + LIVE).map(|n| vec![n]).collect();
    assert_eq!(appended_ns, expected, "live records in append order");
    let mut all_positions = positions(&existing);
    all_positions.extend(positions(&live));
    assert_strictly_ascending(&all_positions, "positions delivered by the subscription");
    assert_quiet(&mut subscription, "after the last live record").await;

    let middle = live[4].position;
    let mut resumed = subscribe_feed(store.clone(), Some(middle), fast_subscription());
    let rest = next_n(&mut resumed, live.len() - 5, "records after a position").await;
    assert_eq!(
        rest,
        live[5..],
        "resumed subscription delivers the records after {middle}"
    );
    assert_quiet(&mut resumed, "after the resumed records").await;
}

// ---------------------------------------------------------------------------------------------
// Payloads and large batches
// ---------------------------------------------------------------------------------------------

/// Unicode, NUL inside strings, integers beyond 2^53, nested values, floats and non-object
/// payloads round-trip exactly.
pub async fn payloads_round_trip_exactly<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let payloads = vec![
        json!({
            "text": "ünïcødé ✓ 日本語 🚀 \u{10FFFF}",
            "nul": "a\u{0000}b",
            "max": u64::MAX,
            "min": i64::MIN,
            "above_2_53": 9_007_199_254_740_993u64,
            "nested": {"a": [1, {"b": [true, false, null]}], "empty": {}, "list": []},
            "floats": [1.5, -0.25, 0.1, 6.02e23, 1e-7],
            "quotes": "it's \"quoted\" \\ back\nslash",
        }),
        json!("just a string"),
        json!([1, "two", 3.5, null]),
        json!(42),
        json!(-1),
        json!(true),
        json!(null),
        json!({}),
        json!(""),
    ];
    let inputs = payloads.iter().cloned().map(AppendInput::new).collect();
    append_all(&store, "payloads", inputs).await;
    let entries = read_all(&store, "payloads").await;
    assert_eq!(entries.len(), payloads.len(), "every payload is stored");
    for (i, (entry, payload)) in entries.iter().zip(&payloads).enumerate() {
        assert_eq!(&entry.payload, payload, "payload {i} round-trips exactly");
    }
}

/// A 1 MiB string payload round-trips exactly.
pub async fn one_mib_payload_round_trips<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let blob: String = (0..1 << 20)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let payload = json!({ "blob": blob });
    append_all(&store, "big", vec![AppendInput::new(payload.clone())]).await;
    let entries = read_all(&store, "big").await;
    assert_eq!(entries.len(), 1, "one entry");
    assert!(
        entries[0].payload == payload,
        "the 1 MiB payload must round-trip exactly (got {} bytes of JSON)",
        entries[0].payload.to_string().len()
    );
}

/// A batch of 10 000 entries appends with versions 1..=10 000 and counts 10 000.
pub async fn ten_thousand_entry_batch_appends_and_counts<F: StoreFactory>(factory: &F) {
    const N: u64 = 10_000;
    let store = factory.fresh().await;
    let outcomes = store
        .append("bulk", items(1..=N), ExpectedVersion::NoStream)
        .await
        .unwrap_or_else(|e| panic!("append of {N} entries failed: {e}"));
    let written = appended(&outcomes, "bulk append");
    assert_eq!(written.len() as u64, N, "one outcome per input");
    assert!(
        written.iter().map(|(_, v)| *v).eq(1..=N),
        "versions of the bulk append are 1..={N}"
    );
    assert_eq!(
        count_of(&store, "bulk").await,
        N,
        "count after the bulk append"
    );
    let entries = read_all(&store, "bulk").await;
    assert_eq!(
        entries.len() as u64,
        N,
        "read of {N} entries with limit {MAX_LIMIT}"
    );
    assert!(ns(&entries).into_iter().eq(1..=N), "payloads in order");
    assert_eq!(
        stat_of(&store, "bulk").await.last_version,
        N,
        "stat after the bulk append"
    );
}

// ---------------------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------------------

/// Search finds a case-insensitive substring of the payload, in one stream or in all.
pub async fn search_finds_case_insensitive_substring<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let Some(search) = search_of(&store) else {
        return;
    };
    let a = append_all(
        &store,
        "search-a",
        vec![
            AppendInput::new(json!({"msg": "Hello World"})),
            AppendInput::new(json!({"msg": "goodbye"})),
        ],
    )
    .await;
    let b = append_all(
        &store,
        "search-b",
        vec![AppendInput::new(json!({"msg": "HELLO there"}))],
    )
    .await;
    let run = |stream: Option<&'static str>, text: &'static str| async move {
        search
            .search(stream, text, &ReadOptions::new())
            .await
            .unwrap_or_else(|e| panic!("search {text:?} in {stream:?} failed: {e}"))
    };
    assert_eq!(
        ids(&run(Some("search-a"), "hello").await),
        [a[0].clone()],
        "hello in a"
    );
    assert_eq!(
        ids(&run(Some("search-a"), "WORLD").await),
        [a[0].clone()],
        "WORLD in a"
    );
    assert_eq!(
        ids(&run(Some("search-a"), "lo wo").await),
        [a[0].clone()],
        "lo wo in a"
    );
    assert_eq!(
        ids(&run(Some("search-b"), "hello").await),
        [b[0].clone()],
        "hello in b"
    );
    assert_eq!(
        ids(&run(None, "hElLo").await),
        [a[0].clone(), b[0].clone()],
        "hElLo in every stream, ascending by id"
    );
    assert!(run(None, "absent").await.is_empty(), "a word in no payload");
    assert!(
        run(Some("search-c"), "hello").await.is_empty(),
        "a missing stream"
    );
}

/// Search applies filters, cursor, direction and limit like `read`.
pub async fn search_respects_filters_and_limit<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let Some(search) = search_of(&store) else {
        return;
    };
    let inputs = (1..=6u64)
        .map(|n| {
            let text = if n == 6 { "pear" } else { "apple" };
            AppendInput::new(json!({"n": n, "fruit": text})).order_key(if n % 2 == 1 {
                "odd"
            } else {
                "even"
            })
        })
        .collect();
    let all = append_all(&store, "search-f", inputs).await;
    append_all(
        &store,
        "search-g",
        vec![AppendInput::new(json!({"n": 7, "fruit": "apple"})).order_key("odd")],
    )
    .await;
    let cases = [
        (Some("search-f"), ReadOptions::new(), vec![1, 2, 3, 4, 5]),
        (
            Some("search-f"),
            ReadOptions::new().order_key("odd"),
            vec![1, 3, 5],
        ),
        (None, ReadOptions::new().order_key("odd"), vec![1, 3, 5, 7]),
        (Some("search-f"), ReadOptions::new().limit(2), vec![1, 2]),
        (None, ReadOptions::new().limit(2), vec![1, 2]),
        (
            Some("search-f"),
            ReadOptions::new().after(all[1].clone()).limit(2),
            vec![3, 4],
        ),
        (
            Some("search-f"),
            ReadOptions::new().descending().limit(2),
            vec![5, 4],
        ),
        (None, ReadOptions::new().descending().limit(2), vec![7, 5]),
        (
            Some("search-f"),
            ReadOptions::new().order_key("none"),
            vec![],
        ),
    ];
    for (stream, options, expected) in cases {
        let found = search
            .search(stream, "APPLE", &options)
            .await
            .unwrap_or_else(|e| panic!("search in {stream:?} with {options:?} failed: {e}"));
        assert_eq!(
            ns(&found),
            expected,
            "search APPLE in {stream:?} with {options:?}"
        );
    }
}

/// `%` and `_` in a search text are literal characters, not wildcards.
pub async fn search_treats_percent_and_underscore_literally<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let Some(search) = search_of(&store) else {
        return;
    };
    let texts = ["100% sure", "1000 sure", "snake_case", "snakeXcase"];
    let inputs = texts
        .iter()
        .map(|t| AppendInput::new(json!({ "msg": t })))
        .collect();
    append_all(&store, "search-w", inputs).await;
    let cases = [
        ("100%", vec!["100% sure"]),
        ("%", vec!["100% sure"]),
        ("e_c", vec!["snake_case"]),
        ("_", vec!["snake_case"]),
        ("%_%", vec![]),
    ];
    for (text, expected) in cases {
        let found = search
            .search(Some("search-w"), text, &ReadOptions::new())
            .await
            .unwrap_or_else(|e| panic!("search {text:?} failed: {e}"));
        let msgs: Vec<&str> = found
            .iter()
            .map(|e| e.payload["msg"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(msgs, expected, "search {text:?} must match literally");
    }
}

// ---------------------------------------------------------------------------------------------
// Cursor store and health
// ---------------------------------------------------------------------------------------------

/// A missing cursor is `None`; a saved one reads back; a lower value never moves it back.
pub async fn cursor_store_saves_and_never_moves_back<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let Some(cursors) = cursor_store_of(&store) else {
        return;
    };
    // Unique names, in case a backend keeps cursors outside the store's own table.
    let name = format!("cursor_{}", fresh_table());
    let other = format!("other_{}", fresh_table());
    let get = |name: String| async move {
        cursors
            .get_cursor(&name)
            .await
            .unwrap_or_else(|e| panic!("get_cursor({name:?}) failed: {e}"))
    };
    let set = |name: String, position: u64| async move {
        cursors
            .set_cursor(&name, position)
            .await
            .unwrap_or_else(|e| panic!("set_cursor({name:?}, {position}) failed: {e}"))
    };
    assert_eq!(get(name.clone()).await, None, "a cursor never set");
    set(name.clone(), 5).await;
    assert_eq!(get(name.clone()).await, Some(5), "after set 5");
    set(name.clone(), 3).await;
    assert_eq!(
        get(name.clone()).await,
        Some(5),
        "a lower value does not move it back"
    );
    set(name.clone(), 5).await;
    assert_eq!(get(name.clone()).await, Some(5), "the same value keeps it");
    set(name.clone(), i64::MAX as u64).await;
    assert_eq!(
        get(name.clone()).await,
        Some(i64::MAX as u64),
        "a position of 2^63 - 1"
    );
    assert_eq!(
        get(other.clone()).await,
        None,
        "cursors are independent by name"
    );
    set(other.clone(), 1).await;
    assert_eq!(get(other).await, Some(1), "the other cursor");
    assert_eq!(
        get(name).await,
        Some(i64::MAX as u64),
        "the first cursor is unchanged"
    );
}

/// The health check answers `Ok` on an open store.
pub async fn health_is_ok_on_open_store<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let Some(health) = health_of(&store) else {
        return;
    };
    health
        .health()
        .await
        .unwrap_or_else(|e| panic!("health on an open store failed: {e}"));
}

// ---------------------------------------------------------------------------------------------
// Gap safety of the change feed
// ---------------------------------------------------------------------------------------------

/// Writer A appends inside an open transaction; writer B appends later. While A is open a reader
/// must not deliver anything past A's position (B may not even have finished); once A commits,
/// the reader delivers A's record, then B's, each exactly once, and so does a live subscriber.
pub async fn feed_is_gap_safe_when_a_later_writer_finishes_first<F>(factory: &F)
where
    F: super::TransactionalFactory,
{
    let store = Arc::new(factory.fresh().await);
    let Some(feed) = change_feed_of(store.as_ref()) else {
        return; // no change feed (capabilities and accessor agree, checked above)
    };
    append_all(store.as_ref(), "before", vec![item(0)]).await;
    let start = positions(&read_feed_from(feed, None, 100).await)
        .last()
        .copied()
        .expect("the baseline append has a record");
    let mut live = subscribe_feed(store.clone(), Some(start), fast_subscription());

    let writer_a = factory.open_append(&*store, "writer-a", item(1)).await;
    let writer_b = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append("writer-b", vec![item(2)], ExpectedVersion::Any)
                .await
        })
    };
    // Give B every chance to commit first, then poll as a tailing reader would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = read_feed_from(feed, Some(start), 100).await;
    assert!(
        early.is_empty(),
        "while writer A's transaction is open the feed delivered {:?} past position {start}",
        early
            .iter()
            .map(|r| (&r.stream, r.position))
            .collect::<Vec<_>>()
    );
    assert_quiet(&mut live, "subscription while A is open").await;

    writer_a.commit().await;
    tokio::time::timeout(Duration::from_secs(30), writer_b)
        .await
        .expect("writer B finishes once A committed")
        .expect("writer B's task ran")
        .expect("writer B's append succeeded");

    let records = read_feed_from(feed, Some(start), 100).await;
    let streams: Vec<&str> = records.iter().map(|r| r.stream.as_str()).collect();
    assert_eq!(
        streams,
        ["writer-a", "writer-b"],
        "A's record first, then B's, once each"
    );
    assert_strictly_ascending(&positions(&records), "feed positions");
    let delivered: Vec<FeedRecord<_>> = next_n(&mut live, 2, "live subscription").await;
    let live_streams: Vec<&str> = delivered.iter().map(|r| r.stream.as_str()).collect();
    assert_eq!(live_streams, ["writer-a", "writer-b"], "subscriber order");
    assert_quiet(&mut live, "subscription after both").await;
}

/// Eight writers append concurrently for a while; a feed subscriber started before them sees
/// every committed record exactly once, in ascending position order.
pub async fn feed_subscriber_sees_every_record_once_under_concurrent_writers<F: StoreFactory>(
    factory: &F,
) {
    let store = Arc::new(factory.fresh().await);
    if change_feed_of(store.as_ref()).is_none() {
        return; // no change feed (capabilities and accessor agree, checked above)
    }
    let mut live = subscribe_feed(store.clone(), None, fast_subscription());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut written = Vec::new();
                let mut n = 0u64;
                while tokio::time::Instant::now() < deadline {
                    let stream = format!("load-{w}-{}", n % 3);
                    let batch = vec![item(w * 1_000_000 + n), item(w * 1_000_000 + n + 1)];
                    let outcome = store
                        .append(&stream, batch, ExpectedVersion::Any)
                        .await
                        .expect("concurrent append succeeds");
                    for o in outcome {
                        if let AppendOutcome::Appended { version, .. } = o {
                            written.push((stream.clone(), version));
                        }
                    }
                    n += 2;
                }
                written
            })
        })
        .collect();
    let mut expected = BTreeSet::new();
    let mut appends = 0usize;
    for writer in writers {
        let written = writer.await.expect("writer task ran");
        appends += written.len() / 2;
        expected.extend(written);
    }
    assert!(
        appends >= 8,
        "each writer appended at least once ({appends} appends)"
    );

    let records: Vec<FeedRecord<_>> = next_n(&mut live, appends, "subscriber under load").await;
    assert_strictly_ascending(&positions(&records), "delivered positions");
    let mut seen = BTreeSet::new();
    for record in &records {
        let Mutation::Append { entries } = &record.mutation else {
            panic!("only appends happened, got {:?}", record.mutation.kind());
        };
        for e in entries {
            assert!(
                seen.insert((e.stream.clone(), e.version)),
                "entry {}@{} delivered twice",
                e.stream,
                e.version
            );
        }
    }
    assert_eq!(
        seen, expected,
        "the subscriber saw exactly the committed entries"
    );
    assert_quiet(&mut live, "subscriber after the load").await;
}
