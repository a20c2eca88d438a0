//! The typed layer, which is core code whatever the store: upcasting, read-only handles and
//! typed subscriptions, against the reference `MemoryStore`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ledger_core::{
    AppendInput, AppendOutcome, BackendErrorKind, Capabilities, Entry, Error, ExpectedVersion,
    FieldMapper, ListOptions, MemoryStore, ReadOptions, Result, Store, Stream, StreamStat,
    SubscribeOptions, subscribe_stream, upcaster,
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

fn tags(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|t| t.to_string()).collect()
}

fn changes(list: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
        .collect()
}

async fn append_all(store: &MemoryStore, stream: &str, inputs: Vec<AppendInput>) -> Vec<i64> {
    let outcomes = store
        .append(stream, inputs, ExpectedVersion::Any)
        .await
        .expect("append");
    outcomes.iter().map(|o| *o.id()).collect()
}

async fn append_n(store: &MemoryStore, stream: &str, n: u64) -> Vec<i64> {
    append_all(store, stream, (1..=n).map(item).collect()).await
}

async fn read_all(store: &MemoryStore, stream: &str) -> Vec<ledger_core::Entry<i64>> {
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
    let stream = Stream::<MemoryStore, PriceV3>::new(store.clone(), "prices")
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
    let without_second = Stream::<MemoryStore, PriceV3>::new(store.clone(), "old-prices")
        .expect("valid stream id")
        .schema_version(3)
        .expect("valid schema version")
        .upcaster(FieldMapper::new(1).rename("title", "name"));
    assert_err!(
        without_second.read(&ReadOptions::new()).await,
        Error::NoUpcaster { from: 2, to: 3 },
        "reading a v1 entry at v3 without a 2→3 step"
    );
    let without_first = Stream::<MemoryStore, PriceV3>::new(store.clone(), "old-prices")
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
#[tokio::test]
async fn read_only_stream_refuses_writes_and_reads() {
    let store = MemoryStore::new();
    let all = append_n(&store, "ro", 2).await;
    let read_only = Stream::<MemoryStore, Value>::new(store.clone(), "ro")
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

fn quick() -> SubscribeOptions {
    SubscribeOptions {
        poll_interval: Duration::from_millis(10),
        ..SubscribeOptions::default()
    }
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
    let stream = Stream::<_, Counted>::new(store, "mixed").unwrap();
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

/// A store whose reads fail with the errors queued in it, then succeed.
#[derive(Clone)]
struct Failing {
    inner: MemoryStore,
    failures: std::sync::Arc<Mutex<Vec<BackendErrorKind>>>,
}

impl Failing {
    fn new(failures: &[BackendErrorKind]) -> Self {
        Failing {
            inner: MemoryStore::new(),
            failures: std::sync::Arc::new(Mutex::new(failures.iter().rev().copied().collect())),
        }
    }
}

#[async_trait]
impl Store for Failing {
    type Id = i64;
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn append(
        &self,
        s: &str,
        e: Vec<AppendInput>,
        x: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<i64>>> {
        self.inner.append(s, e, x).await
    }
    async fn read(&self, stream: &str, options: &ReadOptions<i64>) -> Result<Vec<Entry<i64>>> {
        let failure = self.failures.lock().unwrap().pop();
        match failure {
            Some(kind) => Err(Error::backend(kind, format!("injected {kind} failure"))),
            None => self.inner.read(stream, options).await,
        }
    }
    async fn count(&self, s: &str) -> Result<u64> {
        self.inner.count(s).await
    }
    async fn stat(&self, s: &str) -> Result<StreamStat<i64>> {
        self.inner.stat(s).await
    }
    async fn list_streams(&self, o: &ListOptions) -> Result<Vec<String>> {
        self.inner.list_streams(o).await
    }
    async fn set_tags(&self, s: &str, id: &i64, t: BTreeSet<String>) -> Result<()> {
        self.inner.set_tags(s, id, t).await
    }
    async fn set_annotations(
        &self,
        s: &str,
        id: &i64,
        c: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.inner.set_annotations(s, id, c).await
    }
    async fn trim(&self, s: &str, up_to: &i64) -> Result<u64> {
        self.inner.trim(s, up_to).await
    }
    async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename_stream(from, to).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

#[tokio::test]
async fn subscriptions_retry_transient_errors_without_loss() {
    use BackendErrorKind::*;
    let store = Failing::new(&[Connection, Timeout, Serialization]);
    store
        .append("s", vec![item(1), item(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    let mut subscription = subscribe_stream(store.clone(), "s".into(), 0, quick());
    let first = next(&mut subscription)
        .await
        .unwrap()
        .expect("delivered after the retries");
    let second = next(&mut subscription).await.unwrap().expect("delivered");
    assert_eq!((first.version, second.version), (1, 2));
    assert!(
        store.failures.lock().unwrap().is_empty(),
        "every failure was met"
    );
}

#[tokio::test]
async fn subscriptions_end_with_an_error_on_corrupt_data_instead_of_retrying() {
    let store = Failing::new(&[BackendErrorKind::Corrupt]);
    store
        .append("s", vec![item(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    let mut subscription = subscribe_stream(store.clone(), "s".into(), 0, quick());
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
    let store = Failing::new(&[BackendErrorKind::Connection]);
    let options = SubscribeOptions {
        retry_transient_errors: false,
        ..quick()
    };
    let mut subscription = subscribe_stream(store, "s".into(), 0, options);
    let error = next(&mut subscription).await.unwrap().unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        next(&mut subscription).await.is_none(),
        "the subscription ended"
    );
}
