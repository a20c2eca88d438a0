//! `ledger::open`: one `Store` type for every backend, chosen by URL at run time.

use ledger::{AppendInput, Error, ExpectedVersion, ReadOptions, Store};
use serde_json::json;

/// A directory of its own for one test, removed when the test ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ledger-open-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Appends one entry and reads it back through whatever store `url` opens.
async fn round_trip(store: &Store) {
    let result = store
        .append(
            "s",
            vec![AppendInput::new(json!({"n": 1}))],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap_or_else(|e| panic!("append through {store:?} failed: {e}"));
    assert_eq!(result.version, 1);
    let read = store.read("s", &ReadOptions::new()).await.unwrap();
    assert_eq!(read[0].payload, json!({"n": 1}));
}

#[tokio::test]
async fn sqlite_urls_open_a_file_with_the_table_and_feed_they_name() {
    let dir = Scratch::new("file");
    let url = format!(
        "sqlite://{}/l.db?table=orders&change_feed=true",
        dir.0.display()
    );
    let store = ledger::open(&url).await.unwrap();
    assert_eq!((store.name(), store.backend_kind()), ("orders", "sqlite"));
    assert!(
        store.capabilities().change_feed.is_some(),
        "change_feed=true"
    );
    round_trip(&store).await;
    store.close().await.unwrap();
    let again = ledger::open(&url).await.unwrap();
    assert_eq!(
        again.count("s").await.unwrap(),
        1,
        "the file keeps what was written"
    );
    let other_table = ledger::open(&format!("sqlite:{}/l.db", dir.0.display()))
        .await
        .unwrap();
    assert_eq!(other_table.name(), ledger::DEFAULT_TABLE);
    assert_eq!(
        other_table.count("s").await.unwrap(),
        0,
        "another table is another store"
    );
    assert!(
        other_table.capabilities().change_feed.is_none(),
        "no feed unless asked"
    );
}

#[tokio::test]
async fn sqlite_memory_urls_open_a_private_database() {
    let store = ledger::open("sqlite::memory:").await.unwrap();
    round_trip(&store).await;
    let other = ledger::open("sqlite::memory:").await.unwrap();
    assert_eq!(
        other.count("s").await.unwrap(),
        0,
        "each is its own database"
    );
}

#[tokio::test]
async fn bad_urls_and_table_names_are_refused_with_what_was_wrong() {
    match ledger::open("redis://localhost").await {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("redis"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    match ledger::open("sqlite::memory:?table=no-dashes").await {
        Err(Error::InvalidName {
            kind: "table",
            name,
            ..
        }) => assert_eq!(name, "no-dashes"),
        other => panic!("expected InvalidName, got {other:?}"),
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_urls_open_postgres_and_one_type_holds_both_backends() {
    let url =
        ledger::testkit::server::server_url("LEDGER_POSTGRES_URL", env!("CARGO_MANIFEST_DIR"));
    let table = ledger::testkit::fresh_table();
    let separator = if url.contains('?') { '&' } else { '?' };
    let postgres = ledger::open(&format!("{url}{separator}table={table}&change_feed=true"))
        .await
        .unwrap();
    assert_eq!(
        (postgres.name(), postgres.backend_kind()),
        (table.as_str(), "postgres")
    );
    assert!(postgres.capabilities().change_feed.is_some());
    let stores: Vec<Store> = vec![postgres, ledger::open("sqlite::memory:").await.unwrap()];
    for store in &stores {
        round_trip(store).await;
    }
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_backend_not_compiled_in_says_which_feature_to_enable() {
    match ledger::open("postgres://localhost/db").await {
        Err(Error::NotSupported(m)) => assert!(m.contains("`postgres` feature"), "{m}"),
        other => panic!("expected NotSupported, got {other:?}"),
    }
}

#[cfg(feature = "mongodb")]
#[tokio::test]
async fn mongodb_urls_open_mongodb_with_the_collection_and_feed_they_name() {
    let url = ledger::testkit::server::server_url("LEDGER_MONGODB_URL", env!("CARGO_MANIFEST_DIR"));
    let table = ledger::testkit::fresh_table();
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = ledger::open(&format!("{url}{separator}table={table}&change_feed=true"))
        .await
        .unwrap();
    assert_eq!(
        (store.name(), store.backend_kind()),
        (table.as_str(), "mongodb")
    );
    assert!(store.capabilities().change_feed.is_some());
    round_trip(&store).await;
}

#[cfg(not(feature = "mongodb"))]
#[tokio::test]
async fn a_mongodb_url_without_the_feature_says_which_feature_to_enable() {
    match ledger::open("mongodb://localhost/db").await {
        Err(Error::NotSupported(m)) => assert!(m.contains("`mongodb` feature"), "{m}"),
        other => panic!("expected NotSupported, got {other:?}"),
    }
}

#[cfg(feature = "clickhouse")]
#[tokio::test]
async fn clickhouse_urls_open_clickhouse_with_the_table_they_name() {
    let http =
        ledger::testkit::server::server_url("LEDGER_CLICKHOUSE_URL", env!("CARGO_MANIFEST_DIR"));
    let (_, location) = http.split_once("://").expect("an http:// URL");
    let table = ledger::testkit::fresh_table();
    let url = format!("clickhouse://{location}/?table={table}");
    let store = ledger::open(&url).await.unwrap();
    assert_eq!(
        (store.name(), store.backend_kind()),
        (table.as_str(), "clickhouse")
    );
    round_trip(&store).await;
    match ledger::open(&format!("{url}&change_feed=true")).await {
        Err(Error::NotSupported(m)) => assert!(m.contains("change feed"), "{m}"),
        other => panic!("a ClickHouse store with a change feed: {other:?}"),
    }
}

#[cfg(not(feature = "clickhouse"))]
#[tokio::test]
async fn a_clickhouse_url_without_the_feature_says_which_feature_to_enable() {
    match ledger::open("clickhouse://localhost:8123").await {
        Err(Error::NotSupported(m)) => assert!(m.contains("`clickhouse` feature"), "{m}"),
        other => panic!("expected NotSupported, got {other:?}"),
    }
}
