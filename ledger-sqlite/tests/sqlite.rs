//! Behaviour specific to the SQLite backend: caller transactions, migrations, files,
//! cancellation, in-memory pools, corrupt rows.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ledger_core::testkit::assert_ends_with_corrupt_data;
use ledger_core::{
    AppendInput, BackendErrorKind, Error, ExpectedVersion, ReadOptions, Stream, SubscribeOptions,
};
use ledger_sqlite::{SCHEMA_VERSION, SqliteStore};
use serde_json::json;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// A directory of its own for one test, removed when the test ends (passed or failed).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ledger-sqlite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        Scratch(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("ledger.db")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plain connection to the file, as another process would open it.
async fn other_connection(path: &Path, busy: Duration) -> sqlx::SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(busy)
        .connect()
        .await
        .expect("the file opens")
}

fn quick() -> SubscribeOptions {
    SubscribeOptions::new().poll_interval(Duration::from_millis(20))
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
    assert!(outcome.outcomes[0].is_appended());
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
        outcome.outcomes[0],
        ledger_core::AppendOutcome::Appended { version: 1, .. }
    ));
}

#[tokio::test]
async fn migrations_are_recorded_once_per_store() {
    let dir = Scratch::new("migrations");
    let path = dir.db();
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
    let each = |store: &'static str| (1..=SCHEMA_VERSION).map(move |v| (store.to_owned(), v));
    let expected: Vec<(String, i64)> = each("orders").chain(each("payments")).collect();
    assert_eq!(rows, expected, "every migration recorded once per store");
}

#[tokio::test]
async fn concurrent_opens_of_one_file_migrate_once_and_all_work() {
    let dir = Scratch::new("concurrent-open");
    let path = dir.db();
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
    let dir = Scratch::new("reopen");
    let path = dir.db();
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
    let dir = Scratch::new("bad-name");
    let path = dir.db();
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
    assert!(matches!(
        store.read_feed(None, 10).await,
        Err(Error::NotSupported(_))
    ));
    let with_feed = SqliteStore::builder()
        .change_feed(true)
        .open_in_memory()
        .await
        .unwrap();
    assert!(with_feed.read_feed(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_cancelled_append_leaves_no_transaction_open() {
    let dir = Scratch::new("cancelled");
    let store = SqliteStore::open(dir.db()).await.unwrap();
    let batch: Vec<AppendInput> = (0..3_000).map(input).collect();
    let mut append = Box::pin(store.append("s", batch, ExpectedVersion::Any));
    // One poll starts the append (its first command reaches SQLite); then the caller gives up.
    assert!(
        futures::poll!(&mut append).is_pending(),
        "the append is under way"
    );
    drop(append);

    let mut other = other_connection(&dir.db(), Duration::from_secs(3)).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("another process gets the write lock: the cancelled append ended its transaction");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let count = store.count("s").await.unwrap();
    assert!(
        count == 0 || count == 3_000,
        "all or nothing of the batch: {count}"
    );
    store
        .append("s", vec![input(1)], ExpectedVersion::Any)
        .await
        .expect("the store keeps working");
}

#[tokio::test]
async fn stores_on_a_callers_in_memory_pool_read_what_they_write() {
    // sqlx's shared-cache `sqlite::memory:` and a private in-memory database alike.
    let shared = SqliteConnectOptions::from_str("sqlite::memory:").unwrap();
    let private = SqliteConnectOptions::new().in_memory(true);
    for (what, options) in [("sqlite::memory:", shared), ("in_memory(true)", private)] {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .unwrap();
        let store = SqliteStore::builder()
            .change_feed(true)
            .with_pool(pool.clone())
            .await
            .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        store
            .append("s", vec![input(1), input(2)], ExpectedVersion::NoStream)
            .await
            .unwrap_or_else(|e| panic!("{what}: append failed: {e}"));
        let versions: Vec<u64> = store
            .read("s", &ReadOptions::new())
            .await
            .unwrap_or_else(|e| panic!("{what}: read failed: {e}"))
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, [1, 2], "{what}: the store reads what it wrote");
        store.close().await.unwrap();
        assert!(!pool.is_closed(), "{what}: the caller's pool stays open");
    }
}

/// A store whose table `t` has a second entry that no longer decodes.
async fn store_with_a_corrupt_entry(dir: &Scratch) -> SqliteStore {
    let store = SqliteStore::builder()
        .table("t")
        .change_feed(true)
        .open(dir.db())
        .await
        .unwrap();
    store
        .append("s", vec![input(1), input(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    sqlx::query("UPDATE t SET payload = 'not json' WHERE version = 2")
        .execute(store.pool())
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn a_corrupt_entry_ends_a_subscription_with_an_error_it_can_see() {
    let dir = Scratch::new("corrupt-entry");
    let store = store_with_a_corrupt_entry(&dir).await;
    let stream = Stream::<serde_json::Value>::new(&store, "s").unwrap();
    assert_ends_with_corrupt_data(&mut stream.subscribe(0, quick())).await;
}

#[tokio::test]
async fn a_corrupt_feed_record_ends_a_feed_subscription_with_an_error() {
    let dir = Scratch::new("corrupt-feed");
    let store = store_with_a_corrupt_entry(&dir).await;
    sqlx::query("UPDATE t_feed SET mutation = '{\"type\": \"unknown\"}'")
        .execute(store.pool())
        .await
        .unwrap();
    assert_ends_with_corrupt_data(&mut store.subscribe_feed(None, quick())).await;
}

#[tokio::test]
async fn corrupt_metadata_or_tags_read_as_corrupt_data_naming_the_entry() {
    let dir = Scratch::new("corrupt-columns");
    let store = SqliteStore::builder()
        .table("t")
        .open(dir.db())
        .await
        .unwrap();
    let ids: Vec<_> = store
        .append("s", vec![input(1), input(2)], ExpectedVersion::Any)
        .await
        .unwrap()
        .appended()
        .map(|(id, _)| id)
        .collect();
    for update in [
        "UPDATE t SET metadata = '{\"k\": ' WHERE version = 2",
        "UPDATE t SET metadata = '{}', tags = '\"not a list' WHERE version = 2",
    ] {
        sqlx::query(update).execute(store.pool()).await.unwrap();
        let read = store.read("s", &ReadOptions::new()).await;
        let error = read.expect_err("a page with a corrupt row fails");
        assert_eq!(
            error.backend_kind(),
            Some(BackendErrorKind::Corrupt),
            "after {update}: {error}"
        );
        let id = ids[1].to_string();
        assert!(error.to_string().contains(&id), "names entry {id}: {error}");
    }
}

#[tokio::test]
async fn rows_of_the_wrong_type_are_errors_not_panics() {
    let dir = Scratch::new("wrong-type");
    let store = SqliteStore::builder()
        .table("t")
        .open(dir.db())
        .await
        .unwrap();
    store
        .append("s", vec![input(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    // SQLite keeps whatever a column is given: a version that is not a number.
    sqlx::query("UPDATE t_streams SET version = 'three' WHERE stream = 's'")
        .execute(store.pool())
        .await
        .unwrap();
    let stat = store.stat("s").await;
    assert_eq!(
        stat.unwrap_err().backend_kind(),
        Some(BackendErrorKind::Corrupt),
        "stat"
    );
    let append = store
        .append("s", vec![input(2)], ExpectedVersion::Any)
        .await;
    assert_eq!(
        append.unwrap_err().backend_kind(),
        Some(BackendErrorKind::Corrupt),
        "append"
    );
}

#[tokio::test]
async fn a_store_migrated_by_a_newer_release_is_refused() {
    let dir = Scratch::new("newer-schema");
    let store = SqliteStore::builder()
        .table("t")
        .open(dir.db())
        .await
        .unwrap();
    sqlx::query("INSERT INTO ledger_migrations (store, version, description) VALUES ('t', ?, 'a later release')")
        .bind(SCHEMA_VERSION + 1)
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await.unwrap();
    let reopened = SqliteStore::builder().table("t").open(dir.db()).await;
    match reopened {
        Err(Error::IncompatibleSchema {
            store,
            found,
            known,
        }) => {
            assert_eq!(
                (store.as_str(), found, known),
                ("t", SCHEMA_VERSION + 1, SCHEMA_VERSION)
            );
        }
        other => panic!("expected IncompatibleSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn feed_records_of_an_older_release_still_read_and_positions_continue() {
    let dir = Scratch::new("older-feed");
    let store = SqliteStore::builder()
        .table("t")
        .change_feed(true)
        .open(dir.db())
        .await
        .unwrap();
    store
        .append("s", vec![input(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    // An append recorded the way schema version 1 did: the entries copied, no version.
    let entry = store
        .read("s", &ReadOptions::new())
        .await
        .unwrap()
        .remove(0);
    let legacy = json!({"type": "append", "entries": [entry]}).to_string();
    sqlx::query("INSERT INTO t_feed (stream, mutation, recorded_at) VALUES ('s', ?, 0)")
        .bind(legacy)
        .execute(store.pool())
        .await
        .unwrap();
    store
        .append("s", vec![input(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    let records = store.read_feed(None, 10).await.unwrap();
    let positions: Vec<u64> = records.iter().map(|r| r.position).collect();
    assert_eq!(
        positions,
        [1, 2, 3],
        "positions continue past the older record"
    );
    match &records[1].mutation {
        ledger_core::Mutation::Append { entries, version } => {
            assert_eq!(
                (entries.len(), *version),
                (1, 0),
                "the copied entry, no version"
            );
        }
        other => panic!("expected the older append, got {other:?}"),
    }
}
