//! Typed streams: upcasting and read-only handles.

use super::support::*;

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
