//! Behaviour specific to the PostgreSQL backend: caller transactions, concurrent migrations,
//! LISTEN/NOTIFY wake-ups, lost connections, full-text search.
//!
//! Needs `LEDGER_POSTGRES_URL` (or `cargo xtask services up`); `cargo xtask test` provides it.

use std::time::Duration;

use futures::StreamExt;
use ledger_core::testkit::fresh_table;
use ledger_core::testkit::server::server_url;
use ledger_core::{
    AppendInput, AppendOutcome, Error, ExpectedVersion, ReadOptions, Store, Stream,
    SubscribeOptions,
};
use ledger_postgres::{PostgresStore, SCHEMA_VERSION, SearchMode};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn url() -> String {
    server_url("LEDGER_POSTGRES_URL", env!("CARGO_MANIFEST_DIR"))
}

fn input(n: u64) -> AppendInput {
    AppendInput::new(json!({ "n": n }))
}

/// A store whose connections carry `application_name`, so a test can find and kill them.
async fn named_store(table: &str, application_name: &str, change_feed: bool) -> PostgresStore {
    let options: PgConnectOptions = url().parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(options.application_name(application_name))
        .await
        .unwrap();
    PostgresStore::builder()
        .table(table)
        .change_feed(change_feed)
        .with_pool(pool)
        .await
        .unwrap()
}

/// Terminates every server connection whose `application_name` is `name`; returns how many.
async fn kill_connections(name: &str) -> i64 {
    let admin = PostgresStore::connect(&url()).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(name)
    .fetch_all(admin.pool())
    .await
    .unwrap();
    killed.len() as i64
}

#[tokio::test]
async fn append_in_caller_transaction_commits_with_the_callers_write() {
    let table = fresh_table();
    let store = PostgresStore::builder()
        .table(&table)
        .connect(&url())
        .await
        .unwrap();
    let invoices = format!("{table}_invoices");
    sqlx::query(&format!("CREATE TABLE {invoices} (id INT PRIMARY KEY)"))
        .execute(store.pool())
        .await
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {invoices} VALUES (1)"))
        .execute(&mut *tx)
        .await
        .unwrap();
    store
        .append_in(
            &mut tx,
            "invoice-1",
            vec![input(1)],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.count("invoice-1").await.unwrap(), 1);
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {invoices}"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn append_in_caller_transaction_rolls_back_with_it() {
    let store = PostgresStore::builder()
        .table(fresh_table())
        .connect(&url())
        .await
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_in(&mut tx, "s", vec![input(1), input(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.count("s").await.unwrap(), 0);
    let outcome = store
        .append("s", vec![input(3)], ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert!(matches!(
        outcome[0],
        AppendOutcome::Appended { version: 1, .. }
    ));
}

#[tokio::test]
async fn concurrent_opens_migrate_once() {
    let table = fresh_table();
    // Separate pools stand in for separate processes.
    let opens = (0..4).map(|_| {
        let table = table.clone();
        tokio::spawn(async move { PostgresStore::builder().table(table).connect(&url()).await })
    });
    let stores: Vec<PostgresStore> = futures::future::join_all(opens)
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
    let versions: Vec<u64> = stores[0]
        .read("s", &ReadOptions::new())
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    let recorded: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM ledger_migrations WHERE store = $1")
            .bind(&table)
            .fetch_all(stores[0].pool())
            .await
            .unwrap();
    assert_eq!(
        recorded,
        vec![SCHEMA_VERSION],
        "each migration recorded once"
    );
}

#[tokio::test]
async fn notify_wakes_a_subscription_long_before_its_poll_interval() {
    let table = fresh_table();
    let reader = PostgresStore::builder()
        .table(&table)
        .connect(&url())
        .await
        .unwrap();
    // A second handle (its own pool) stands in for another process: no in-process signal.
    let writer = PostgresStore::builder()
        .table(&table)
        .connect(&url())
        .await
        .unwrap();
    let slow_polling = SubscribeOptions {
        poll_interval: Duration::from_secs(60),
        ..SubscribeOptions::default()
    };
    let stream = Stream::<_, serde_json::Value>::new(reader.clone(), "orders").unwrap();
    let mut live = stream.subscribe(0, slow_polling);
    // Let the subscription catch up (nothing) and start waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer
        .append("orders", vec![input(7)], ExpectedVersion::Any)
        .await
        .unwrap();
    let entry = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .expect("NOTIFY woke the subscription within 5 s (polling alone would take 60 s)")
        .expect("subscription is open")
        .expect("entry decodes");
    assert_eq!(entry.payload, json!({ "n": 7 }));
}

#[tokio::test]
async fn subscriptions_resume_after_their_connections_are_killed() {
    let table = fresh_table();
    let name = format!("ledger-kill-{table}");
    let reader = named_store(&table, &name, true).await;
    let writer = PostgresStore::builder()
        .table(&table)
        .change_feed(true)
        .connect(&url())
        .await
        .unwrap();
    let fast = SubscribeOptions {
        poll_interval: Duration::from_millis(50),
        ..SubscribeOptions::default()
    };
    let stream = Stream::<_, serde_json::Value>::new(reader.clone(), "s").unwrap();
    let mut entries = stream.subscribe(0, fast);
    let mut feed = ledger_core::subscribe_feed(reader.clone(), None, fast);

    writer
        .append("s", vec![input(1), input(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(5), entries.next())
            .await
            .unwrap();
        seen.push(e.unwrap().unwrap().version);
    }
    let first = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .unwrap();
    let first = first.unwrap().unwrap();

    assert!(
        kill_connections(&name).await > 0,
        "the reader's connections were found"
    );
    writer
        .append("s", vec![input(3)], ExpectedVersion::Any)
        .await
        .unwrap();
    writer
        .append("s", vec![input(4)], ExpectedVersion::Any)
        .await
        .unwrap();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(10), entries.next())
            .await
            .expect("the subscription resumed after its connections were killed");
        seen.push(e.unwrap().unwrap().version);
    }
    assert_eq!(
        seen,
        [1, 2, 3, 4],
        "no entry lost or repeated across the reconnect"
    );
    let mut positions = vec![first.position];
    for _ in 0..2 {
        let r = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("the feed subscription resumed");
        positions.push(r.unwrap().unwrap().position);
    }
    assert_eq!(
        positions,
        [first.position, first.position + 1, first.position + 2]
    );
}

#[tokio::test]
async fn calls_after_the_server_drops_connections_fail_typed_then_recover() {
    let table = fresh_table();
    let name = format!("ledger-drop-{table}");
    let store = named_store(&table, &name, false).await;
    store
        .append("s", vec![input(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    assert!(kill_connections(&name).await > 0);
    // The pool may hand out a dead connection once: that call fails with a typed error.
    match store
        .append("s", vec![input(2)], ExpectedVersion::Any)
        .await
    {
        Ok(_) | Err(Error::Backend { .. }) => {}
        Err(other) => panic!("expected success or Error::Backend, got {other:?}"),
    }
    let mut recovered = false;
    for _ in 0..5 {
        if store
            .append("s", vec![input(3)], ExpectedVersion::Any)
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "a later call reconnects and succeeds");
    let ns: Vec<serde_json::Value> = store
        .read("s", &ReadOptions::new())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert!(
        ns.contains(&json!({"n": 1})) && ns.contains(&json!({"n": 3})),
        "{ns:?}"
    );
}

#[tokio::test]
async fn full_text_search_matches_words_with_its_index() {
    let store = PostgresStore::builder()
        .table(fresh_table())
        .search_mode(SearchMode::FullText)
        .connect(&url())
        .await
        .unwrap();
    store.ensure_search_index().await.unwrap();
    store.ensure_search_index().await.expect("idempotent");
    let inputs = [
        json!({"note": "Parcel delivered to the FRONT desk"}),
        json!({"note": "parcel lost in transit"}),
        json!({"note": "invoice paid"}),
    ];
    let inputs = inputs.into_iter().map(AppendInput::new).collect();
    store
        .append("a", inputs, ExpectedVersion::Any)
        .await
        .unwrap();
    store
        .append(
            "b",
            vec![AppendInput::new(json!({"note": "parcel returned"}))],
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let search = store.as_search().unwrap();
    let notes = |entries: Vec<ledger_core::Entry<i64>>| -> Vec<String> {
        entries
            .into_iter()
            .map(|e| e.payload["note"].as_str().unwrap().to_owned())
            .collect()
    };
    let front = search
        .search(Some("a"), "front desk", &ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(notes(front), ["Parcel delivered to the FRONT desk"]);
    let parcels = search
        .search(None, "parcel", &ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(parcels.len(), 3, "across streams");
    let not_lost = search
        .search(Some("a"), "parcel -lost", &ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(notes(not_lost), ["Parcel delivered to the FRONT desk"]);
}

#[tokio::test]
async fn search_index_is_not_supported_in_substring_mode() {
    let store = PostgresStore::builder()
        .table(fresh_table())
        .connect(&url())
        .await
        .unwrap();
    assert!(matches!(
        store.ensure_search_index().await,
        Err(Error::NotSupported(_))
    ));
}

#[tokio::test]
async fn long_table_names_get_distinct_derived_names() {
    // Two 63-byte names sharing a 60-byte prefix: their derived names must not collide.
    let prefix = format!("t{}", "x".repeat(59));
    let stores = [
        PostgresStore::builder()
            .table(format!("{prefix}_aa"))
            .change_feed(true)
            .connect(&url())
            .await
            .unwrap(),
        PostgresStore::builder()
            .table(format!("{prefix}_bb"))
            .change_feed(true)
            .connect(&url())
            .await
            .unwrap(),
    ];
    for (n, store) in stores.iter().enumerate() {
        store
            .append("s", vec![input(n as u64)], ExpectedVersion::Any)
            .await
            .unwrap();
    }
    for (n, store) in stores.iter().enumerate() {
        let entries = store.read("s", &ReadOptions::new()).await.unwrap();
        let payloads: Vec<_> = entries.iter().map(|e| e.payload.clone()).collect();
        assert!(
            payloads.contains(&json!({ "n": n })),
            "store {n} sees its own entry"
        );
    }
}
