//! The typed layer, which is core code whatever the store: upcasting, read-only handles and
//! typed subscriptions, against the reference `MemoryStore`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ledger_core::backend::{
    Backend, ChangeFeedBackend, CursorBackend, HealthBackend, ReplicaBackend, SearchBackend,
};
use ledger_core::{
    AppendInput, AppendResult, BackendErrorKind, Capabilities, Entry, EntryId, Error,
    ExpectedVersion, FieldMapper, ListOptions, MemoryStore, ReadOptions, Result, Store, Stream,
    StreamStat, SubscribeOptions, upcaster,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Asserts that `$result` is an `Err` matching `$pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat, $($context:tt)+) => {
        match $result {
            Ok(_) => panic!("{}: expected Err({}), got Ok", format_args!($($context)+), stringify!($pattern)),
            Err(error) => assert!(
                matches!(error, $pattern),
                "{}: expected Err({}), got Err({error:?})",
                format_args!($($context)+),
                stringify!($pattern)
            ),
        }
    };
}

fn item(n: u64) -> AppendInput {
    AppendInput::new(json!({ "n": n }))
}

async fn append_all(store: &Store, stream: &str, inputs: Vec<AppendInput>) -> Vec<EntryId> {
    let result = store
        .append(stream, inputs, ExpectedVersion::Any)
        .await
        .expect("append");
    result.ids()
}

async fn append_n(store: &Store, stream: &str, n: u64) -> Vec<EntryId> {
    append_all(store, stream, (1..=n).map(item).collect()).await
}

async fn read_all(store: &Store, stream: &str) -> Vec<Entry> {
    store
        .read(stream, &ReadOptions::new().limit(10_000))
        .await
        .expect("read")
}

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
#[tokio::test]
async fn stream_upcasts_old_entries_through_two_steps() {
    let store = MemoryStore::new();
    append_all(
        &store,
        "prices",
        vec![
            AppendInput::new(json!({"title": "apple", "cents": u64::MAX})),
            AppendInput::new(json!({"name": "pear", "cents": 90})).schema_version(2),
        ],
    )
    .await;
    let stream = Stream::<PriceV3>::new(&store, "prices")
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
#[tokio::test]
async fn missing_upcaster_is_no_upcaster_error() {
    let store = MemoryStore::new();
    append_all(
        &store,
        "old-prices",
        vec![AppendInput::new(json!({"title": "apple", "cents": 1}))],
    )
    .await;
    let without_second = Stream::<PriceV3>::new(&store, "old-prices")
        .expect("valid stream id")
        .schema_version(3)
        .expect("valid schema version")
        .upcaster(FieldMapper::new(1).rename("title", "name"));
    assert_err!(
        without_second.read(&ReadOptions::new()).await,
        Error::NoUpcaster { from: 2, to: 3 },
        "reading a v1 entry at v3 without a 2→3 step"
    );
    let without_first = Stream::<PriceV3>::new(&store, "old-prices")
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

/// A read-only stream reads like the stream it came from (and has no write methods at all:
/// see the `compile_fail` example on `ReadOnlyStream`).
#[tokio::test]
async fn read_only_stream_reads() {
    let store = MemoryStore::new();
    append_n(&store, "ro", 2).await;
    let read_only = Stream::<Value>::new(&store, "ro")
        .expect("valid stream id")
        .read_only();
    let entries = read_only.read(&ReadOptions::new()).await.expect("read");
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
}

fn quick() -> SubscribeOptions {
    SubscribeOptions::new().poll_interval(Duration::from_millis(10))
}

/// The next item of a subscription, or `None` once it ended; panics if it stays silent.
async fn next<T>(subscription: &mut futures::stream::BoxStream<'static, T>) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("the subscription yields an item or ends within 5 s")
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Counted {
    n: u64,
}

#[tokio::test]
async fn typed_subscription_ends_at_an_entry_that_does_not_decode() {
    let store = MemoryStore::new();
    let inputs = vec![item(1), AppendInput::new(json!({"n": "one"})), item(3)];
    append_all(&store, "mixed", inputs).await;
    let stream = Stream::<Counted>::new(&store, "mixed").unwrap();
    let mut subscription = stream.subscribe(0, quick());
    assert_eq!(
        next(&mut subscription).await.unwrap().unwrap().payload,
        Counted { n: 1 }
    );
    assert_err!(
        next(&mut subscription).await.unwrap(),
        Error::Decode { .. },
        "entry 2"
    );
    assert!(
        next(&mut subscription).await.is_none(),
        "the error ended the subscription"
    );
}

/// A backend whose reads fail with the errors queued in it, then succeed; everything else is a
/// `MemoryStore`'s.
struct Failing {
    inner: Store,
    failures: Arc<Mutex<Vec<BackendErrorKind>>>,
}

/// A store on a `Failing` backend, and its queue of failures (next failure last).
fn failing(failures: &[BackendErrorKind]) -> (Store, Arc<Mutex<Vec<BackendErrorKind>>>) {
    let failures = Arc::new(Mutex::new(failures.iter().rev().copied().collect()));
    let backend = Failing {
        inner: MemoryStore::new().into(),
        failures: failures.clone(),
    };
    (Store::new(backend), failures)
}

#[async_trait]
impl Backend for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .expected_version(true)
            .atomic_append(true)
    }
    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        self.inner.append(stream, entries, expected).await
    }
    async fn read(&self, stream: &str, options: &ReadOptions) -> Result<Vec<Entry>> {
        let failure = self.failures.lock().unwrap().pop();
        match failure {
            Some(kind) => Err(Error::backend(kind, format!("injected {kind} failure"))),
            None => self.inner.read(stream, options).await,
        }
    }
    async fn count(&self, stream: &str) -> Result<u64> {
        self.inner.count(stream).await
    }
    async fn stat(&self, stream: &str) -> Result<StreamStat> {
        self.inner.stat(stream).await
    }
    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        self.inner.list_streams(options).await
    }
    async fn set_tags(&self, _: &str, _: EntryId, _: BTreeSet<String>) -> Result<()> {
        unreachable!("no tags")
    }
    async fn set_annotations(
        &self,
        _: &str,
        _: EntryId,
        _: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        unreachable!("no annotations")
    }
    async fn trim(&self, _: &str, _: EntryId) -> Result<u64> {
        unreachable!("no trim")
    }
    async fn rename_stream(&self, _: &str, _: &str) -> Result<()> {
        unreachable!("no rename")
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.commits()
    }
    fn as_search(&self) -> Option<&dyn SearchBackend> {
        None
    }
    fn as_change_feed(&self) -> Option<&dyn ChangeFeedBackend> {
        None
    }
    fn as_cursor_store(&self) -> Option<&dyn CursorBackend> {
        None
    }
    fn as_health(&self) -> Option<&dyn HealthBackend> {
        None
    }
    fn as_replica(&self) -> Option<&dyn ReplicaBackend> {
        None
    }
}

#[tokio::test]
async fn subscriptions_retry_transient_errors_without_loss() {
    use BackendErrorKind::*;
    let (store, failures) = failing(&[Connection, Timeout, Serialization]);
    store
        .append("s", vec![item(1), item(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    let mut subscription = store.subscribe("s", 0, quick());
    let first = next(&mut subscription)
        .await
        .unwrap()
        .expect("delivered after the retries");
    let second = next(&mut subscription).await.unwrap().expect("delivered");
    assert_eq!((first.version, second.version), (1, 2));
    assert!(failures.lock().unwrap().is_empty(), "every failure was met");
}

#[tokio::test]
async fn subscriptions_end_with_an_error_on_corrupt_data_instead_of_retrying() {
    let (store, _) = failing(&[BackendErrorKind::Corrupt]);
    store
        .append("s", vec![item(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    let mut subscription = store.subscribe("s", 0, quick());
    let error = next(&mut subscription).await.unwrap().unwrap_err();
    assert_eq!(
        error.backend_kind(),
        Some(BackendErrorKind::Corrupt),
        "{error}"
    );
    assert!(
        next(&mut subscription).await.is_none(),
        "the subscription ended"
    );
}

#[tokio::test]
async fn subscriptions_hand_transient_errors_over_when_told_not_to_retry() {
    let (store, _) = failing(&[BackendErrorKind::Connection]);
    let options = quick().retry_transient_errors(false);
    let mut subscription = store.subscribe("s", 0, options);
    let error = next(&mut subscription).await.unwrap().unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        next(&mut subscription).await.is_none(),
        "the subscription ended"
    );
}

#[tokio::test]
async fn decide_retries_after_losing_a_race_and_appends_once() {
    let store = MemoryStore::new();
    let seats = Stream::<String>::new(&store, "flight").unwrap();
    let mut attempts = 0;
    let rival = seats.clone();
    let result = seats
        .decide(3, |history| {
            attempts += 1;
            let booked = history.iter().any(|e| e.payload == "1A");
            Ok(if booked {
                vec![]
            } else {
                vec!["1A".to_owned()]
            })
        })
        .await
        .unwrap();
    assert_eq!((attempts, result.version), (1, 1), "no race: one attempt");

    // A rival books 2B between our read and our append, on the first attempt only.
    let mut attempts = 0;
    let result = seats
        .decide(3, |history| {
            attempts += 1;
            if attempts == 1 {
                let rival = rival.clone();
                std::thread::spawn(move || {
                    tokio::runtime::Runtime::new()
                        .unwrap()
                        .block_on(async move {
                            rival
                                .append(vec!["2B".to_owned()], ExpectedVersion::Any)
                                .await
                                .unwrap();
                        })
                })
                .join()
                .unwrap();
            }
            let taken: Vec<&str> = history.iter().map(|e| e.payload.as_str()).collect();
            Ok(if taken.contains(&"2C") {
                vec![]
            } else {
                vec!["2C".to_owned()]
            })
        })
        .await
        .unwrap();
    assert_eq!(attempts, 2, "the conflict made it read and decide again");
    assert_eq!(result.version, 3, "appended after the rival's entry");
    let all: Vec<String> = seats
        .read(&ReadOptions::new())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(all, ["1A", "2B", "2C"]);
}

#[tokio::test]
async fn decide_gives_up_with_the_conflict_after_its_attempts() {
    let store = MemoryStore::new();
    let stream = Stream::<u32>::new(&store, "busy").unwrap();
    let rival = stream.clone();
    let mut attempts = 0;
    let result = stream
        .decide(2, |_| {
            attempts += 1;
            let rival = rival.clone();
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .unwrap()
                    .block_on(async move {
                        rival.append(vec![0], ExpectedVersion::Any).await.unwrap();
                    })
            })
            .join()
            .unwrap();
            Ok(vec![1])
        })
        .await;
    assert_eq!(attempts, 2);
    assert!(
        result.unwrap_err().is_conflict(),
        "the last conflict is returned"
    );
}

#[tokio::test]
async fn typed_read_all_decodes_every_page() {
    let store = MemoryStore::new();
    append_n(&store, "counted", 7).await;
    let stream = Stream::<Counted>::new(&store, "counted").unwrap();
    let all: Vec<u64> = stream
        .read_all(ReadOptions::new().limit(3))
        .map(|e| e.unwrap().payload.n)
        .collect()
        .await;
    assert_eq!(all, (1..=7).collect::<Vec<_>>());
}

/// A codec that only decodes values, counting the calls.
#[derive(Clone, Default)]
struct CountingCodec(Arc<Mutex<u32>>);

impl ledger_core::Codec<u64> for CountingCodec {
    fn encode(&self, value: &u64) -> std::result::Result<Value, ledger_core::CodecError> {
        Ok(json!({ "n": value }))
    }

    fn decode(&self, value: Value) -> std::result::Result<u64, ledger_core::CodecError> {
        *self.0.lock().unwrap() += 1;
        value["n"].as_u64().ok_or_else(|| "no n".into())
    }
}

#[tokio::test]
async fn a_codec_that_only_decodes_values_still_reads_typed_pages() {
    let store = MemoryStore::new();
    append_n(&store, "counted", 5).await;
    let codec = CountingCodec::default();
    let stream = Stream::with_codec(&store, "counted", codec.clone()).unwrap();
    let page: Vec<u64> = stream
        .read(&ReadOptions::new())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(page, [1, 2, 3, 4, 5]);
    assert_eq!(
        *codec.0.lock().unwrap(),
        5,
        "each entry went through decode"
    );
    let all: Vec<u64> = stream
        .read_all(ReadOptions::new().limit(2))
        .map(|e| e.unwrap().payload)
        .collect()
        .await;
    assert_eq!(all, [1, 2, 3, 4, 5], "read_all decodes every page too");
}
