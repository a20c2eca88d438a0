//! MongoDB-specific behaviour, on both servers `cargo xtask services up` starts (see
//! tests/conformance.rs for the suite every backend passes).

use futures::future::join_all;
use ledger_core::testkit::server::server_url;
use ledger_core::{
    AppendInput, Error, ExpectedVersion, ReadOptions, SearchQuery, Store, TimestampPrecision,
};
use ledger_mongo::MongoStore;
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Value, json};

fn replica_set() -> String {
    server_url("LEDGER_MONGODB_URL", env!("CARGO_MANIFEST_DIR"))
}

fn standalone() -> String {
    server_url("LEDGER_MONGODB_STANDALONE_URL", env!("CARGO_MANIFEST_DIR"))
}

fn fresh_name() -> String {
    ledger_core::testkit::fresh_table()
}

async fn open(url: &str, collection: &str) -> MongoStore {
    MongoStore::builder()
        .collection(collection)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot open {collection} at {url}: {e}"))
}

async fn fresh(url: &str) -> MongoStore {
    open(url, &fresh_name()).await
}

async fn raw_entry(store: &MongoStore, stream: &str) -> Document {
    store
        .entries()
        .find_one(doc! {"stream": stream})
        .await
        .expect("raw find works")
        .expect("the entry is stored")
}

async fn append(store: &Store, stream: &str, payload: Value) {
    store
        .append(
            stream,
            vec![AppendInput::new(payload)],
            ExpectedVersion::Any,
        )
        .await
        .unwrap_or_else(|e| panic!("append to {stream} failed: {e}"));
}

fn as_i64(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

#[tokio::test]
async fn payloads_are_bson_that_mongodb_queries_with_special_keys_escaped() {
    for url in [replica_set(), standalone()] {
        let store = fresh(&url).await;
        let payload = json!({
            "customer": {"id": 7, "name": "Ada"},
            "a.b": 1, "$set": 2, "": 3, "100%": 4,
            "big": u64::MAX, "ratio": 0.5
        });
        append(&store, "s", payload.clone()).await;
        let raw = raw_entry(&store, "s").await;
        let stored = raw
            .get_document("payload")
            .expect("the payload is a document");
        let customer = stored
            .get_document("customer")
            .expect("nested documents stay");
        assert_eq!(
            as_i64(customer.get("id")),
            Some(7),
            "{url}: integers are integers"
        );
        assert_eq!(stored.get_f64("ratio").ok(), Some(0.5));
        for (key, field) in [
            ("a.b", "a%2Eb"),
            ("$set", "%24set"),
            ("", "%"),
            ("100%", "100%25"),
        ] {
            assert!(
                stored.contains_key(field),
                "{url}: key {key:?} is stored as {field:?}: {stored:?}"
            );
        }
        assert_eq!(
            stored.get_document("big").ok(),
            Some(&doc! {"%u64": u64::MAX.to_string()}),
            "{url}: an integer above i64::MAX is its digits under %u64"
        );
        let found = store
            .entries()
            .count_documents(doc! {"payload.customer.id": 7})
            .await
            .expect("a query on a payload field works");
        assert_eq!(
            found, 1,
            "{url}: MongoDB's own query finds the entry by a payload field"
        );
        let read = store.read("s", &ReadOptions::new()).await.unwrap();
        assert_eq!(read[0].payload, payload, "{url}: and it reads back exactly");
    }
}

#[tokio::test]
async fn payloads_nested_deeper_than_mongodb_stores_are_kept_as_json_text() {
    let store = fresh(&replica_set()).await;
    let deep = (0..95).fold(json!("bottom"), |inner, _| json!({ "down": inner }));
    append(&store, "deep", deep.clone()).await;
    let raw = raw_entry(&store, "deep").await;
    assert!(
        raw.get_str("payload_json").is_ok(),
        "stored as text: {:?}",
        raw.keys().collect::<Vec<_>>()
    );
    let read = store.read("deep", &ReadOptions::new()).await.unwrap();
    assert_eq!(read[0].payload, deep);
}

#[tokio::test]
async fn an_entry_over_16_mib_is_refused_by_its_index_and_nothing_of_the_batch_is_written() {
    for url in [replica_set(), standalone()] {
        let store = fresh(&url).await;
        let big = "x".repeat(17 * 1024 * 1024);
        let batch = vec![
            AppendInput::new(json!({"small": 1})),
            AppendInput::new(json!({"big": big})),
        ];
        let err = store
            .append("big", batch, ExpectedVersion::Any)
            .await
            .expect_err("an entry over the document limit is refused");
        match &err {
            Error::InvalidArgument(message) => assert!(
                message.contains("entry 1") && message.contains("16777216"),
                "{url}: the error names the entry and the limit: {message}"
            ),
            other => panic!("{url}: expected InvalidArgument, got {other:?}"),
        }
        assert_eq!(
            store.count("big").await.unwrap(),
            0,
            "{url}: nothing was written"
        );
        assert_eq!(store.stat("big").await.unwrap().last_version, 0);
    }
}

#[tokio::test]
async fn names_mongodb_refuses_are_invalid_names() {
    for database in ["bad.name", "bad name", "a$b", ""] {
        let err = MongoStore::builder()
            .database(database)
            .connect(&replica_set())
            .await
            .expect_err("an invalid database name is refused");
        assert!(
            matches!(&err, Error::InvalidName { kind: "database", name, .. } if name == database),
            "database {database:?}: {err:?}"
        );
    }
    let err = MongoStore::builder()
        .collection("orders.feed")
        .connect(&replica_set())
        .await
        .expect_err("a collection name outside the rule is refused");
    assert!(
        matches!(err, Error::InvalidName { kind: "table", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_standalone_server_offers_no_change_feed_and_says_why() {
    let err = MongoStore::builder()
        .collection(fresh_name())
        .change_feed(true)
        .connect(&standalone())
        .await
        .expect_err("the change feed needs transactions");
    match err {
        Error::NotSupported(message) => assert!(message.contains("transactions"), "{message}"),
        other => panic!("expected NotSupported, got {other:?}"),
    }
    let store = fresh(&standalone()).await;
    let caps = store.capabilities();
    assert!(
        !caps.transactions && !caps.atomic_append && !caps.rename && caps.change_feed.is_none()
    );
    assert!(
        caps.expected_version && caps.dedup,
        "still decided by the database"
    );
    let replica = fresh(&replica_set()).await;
    let caps = replica.capabilities();
    assert!(caps.transactions && caps.atomic_append && caps.rename);
    assert_eq!(caps.timestamp_precision, TimestampPrecision::Milliseconds);
}

/// Two stores on one collection, each with a client of its own (as two processes would have),
/// race appends expecting the same version: exactly one wins each round.
#[tokio::test]
async fn two_clients_expecting_one_version_have_exactly_one_winner() {
    for url in [replica_set(), standalone()] {
        let name = fresh_name();
        let stores = [open(&url, &name).await, open(&url, &name).await];
        for round in 0..10u64 {
            let attempts = stores.iter().enumerate().map(|(i, store)| {
                let input = AppendInput::new(json!({"round": round, "writer": i}));
                store.append("race", vec![input], ExpectedVersion::Exact(round))
            });
            let results = join_all(attempts).await;
            let winners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "{url}: round {round}: {results:?}");
            assert!(
                results
                    .iter()
                    .any(|r| matches!(r, Err(e) if e.is_conflict())),
                "{url}: the loser sees a conflict: {results:?}"
            );
        }
        assert_eq!(stores[0].count("race").await.unwrap(), 10);
    }
}

#[tokio::test]
async fn append_in_commits_and_aborts_with_the_callers_transaction() {
    let store = fresh(&replica_set()).await;
    let input = || vec![AppendInput::new(json!({"n": 1}))];
    let mut session = store.client().start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    store
        .append_in(&mut session, "tx", input(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    session.abort_transaction().await.unwrap();
    assert_eq!(
        store.count("tx").await.unwrap(),
        0,
        "an aborted append leaves nothing"
    );
    session.start_transaction().await.unwrap();
    store
        .append_in(&mut session, "tx", input(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert_eq!(
        store.count("tx").await.unwrap(),
        0,
        "invisible until the caller commits"
    );
    session.commit_transaction().await.unwrap();
    assert_eq!(store.count("tx").await.unwrap(), 1);
    let standalone = fresh(&standalone()).await;
    let mut session = standalone.client().start_session().await.unwrap();
    let err = standalone
        .append_in(&mut session, "tx", input(), ExpectedVersion::Any)
        .await
        .expect_err("no transactions on a standalone server");
    assert!(matches!(err, Error::NotSupported(_)), "{err:?}");
}

#[tokio::test]
async fn full_text_search_is_offered_only_once_the_server_built_the_text_index() {
    let store = fresh(&replica_set()).await;
    append(&store, "words", json!({"text": "the quick brown fox"})).await;
    assert!(!store.capabilities().search.full_text);
    let words = SearchQuery::full_text("quick");
    let err = store
        .search(Some("words"), words.clone(), &ReadOptions::new())
        .await
        .expect_err("no full-text search without the index");
    assert!(matches!(err, Error::NotSupported(_)), "{err:?}");
    match store.ensure_search_index().await {
        Ok(()) => {
            assert!(store.capabilities().search.full_text);
            let found = store
                .search(Some("words"), words, &ReadOptions::new())
                .await
                .unwrap();
            assert_eq!(found.len(), 1);
        }
        // SecantusDB has no text indexes: the store keeps saying so.
        Err(Error::NotSupported(_)) => assert!(!store.capabilities().search.full_text),
        Err(other) => panic!("ensure_search_index failed: {other}"),
    }
}
