//! PostgreSQL: ledger's `PostgresStore` against hand-written sqlx statements on the same schema,
//! on the server `cargo xtask bench` starts with PostgreSQL's durable defaults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use ledger_core::{ExpectedVersion, Mutation, SubscribeOptions};
use ledger_postgres::PostgresStore;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use crate::Sizes;
use crate::report::{Measurement, Report, Row as ReportRow};
use crate::workload::{
    ItemAdded, RawEntry, RawEvent, Result, cursor_reads, dedup_key, in_parallel, input, median,
    medians, metadata, payload, rate, read_raw_pages, single_target, system, whole_stream_reads,
};

/// The baseline's table: the columns and indexes a careful hand-written event table has.
fn raw_schema(t: &str) -> String {
    format!(
        r#"CREATE TABLE {t} (
            id BIGSERIAL PRIMARY KEY, stream TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL,
            payload JSONB NOT NULL, order_key TEXT, dedup_key TEXT, schema_version BIGINT NOT NULL,
            metadata JSONB NOT NULL DEFAULT '{{}}', tags JSONB NOT NULL DEFAULT '[]',
            annotations JSONB NOT NULL DEFAULT '{{}}', created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ, UNIQUE (stream, version));
        CREATE INDEX ON {t} (stream, id);
        CREATE UNIQUE INDEX ON {t} (stream, dedup_key) WHERE dedup_key IS NOT NULL"#
    )
}

fn fresh_name(kind: &str) -> String {
    format!("bench_{kind}_{}", fastrand::u32(..))
}

async fn raw_table(pool: &PgPool, kind: &str) -> Result<String> {
    let t = fresh_name(kind);
    sqlx::raw_sql(&raw_schema(&t)).execute(pool).await?;
    Ok(t)
}

async fn ledger_store(url: &str, kind: &str, change_feed: bool) -> Result<PostgresStore> {
    Ok(PostgresStore::builder()
        .table(fresh_name(kind))
        .change_feed(change_feed)
        .connect(url)
        .await?)
}

/// Settles the server between runs so one run's writes do not bill the next.
async fn checkpoint(pool: &PgPool) -> Result<()> {
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

const RAW_INSERT: &str =
    "(stream, version, payload, dedup_key, schema_version, metadata, created_at)";

async fn raw_single(pool: &PgPool, sizes: Sizes, writers: usize) -> Result<f64> {
    let t = raw_table(pool, "raw_single").await?;
    checkpoint(pool).await?;
    let sql: Arc<str> =
        format!("INSERT INTO {t} {RAW_INSERT} VALUES ($1, $2, $3::jsonb, $4, 1, $5::jsonb, $6)")
            .into();
    let pool = pool.clone();
    let elapsed = in_parallel(writers, sizes.single_appends, move |w, n| {
        let (pool, sql) = (pool.clone(), sql.clone());
        async move {
            let (stream, version) = single_target(writers, w, n);
            sqlx::query(&sql)
                .bind(stream)
                .bind(version)
                .bind(serde_json::to_string(&payload(n))?)
                .bind(dedup_key(n))
                .bind(serde_json::to_string(&metadata(n))?)
                .bind(Utc::now())
                .execute(&pool)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate(sizes.single_appends, elapsed))
}

async fn ledger_single(
    url: &str,
    pool: &PgPool,
    sizes: Sizes,
    writers: usize,
    change_feed: bool,
) -> Result<f64> {
    let store = ledger_store(url, "ledger_single", change_feed).await?;
    checkpoint(pool).await?;
    let elapsed = in_parallel(writers, sizes.single_appends, move |w, n| {
        let store = store.clone();
        async move {
            let (stream, _) = single_target(writers, w, n);
            store
                .append(&stream, vec![input(n)], ExpectedVersion::Any)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate(sizes.single_appends, elapsed))
}

/// One multi-row INSERT … SELECT FROM unnest(…) per batch, as a careful hand-written importer.
async fn raw_batched(pool: &PgPool, batch: usize, batches: usize, writers: usize) -> Result<f64> {
    let t = raw_table(pool, "raw_batched").await?;
    checkpoint(pool).await?;
    let sql: Arc<str> = format!(
        "INSERT INTO {t} {RAW_INSERT} SELECT $1, v, p::jsonb, d, 1, m::jsonb, $2 \
         FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[]) AS u(v, p, d, m)"
    )
    .into();
    let pool = pool.clone();
    let elapsed = in_parallel(writers, batches, move |_, b| {
        let (pool, sql) = (pool.clone(), sql.clone());
        async move {
            let ns = (b * batch)..((b + 1) * batch);
            let versions: Vec<i64> = (1..=batch as i64).collect();
            let payloads: Vec<String> = ns.clone().map(|n| payload(n).to_string()).collect();
            let keys: Vec<String> = ns.clone().map(dedup_key).collect();
            let metas = ns
                .map(|n| serde_json::to_string(&metadata(n)))
                .collect::<std::result::Result<Vec<String>, _>>()?;
            sqlx::query(&sql)
                .bind(format!("b-{b:05}"))
                .bind(Utc::now())
                .bind(&versions)
                .bind(&payloads)
                .bind(&keys)
                .bind(&metas)
                .execute(&pool)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate(batches * batch, elapsed))
}

async fn ledger_batched(
    url: &str,
    pool: &PgPool,
    (batch, batches): (usize, usize),
    writers: usize,
    change_feed: bool,
) -> Result<f64> {
    let store = ledger_store(url, "ledger_batched", change_feed).await?;
    checkpoint(pool).await?;
    let elapsed = in_parallel(writers, batches, move |_, b| {
        let store = store.clone();
        async move {
            let inputs = (0..batch).map(|i| input(b * batch + i)).collect();
            store
                .append(&format!("b-{b:05}"), inputs, ExpectedVersion::NoStream)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate(batches * batch, elapsed))
}

/// COPY … FROM STDIN (text format): PostgreSQL's fastest bulk path.
async fn raw_copy(pool: &PgPool, batch: usize, batches: usize) -> Result<f64> {
    let t = raw_table(pool, "raw_copy").await?;
    checkpoint(pool).await?;
    let started = Instant::now();
    for b in 0..batches {
        let created_at = Utc::now().to_rfc3339();
        let mut text = String::with_capacity(batch * 400);
        for i in 0..batch {
            let n = b * batch + i;
            // COPY text format: tab-separated, backslash escapes (payloads hold no tabs).
            let escape = |s: String| s.replace('\\', "\\\\");
            text.push_str(&format!(
                "b-{b:05}\t{}\t{}\t{}\t1\t{}\t{created_at}\n",
                i + 1,
                escape(payload(n).to_string()),
                dedup_key(n),
                escape(serde_json::to_string(&metadata(n))?),
            ));
        }
        let mut conn = pool.acquire().await?;
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {t} (stream, version, payload, dedup_key, schema_version, metadata, created_at) FROM STDIN"
            ))
            .await?;
        copy.send(text.into_bytes()).await?;
        copy.finish().await?;
    }
    Ok(rate(batches * batch, started.elapsed()))
}

async fn raw_page(
    pool: &PgPool,
    table: &str,
    stream: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<RawEntry>> {
    use sqlx::types::Json;
    let sql = format!(
        "SELECT id, stream, version, payload, order_key, dedup_key, schema_version, metadata, \
     tags, annotations, created_at, updated_at FROM \"{table}\" \
     WHERE stream = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(stream)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    // Decoded into a page, as an application (and ledger) holds what it read.
    let mut page = Vec::with_capacity(rows.len());
    for row in &rows {
        page.push(RawEntry {
            id: row.get(0),
            stream: row.get(1),
            version: row.get(2),
            payload: row.get::<Json<Value>, _>(3).0,
            order_key: row.get(4),
            dedup_key: row.get(5),
            schema_version: row.get(6),
            metadata: row.get::<Json<_>, _>(7).0,
            tags: row.get::<Json<_>, _>(8).0,
            annotations: row.get::<Json<_>, _>(9).0,
            created_at: row.get(10),
            updated_at: row.get(11),
        });
    }
    Ok(page)
}

/// What a raw reader rebuilding state reads of one page: the typed event and its metadata.
async fn raw_event_page(
    pool: &PgPool,
    table: &str,
    after: i64,
    page: u32,
) -> Result<Vec<RawEvent>> {
    use sqlx::types::Json;
    let sql = format!(
        "SELECT id, version, payload, metadata, created_at FROM \"{table}\" \
         WHERE stream = 'long' AND id > $1 ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(after)
        .bind(i64::from(page))
        .fetch_all(pool)
        .await?;
    let mut page = Vec::with_capacity(rows.len());
    for row in &rows {
        page.push(RawEvent {
            id: row.try_get(0)?,
            version: row.try_get(1)?,
            event: row.try_get::<Json<ItemAdded>, _>(2)?.0,
            metadata: row.try_get::<Json<_>, _>(3)?.0,
            created_at: row.try_get(4)?,
        });
    }
    Ok(page)
}

/// Catch-up over the change feed, in entries per second, against a raw reader of the same
/// entries in id order, decoded the same way.
async fn feed_catch_up(store: &PostgresStore, pool: &PgPool, entries: usize) -> Result<(f64, f64)> {
    let count = |m: &Mutation| match m {
        Mutation::Append { entries, .. } => entries.len(),
        _ => 0,
    };
    let started = Instant::now();
    let (mut after, mut seen) = (None, 0usize);
    loop {
        let page = store.read_feed(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        seen += page.iter().map(|r| count(&r.mutation)).sum::<usize>();
    }
    assert_eq!(seen, entries, "ledger feed delivered every entry");
    let ledger = rate(seen, started.elapsed());

    let started = Instant::now();
    let (mut after, mut seen) = (0i64, 0usize);
    loop {
        let page = raw_all_page(pool, store.table(), after).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        seen += page.len();
    }
    assert_eq!(seen, entries, "baseline read every entry");
    Ok((rate(seen, started.elapsed()), ledger))
}

/// A page of every stream's entries in id order, as a raw reader tails a table.
async fn raw_all_page(pool: &PgPool, table: &str, after: i64) -> Result<Vec<RawEntry>> {
    use sqlx::types::Json;
    let sql = format!(
        "SELECT id, stream, version, payload, order_key, dedup_key, schema_version, metadata, \
         tags, annotations, created_at, updated_at FROM \"{table}\" WHERE id > $1 \
         ORDER BY id LIMIT 10000"
    );
    let rows = sqlx::query(&sql).bind(after).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(RawEntry {
                id: row.try_get(0)?,
                stream: row.try_get(1)?,
                version: row.try_get(2)?,
                payload: row.try_get::<Json<Value>, _>(3)?.0,
                order_key: row.try_get(4)?,
                dedup_key: row.try_get(5)?,
                schema_version: row.try_get(6)?,
                metadata: row.try_get::<Json<_>, _>(7)?.0,
                tags: row.try_get::<Json<_>, _>(8)?.0,
                annotations: row.try_get::<Json<_>, _>(9)?.0,
                created_at: row.try_get(10)?,
                updated_at: row.try_get(11)?,
            })
        })
        .collect()
}

/// How long a feed subscriber takes to deliver a fresh append: the median of 20, of events
/// `first..first + 20` (new dedup keys, so that each append writes).
async fn feed_latency(store: &PostgresStore, first: usize) -> Result<Duration> {
    let mut after = None;
    while let Some(last) = store.read_feed(after, 10_000).await?.last() {
        after = Some(last.position);
    }
    let options = SubscribeOptions::new().poll_interval(Duration::from_millis(500));
    let mut live = store.subscribe_feed(after, options);
    let mut waits = Vec::new();
    for n in first..first + 20 {
        let started = Instant::now();
        store
            .append("latency", vec![input(n)], ExpectedVersion::Any)
            .await?;
        live.next().await.ok_or("subscription ended")??;
        waits.push(started.elapsed().as_secs_f64());
    }
    Ok(Duration::from_secs_f64(median(waits)))
}

async fn setting(pool: &PgPool, name: &str) -> Result<String> {
    Ok(sqlx::query_scalar(&format!("SHOW {name}"))
        .fetch_one(pool)
        .await?)
}

fn writers_text(writers: usize) -> String {
    match writers {
        1 => "1 writer".to_owned(),
        n => format!("{n} writers"),
    }
}

/// Runs every PostgreSQL workload and adds its rows and settings to `report`.
pub async fn run(url: &str, sizes: Sizes, report: &mut Report) -> Result<()> {
    // Sized for the most writers, and no ping per acquire, like ledger's own pools.
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .connect(url)
        .await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await?;
    let mut settings = Vec::new();
    for name in [
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_buffers",
        "wal_level",
    ] {
        settings.push(format!("{name}={}", setting(&pool, name).await?));
    }
    report.setting(
        "PostgreSQL",
        format!(
            "{version} on 127.0.0.1 (same 2 cores as the client), started by `cargo xtask bench` \
             with durable defaults: {}; a fresh table and a CHECKPOINT before every write run",
            settings.join(", ")
        ),
    );

    for writers in [1, 4, 8] {
        let [raw, off, on] = medians(
            sizes.repeats,
            &[
                system(|| raw_single(&pool, sizes, writers)),
                system(|| ledger_single(url, &pool, sizes, writers, false)),
                system(|| ledger_single(url, &pool, sizes, writers, true)),
            ],
        )
        .await?[..] else {
            unreachable!("three runs")
        };
        for (ledger_eps, feed, target) in [
            (off, "", (writers == 1).then_some(0.8)),
            (on, ", change feed on", (writers == 8).then_some(0.7)),
        ] {
            report.row(ReportRow {
                backend: "PostgreSQL",
                workload: format!(
                    "append, 1 entry per commit, {}{feed}",
                    writers_text(writers)
                ),
                baseline: "1 INSERT per entry (autocommit), same writers".into(),
                raw_eps: raw,
                ledger_eps,
                target,
            });
        }
    }

    for writers in [1, 4, 8] {
        let shape = (sizes.batch, sizes.batches);
        let [raw, off, on] = medians(
            sizes.repeats,
            &[
                system(|| raw_batched(&pool, sizes.batch, sizes.batches, writers)),
                system(|| ledger_batched(url, &pool, shape, writers, false)),
                system(|| ledger_batched(url, &pool, shape, writers, true)),
            ],
        )
        .await?[..] else {
            unreachable!("three runs")
        };
        let target = (writers <= 4).then_some(0.8);
        for (ledger_eps, feed) in [(off, ""), (on, ", change feed on")] {
            report.row(ReportRow {
                backend: "PostgreSQL",
                workload: format!(
                    "append, batches of {}, {}{feed}",
                    sizes.batch,
                    writers_text(writers)
                ),
                baseline: "1 INSERT … SELECT FROM unnest per batch, same writers".into(),
                raw_eps: raw,
                ledger_eps,
                target,
            });
        }
    }

    let (bulk, bulk_batches) = (10_000, sizes.read_entries.min(100_000) / 10_000);
    let (mut raw, mut led) = (Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        raw.push(raw_copy(&pool, bulk, bulk_batches.max(1)).await?);
        led.push(ledger_batched(url, &pool, (bulk, bulk_batches.max(1)), 1, false).await?);
    }
    report.row(ReportRow {
        backend: "PostgreSQL",
        workload: format!("bulk import, batches of {bulk}"),
        baseline: "COPY FROM STDIN (text) per batch".into(),
        raw_eps: median(raw),
        ledger_eps: median(led),
        target: None,
    });

    let store = ledger_store(url, "ledger_read", false).await?;
    for chunk in (0..sizes.read_entries).collect::<Vec<_>>().chunks(10_000) {
        let inputs = chunk.iter().map(|&n| input(n)).collect();
        store.append("big", inputs, ExpectedVersion::Any).await?;
    }
    sqlx::query(&format!("VACUUM ANALYZE \"{}\"", store.table()))
        .execute(&pool)
        .await?;
    // Both systems start warm: one untimed pass each.
    let (raw, led) = cursor_reads(&store, sizes, async |after| {
        raw_page(&pool, store.table(), "big", after, sizes.page).await
    })
    .await?;
    report.row(ReportRow {
        backend: "PostgreSQL",
        workload: format!(
            "read {} entries, cursor pages of {}",
            sizes.read_entries, sizes.page
        ),
        baseline: "SELECT … WHERE stream = $1 AND id > $2 LIMIT, same decoding".into(),
        raw_eps: raw,
        ledger_eps: led,
        target: Some(0.8),
    });

    for chunk in (0..sizes.long.events).collect::<Vec<_>>().chunks(1_000) {
        let inputs = chunk.iter().map(|&n| input(n)).collect();
        store.append("long", inputs, ExpectedVersion::Any).await?;
    }
    sqlx::query(&format!("VACUUM ANALYZE \"{}\"", store.table()))
        .execute(&pool)
        .await?;
    let table = store.table();
    whole_stream_reads(
        report,
        "PostgreSQL",
        &store,
        sizes,
        (
            system(|| {
                read_raw_pages(
                    sizes.long,
                    async |after| raw_event_page(&pool, table, after, sizes.long.page).await,
                    |e| e.id,
                )
            }),
            "SELECT id, version, payload, metadata, created_at … LIMIT, decoded to the typed event",
        ),
        (
            system(|| {
                read_raw_pages(
                    sizes.long,
                    async |after| raw_page(&pool, table, "long", after, sizes.long.page).await,
                    |e| e.id,
                )
            }),
            "SELECT of every column … LIMIT, same decoding",
        ),
    )
    .await?;

    let feed_store = ledger_store(url, "ledger_feed", true).await?;
    let feed_entries = sizes.batches * sizes.batch;
    for b in 0..(feed_entries / 10) {
        let inputs = (0..10).map(|i| input(b * 10 + i)).collect();
        feed_store
            .append(&format!("f-{:03}", b % 100), inputs, ExpectedVersion::Any)
            .await?;
    }
    let (mut raw, mut led) = (Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        let (r, l) = feed_catch_up(&feed_store, &pool, feed_entries).await?;
        raw.push(r);
        led.push(l);
    }
    report.row(ReportRow {
        backend: "PostgreSQL",
        workload: format!("change-feed catch-up, {feed_entries} entries in records of 10"),
        baseline: "SELECT of the same entries in id order, pages of 10000, same decoding".into(),
        raw_eps: median(raw),
        ledger_eps: median(led),
        target: None,
    });

    // Feed readers against long transactions they have nothing to do with: a feed writer of
    // another store and a transaction in another database, both held open for 5 s.
    let quiet = feed_latency(&feed_store, 0).await?;
    let other = ledger_store(url, "ledger_other", true).await?;
    let mut other_tx = other.pool().begin().await?;
    other
        .append_in(&mut other_tx, "held", vec![input(0)], ExpectedVersion::Any)
        .await?;
    let options: PgConnectOptions = url.parse()?;
    let other_db = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.database("template1"))
        .await?;
    let mut other_db_tx = other_db.begin().await?;
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *other_db_tx)
        .await?;
    let held_since = Instant::now();
    let busy = feed_latency(&feed_store, 20).await?;
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(held_since.elapsed())).await;
    let held = held_since.elapsed();
    other_tx.commit().await?;
    other_db_tx.commit().await?;
    for (what, latency) in [
        ("nothing else open".to_owned(), quiet),
        (
            format!(
                "a feed writer of another store and a transaction in another database open for {:.1} s",
                held.as_secs_f64()
            ),
            busy,
        ),
    ] {
        report.measurement(Measurement {
            backend: "PostgreSQL",
            what: format!("append to feed subscriber delivery (median of 20), {what}"),
            value: format!("{:.1} ms", latency.as_secs_f64() * 1e3),
        });
    }
    Ok(())
}

/// A new, empty schema `name` on the server at `url` (dropped first if a crashed run left it):
/// an admin pool, and a URL whose connections use the schema.
pub(crate) async fn fresh_schema(url: &str, name: &str) -> Result<(sqlx::PgPool, String)> {
    let admin = sqlx::PgPool::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .execute(&admin)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&admin)
        .await?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok((
        admin,
        format!("{url}{separator}options=-c%20search_path%3D{name}"),
    ))
}
