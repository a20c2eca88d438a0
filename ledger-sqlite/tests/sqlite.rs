//! Behaviour specific to the SQLite backend: caller transactions, migrations, files.

use ledger_core::{AppendInput, Error, ExpectedVersion, ReadOptions, Store};
use ledger_sqlite::{SCHEMA_VERSION, SqliteStore};
use serde_json::json;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ledger-sqlite-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir.join("ledger.db")
}

fn input(n: u64) -> AppendInput {
    AppendInput::new(json!({ "n": n }))
}

#[tokio::test]
async fn append_in_caller_transaction_commits_with_the_callers_write() {
    let store = SqliteStore::builder().open_in_memory().await.unwrap();
    sqlx::query("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
        .execute(store.pool())
        .await
        .unwrap();
    let mut tx = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("INSERT INTO invoices (id, total) VALUES (1, 990)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let outcome = store
        .append_in(
            &mut tx,
            "invoice-1",
            vec![input(1)],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    assert!(outcome[0].is_appended());
    tx.commit().await.unwrap();

    let entries = store.read("invoice-1", &ReadOptions::new()).await.unwrap();
    assert_eq!(entries.len(), 1);
    let invoices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoices")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(invoices, 1);
}

#[tokio::test]
async fn append_in_caller_transaction_rolls_back_with_it() {
    let store = SqliteStore::builder().open_in_memory().await.unwrap();
    let mut tx = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    store
        .append_in(&mut tx, "s", vec![input(1), input(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.count("s").await.unwrap(), 0);
    assert_eq!(store.stat("s").await.unwrap().last_version, 0);
    // The stream is still new: versions start again at 1.
    let outcome = store
        .append("s", vec![input(3)], ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert!(matches!(
        outcome[0],
        ledger_core::AppendOutcome::Appended { version: 1, .. }
    ));
}

#[tokio::test]
async fn migrations_are_recorded_once_per_store() {
    let path = scratch("migrations");
    let first = SqliteStore::builder()
        .table("orders")
        .open(&path)
        .await
        .unwrap();
    first
        .append("s", vec![input(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    // Reopening applies nothing again and keeps the data.
    let again = SqliteStore::builder()
        .table("orders")
        .open(&path)
        .await
        .unwrap();
    assert_eq!(again.count("s").await.unwrap(), 1);
    let other = SqliteStore::builder()
        .table("payments")
        .open(&path)
        .await
        .unwrap();
    assert_eq!(other.count("s").await.unwrap(), 0, "stores are isolated");

    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT store, version FROM ledger_migrations ORDER BY store, version")
            .fetch_all(again.pool())
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            ("orders".to_owned(), SCHEMA_VERSION),
            ("payments".to_owned(), SCHEMA_VERSION)
        ]
    );
}

#[tokio::test]
async fn concurrent_opens_of_one_file_migrate_once_and_all_work() {
    let path = scratch("concurrent-open");
    let opens = (0..4).map(|_| {
        let path = path.clone();
        tokio::spawn(async move { SqliteStore::builder().table("t").open(path).await })
    });
    let stores: Vec<SqliteStore> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.expect("task ran").expect("store opened"))
        .collect();
    for (n, store) in stores.iter().enumerate() {
        store
            .append("s", vec![input(n as u64)], ExpectedVersion::Any)
            .await
            .unwrap();
    }
    let entries = stores[0].read("s", &ReadOptions::new()).await.unwrap();
    let versions: Vec<u64> = entries.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4]);
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let path = scratch("reopen");
    let store = SqliteStore::open(&path).await.unwrap();
    store
        .append("s", vec![input(1), input(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    store.close().await.unwrap();
    assert!(matches!(store.count("s").await, Err(Error::StoreClosed)));
    let reopened = SqliteStore::open(&path).await.unwrap();
    let stat = reopened.stat("s").await.unwrap();
    assert_eq!((stat.count, stat.last_version), (2, 2));
}

#[tokio::test]
async fn builder_rejects_invalid_table_name_before_touching_the_file() {
    let path = scratch("bad-name");
    let err = SqliteStore::builder()
        .table("x\"; DROP TABLE y; --")
        .open(&path)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidName { kind: "table", .. }),
        "{err}"
    );
    assert!(!path.exists(), "nothing was created for an invalid name");
}

#[tokio::test]
async fn change_feed_is_absent_unless_enabled() {
    let store = SqliteStore::builder().open_in_memory().await.unwrap();
    assert!(store.capabilities().change_feed.is_none());
    assert!(store.as_change_feed().is_none());
    let with_feed = SqliteStore::builder()
        .change_feed(true)
        .open_in_memory()
        .await
        .unwrap();
    assert!(with_feed.as_change_feed().is_some());
}
