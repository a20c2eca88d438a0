//! Behaviour specific to the PostgreSQL backend: caller transactions, concurrent migrations,
//! LISTEN/NOTIFY wake-ups, lost connections, full-text search.
//!
//! Needs `LEDGER_POSTGRES_URL` (or `cargo xtask services up`); `cargo xtask test` provides it.

use std::time::Duration;

use futures::StreamExt;
use ledger_core::testkit::server::server_url;
use ledger_core::testkit::{ReadCounter, assert_ends_with_corrupt_data, fresh_table};
use ledger_core::{
    AppendInput, AppendOutcome, BackendErrorKind, Error, ExpectedVersion, ReadOptions, SearchQuery,
    Stream, SubscribeOptions,
};
use ledger_postgres::{PostgresStore, SCHEMA_VERSION};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn url() -> String {
    server_url("LEDGER_POSTGRES_URL", env!("CARGO_MANIFEST_DIR"))
}

fn input(n: u64) -> AppendInput {
    AppendInput::new(json!({ "n": n }))
}

/// A store on `table` with its own pool.
async fn open(table: &str, change_feed: bool) -> PostgresStore {
    PostgresStore::builder()
        .table(table)
        .change_feed(change_feed)
        .connect(&url())
        .await
        .unwrap()
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
    let store = open(&table, false).await;
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
        outcome.outcomes[0],
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
    let recorded: Vec<i64> = sqlx::query_scalar(
        "SELECT version FROM ledger_migrations WHERE store = $1 ORDER BY version",
    )
    .bind(&table)
    .fetch_all(stores[0].pool())
    .await
    .unwrap();
    assert_eq!(
        recorded,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>(),
        "each migration recorded once"
    );
}

#[tokio::test]
async fn notify_wakes_a_subscription_long_before_its_poll_interval() {
    let table = fresh_table();
    let reader = open(&table, false).await;
    // A second handle (its own pool) stands in for another process: no in-process signal.
    let writer = open(&table, false).await;
    let slow_polling = SubscribeOptions::new().poll_interval(Duration::from_secs(60));
    let (counted_reader, counted) = ReadCounter::wrap(&reader);
    let stream = Stream::<serde_json::Value>::new(&counted_reader, "orders").unwrap();
    let mut live = stream.subscribe(0, slow_polling);
    let first = tokio::spawn(async move { live.next().await });
    // The subscription's first read found nothing: only a wake-up can bring the entry now.
    counted.reads_reach(1).await;
    writer
        .append("orders", vec![input(7)], ExpectedVersion::Any)
        .await
        .unwrap();
    let entry = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("NOTIFY woke the subscription within 5 s (polling alone would take 60 s)")
        .expect("subscription task ran")
        .expect("subscription is open")
        .expect("entry decodes");
    assert_eq!(entry.payload, json!({ "n": 7 }));
}

#[tokio::test]
async fn subscriptions_resume_after_their_connections_are_killed() {
    let table = fresh_table();
    let name = format!("ledger-kill-{table}");
    let reader = named_store(&table, &name, true).await;
    let writer = open(&table, true).await;
    let fast = SubscribeOptions::new().poll_interval(Duration::from_millis(50));
    let stream = Stream::<serde_json::Value>::new(&reader, "s").unwrap();
    let mut entries = stream.subscribe(0, fast);
    let mut feed = reader.subscribe_feed(None, fast);

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
    let store = open(&fresh_table(), false).await;
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
    let notes = |entries: Vec<ledger_core::Entry>| -> Vec<String> {
        entries
            .into_iter()
            .map(|e| e.payload["note"].as_str().unwrap().to_owned())
            .collect()
    };
    let words = SearchQuery::full_text;
    let front = store
        .search(Some("a"), words("front desk"), &ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(notes(front), ["Parcel delivered to the FRONT desk"]);
    let parcels = store
        .search(None, words("parcel"), &ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(parcels.len(), 3, "across streams");
    let not_lost = store
        .search(Some("a"), words("parcel -lost"), &ReadOptions::new())
        .await
        .unwrap();
    assert_eq!(notes(not_lost), ["Parcel delivered to the FRONT desk"]);
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

/// Server connections whose `application_name` is `name`.
async fn connections_named(name: &str) -> i64 {
    let admin = PostgresStore::builder()
        .listen(false)
        .connect(&url())
        .await
        .unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(name)
            .fetch_one(admin.pool())
            .await
            .unwrap();
    admin.close().await.unwrap();
    n
}

/// `url()` with `application_name` set, so a test can find the store's connections.
fn named_url(name: &str) -> String {
    let base = url();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}application_name={name}")
}

#[tokio::test]
async fn the_listener_takes_no_connection_from_the_pool() {
    let store = PostgresStore::builder()
        .table(fresh_table())
        .max_connections(1)
        .connect(&url())
        .await
        .unwrap();
    let appended = tokio::time::timeout(
        Duration::from_secs(10),
        store.append("s", vec![input(1)], ExpectedVersion::Any),
    )
    .await
    .expect("an append on a pool of one returns: the listener holds a connection of its own");
    appended.unwrap();

    // Stores sharing a caller's pool of one all keep working.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url())
        .await
        .unwrap();
    let table = fresh_table();
    let mut stores = Vec::new();
    for _ in 0..3 {
        let opened = PostgresStore::builder()
            .table(&table)
            .with_pool(pool.clone());
        let store = tokio::time::timeout(Duration::from_secs(10), opened)
            .await
            .expect("opening on a shared pool of one returns")
            .unwrap();
        stores.push(store);
    }
    for (n, store) in stores.iter().enumerate() {
        tokio::time::timeout(
            Duration::from_secs(10),
            store.append("s", vec![input(n as u64)], ExpectedVersion::Any),
        )
        .await
        .expect("an append through a shared pool of one returns")
        .unwrap();
    }
    assert_eq!(stores[0].count("s").await.unwrap(), 3);
}

#[tokio::test]
async fn close_releases_the_listener_and_the_pool() {
    let name = format!("ledger-close-{}", fresh_table());
    let store = PostgresStore::builder()
        .table(fresh_table())
        .change_feed(true)
        .connect(&named_url(&name))
        .await
        .unwrap();
    store
        .append("s", vec![input(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    // The listener connects in the background: wait until it has.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while connections_named(&name).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool and the listener connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = connections_named(&name).await;
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} connections of the closed store are still open after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn serialization_failures_in_a_callers_transaction_are_conflicts() {
    for (isolation, change_feed) in [("SERIALIZABLE", false), ("REPEATABLE READ", true)] {
        let store = PostgresStore::builder()
            .table(fresh_table())
            .change_feed(change_feed)
            .connect(&url())
            .await
            .unwrap();
        let begin = format!("BEGIN ISOLATION LEVEL {isolation}");
        let mut first = store.pool().begin_with(begin.clone()).await.unwrap();
        let mut second = store.pool().begin_with(begin).await.unwrap();
        // Each transaction's snapshot is taken before the other commits.
        sqlx::query("SELECT 1").execute(&mut *second).await.unwrap();
        store
            .append_in(&mut first, "s", vec![input(1)], ExpectedVersion::Any)
            .await
            .unwrap();
        let loser = {
            let store = store.clone();
            tokio::spawn(async move {
                let outcome = store
                    .append_in(&mut second, "s", vec![input(2)], ExpectedVersion::Any)
                    .await;
                drop(second);
                outcome
            })
        };
        first.commit().await.unwrap();
        let error = tokio::time::timeout(Duration::from_secs(10), loser)
            .await
            .expect("the second append returns once the first commits")
            .unwrap()
            .expect_err("the later transaction cannot see the first one's write");
        assert!(error.is_conflict(), "{isolation}: a conflict: {error}");
        assert!(error.is_transient(), "{isolation}: worth retrying: {error}");
        assert!(
            matches!(
                error,
                Error::Backend {
                    kind: BackendErrorKind::Serialization,
                    ..
                }
            ),
            "{isolation}: {error:?}"
        );
        assert_eq!(
            store.count("s").await.unwrap(),
            1,
            "{isolation}: one append landed"
        );
    }
}

#[tokio::test]
async fn caller_transactions_appending_to_several_streams_with_the_feed_on_do_not_deadlock() {
    let store = PostgresStore::builder()
        .table(fresh_table())
        .change_feed(true)
        .connect(&url())
        .await
        .unwrap();
    let mut first = store.pool().begin().await.unwrap();
    store
        .append_in(&mut first, "a", vec![input(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    let second = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.pool().begin().await.unwrap();
            store
                .append_in(&mut tx, "b", vec![input(2)], ExpectedVersion::Any)
                .await?;
            tx.commit()
                .await
                .map_err(|e| Error::backend(BackendErrorKind::Other, e))
        })
    };
    // Let the second transaction reach its wait for the first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .append_in(&mut first, "b", vec![input(3)], ExpectedVersion::Any)
        .await
        .expect("the first transaction appends to b while the second waits");
    first.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second transaction finishes")
        .unwrap()
        .expect("the second transaction's append succeeds");
    let versions: Vec<u64> = store
        .read("b", &ReadOptions::new())
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2]);
}

#[tokio::test]
async fn rename_onto_a_name_left_at_version_0_by_a_failed_append_succeeds() {
    let table = fresh_table();
    let store = open(&table, false).await;
    store
        .append("from", vec![input(1), input(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    // An append that fails inside a transaction the caller then commits leaves the target's
    // lock row at version 0, holding no entries.
    let mut tx = store.pool().begin().await.unwrap();
    let failed = store
        .append_in(&mut tx, "to", vec![input(9)], ExpectedVersion::Exact(5))
        .await;
    assert!(failed.unwrap_err().is_conflict());
    tx.commit().await.unwrap();
    let rows: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM \"{table}_streams\" WHERE stream = 'to' AND version = 0"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(rows, 1, "the version-0 row exists");
    store
        .rename_stream("from", "to")
        .await
        .expect("the name holds no stream");
    let stat = store.stat("to").await.unwrap();
    assert_eq!((stat.count, stat.last_version), (2, 2));
}

#[tokio::test]
async fn ensure_search_index_rebuilds_an_invalid_index() {
    let table = fresh_table();
    let store = open(&table, false).await;
    store.ensure_search_index().await.unwrap();
    let index = format!("\"{table}_fts\"");
    let valid = async || -> bool {
        sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)")
            .bind(&index)
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    assert!(valid().await, "built valid");
    // What a failed or interrupted CREATE INDEX CONCURRENTLY leaves behind.
    sqlx::query("UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass($1)")
        .bind(&index)
        .execute(store.pool())
        .await
        .unwrap();
    assert!(!valid().await, "marked invalid");
    store.ensure_search_index().await.unwrap();
    assert!(valid().await, "rebuilt valid");
}

#[tokio::test]
async fn a_store_migrated_by_a_newer_release_is_refused() {
    let table = fresh_table();
    let store = open(&table, false).await;
    sqlx::query("INSERT INTO ledger_migrations (store, version, description) VALUES ($1, $2, 'a later release')")
        .bind(&table)
        .bind(SCHEMA_VERSION + 1)
        .execute(store.pool())
        .await
        .unwrap();
    match PostgresStore::builder().table(&table).connect(&url()).await {
        Err(Error::IncompatibleSchema {
            store,
            found,
            known,
        }) => {
            assert_eq!(
                (store, found, known),
                (table, SCHEMA_VERSION + 1, SCHEMA_VERSION)
            );
        }
        other => panic!("expected IncompatibleSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn a_corrupt_entry_ends_a_subscription_with_an_error_it_can_see() {
    let table = fresh_table();
    let store = open(&table, false).await;
    store
        .append("s", vec![input(1), input(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    sqlx::query(&format!(
        "UPDATE \"{table}\" SET payload_exact = 'not json' WHERE version = 2"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let fast = SubscribeOptions::new().poll_interval(Duration::from_millis(20));
    assert_ends_with_corrupt_data(&mut store.subscribe("s", 0, fast)).await;
}

/// Runs `sql` statements in order on `pool`.
async fn run_all(pool: &sqlx::PgPool, statements: &[String]) {
    for statement in statements {
        sqlx::query(statement).execute(pool).await.unwrap();
    }
}

#[tokio::test]
async fn a_feed_of_schema_version_1_migrates_keeping_its_records_and_positions() {
    let table = fresh_table();
    let store = open(&table, true).await;
    store
        .append("s", vec![input(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    let entry = store
        .read("s", &ReadOptions::new())
        .await
        .unwrap()
        .remove(0);
    // Put the feed back as schema version 1 kept it: whole mutations, positions from a counter
    // row (here at 7, past a rolled-back position), no sequence.
    let legacy = json!({"type": "append", "entries": [entry]}).to_string();
    let trim = json!({"type": "trim", "up_to": 0, "deleted": 0}).to_string();
    run_all(
        store.pool(),
        &[
            format!(r#"DELETE FROM "{table}_feed""#),
            format!(r#"ALTER TABLE "{table}_feed" DROP COLUMN ids, DROP COLUMN version"#),
            format!(r#"ALTER TABLE "{table}_feed" ALTER COLUMN mutation SET NOT NULL"#),
            format!(r#"DROP SEQUENCE "{table}_feed_pos""#),
            format!(
                r#"CREATE TABLE "{table}_feed_head" (
                    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
                    position BIGINT NOT NULL)"#
            ),
            format!(r#"INSERT INTO "{table}_feed_head" (position) VALUES (7)"#),
            format!(
                r#"INSERT INTO "{table}_feed" (position, stream, mutation)
                   VALUES (5, 's', '{legacy}'), (7, 's', '{trim}')"#
            ),
            format!("DELETE FROM ledger_migrations WHERE store = '{table}' AND version > 1"),
        ],
    )
    .await;
    store.close().await.unwrap();

    let store = open(&table, true).await;
    store
        .append("s", vec![input(2)], ExpectedVersion::Any)
        .await
        .unwrap();
    let records = store.read_feed(None, 10).await.unwrap();
    let positions: Vec<u64> = records.iter().map(|r| r.position).collect();
    assert_eq!(positions, [5, 7, 8], "positions continue after the counter");
    match &records[0].mutation {
        ledger_core::Mutation::Append { entries, .. } => {
            assert_eq!(entries.len(), 1, "the older record keeps its copied entry");
            assert_eq!(entries[0].payload, json!({ "n": 1 }));
        }
        other => panic!("expected the older append, got {other:?}"),
    }
    match &records[2].mutation {
        ledger_core::Mutation::Append { entries, version } => {
            assert_eq!((entries.len(), *version), (1, 2), "the new append, joined");
            assert_eq!(entries[0].payload, json!({ "n": 2 }));
        }
        other => panic!("expected the new append, got {other:?}"),
    }
    let head: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("{table}_feed_head"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(head, None, "the counter row's table is gone");
}

#[tokio::test]
async fn feed_readers_are_not_held_back_by_long_transactions_elsewhere() {
    let store = open(&fresh_table(), true).await;
    // A feed writer of another store and a transaction in another database, both left open.
    let other = open(&fresh_table(), true).await;
    let mut other_tx = other.pool().begin().await.unwrap();
    other
        .append_in(
            &mut other_tx,
            "elsewhere",
            vec![input(0)],
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let mut options: PgConnectOptions = url().parse().unwrap();
    options = options.database("template1");
    let other_db = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let mut other_db_tx = other_db.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *other_db_tx)
        .await
        .unwrap();

    store
        .append("s", vec![input(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    let records = store.read_feed(None, 10).await.unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| r.stream.as_str())
            .collect::<Vec<_>>(),
        ["s"],
        "the record is read while the other transactions are still open"
    );
    let mut live = store.subscribe_feed(None, SubscribeOptions::new());
    let delivered = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .expect("a subscriber delivers it too")
        .unwrap()
        .unwrap();
    assert_eq!(delivered.position, records[0].position);

    // Both transactions were open all along: they commit only now.
    other_tx.commit().await.unwrap();
    other_db_tx.commit().await.unwrap();
    assert_eq!(other.read_feed(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_feed_writer_that_rolls_back_leaves_a_hole_readers_pass() {
    let store = open(&fresh_table(), true).await;
    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_in(&mut tx, "rolled-back", vec![input(0)], ExpectedVersion::Any)
        .await
        .unwrap();
    store
        .append("kept", vec![input(1)], ExpectedVersion::Any)
        .await
        .unwrap();
    assert!(
        store.read_feed(None, 10).await.unwrap().is_empty(),
        "the later record is held back while the first writer is open"
    );
    tx.rollback().await.unwrap();
    let records = store.read_feed(None, 10).await.unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| r.stream.as_str())
            .collect::<Vec<_>>(),
        ["kept"],
        "the rolled-back writer's position is passed"
    );
    assert!(records[0].position > 1, "its position follows the hole");
}

#[tokio::test]
async fn append_in_wakes_other_processes_when_the_caller_commits() {
    let table = fresh_table();
    let reader = open(&table, false).await;
    let writer = open(&table, false).await;
    let slow_polling = SubscribeOptions::new().poll_interval(Duration::from_secs(60));
    let (counted_reader, counted) = ReadCounter::wrap(&reader);
    let stream = Stream::<serde_json::Value>::new(&counted_reader, "orders").unwrap();
    let mut live = stream.subscribe(0, slow_polling);
    let first = tokio::spawn(async move { live.next().await });
    counted.reads_reach(1).await;
    let mut tx = writer.pool().begin().await.unwrap();
    writer
        .append_in(&mut tx, "orders", vec![input(8)], ExpectedVersion::Any)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let entry = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("the caller's COMMIT woke the subscription within 5 s (polling takes 60 s)")
        .expect("subscription task ran")
        .expect("subscription is open")
        .expect("entry decodes");
    assert_eq!(entry.payload, json!({ "n": 8 }));
}
