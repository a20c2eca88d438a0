//! The bridge: PostgreSQL → SQLite and SQLite → PostgreSQL, against a raw copy of the same rows
//! (one SELECT per page from the source's table, one multi-row INSERT per page into a table of
//! the same columns and the indexes of the other baselines' event tables), and the lag of a
//! running bridge under a steady write load.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_bridge::{Bridge, BridgeOptions};
use ledger_core::{ExpectedVersion, Store};
use ledger_postgres::PostgresStore;
use ledger_sqlite::SqliteStore;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, QueryBuilder, Row, Sqlite, SqlitePool};

use crate::report::{Measurement, Report, Row as ReportRow};
use crate::sqlite::Scratch;
use crate::workload::{Result, in_parallel, input, median, rate};

/// Records per page, for the bridge and the raw copy alike.
const PAGE: u32 = 500;
const STREAMS: usize = 50;

/// How many single-entry appends (one feed record each) are copied.
pub struct BridgeSizes {
    pub mutations: usize,
    pub repeats: usize,
    /// Appends per second of the steady load, and for how long.
    pub load_rate: u32,
    pub load_for: Duration,
}

/// One row as both tables hold it.
struct CopyRow {
    id: i64,
    stream: String,
    version: i64,
    payload: String,
    order_key: Option<String>,
    dedup_key: Option<String>,
    schema_version: i64,
    metadata: String,
    tags: String,
    annotations: String,
    created_at: i64,
    updated_at: Option<i64>,
}

const SQLITE_COPY: &str = r#"CREATE TABLE copy (
    id INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
    payload TEXT NOT NULL, order_key TEXT, dedup_key TEXT, schema_version INTEGER NOT NULL,
    metadata TEXT NOT NULL, tags TEXT NOT NULL, annotations TEXT NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER, UNIQUE (stream, version));
CREATE INDEX copy_stream_id ON copy (stream, id);
CREATE UNIQUE INDEX copy_dedup ON copy (stream, dedup_key) WHERE dedup_key IS NOT NULL"#;

fn pg_copy(table: &str) -> String {
    format!(
        r#"CREATE TABLE "{table}" (
    id BIGINT PRIMARY KEY, stream TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL,
    payload JSONB NOT NULL, order_key TEXT, dedup_key TEXT, schema_version BIGINT NOT NULL,
    metadata JSONB NOT NULL, tags JSONB NOT NULL, annotations JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ, UNIQUE (stream, version));
CREATE INDEX ON "{table}" (stream, id);
CREATE UNIQUE INDEX ON "{table}" (stream, dedup_key) WHERE dedup_key IS NOT NULL"#
    )
}

async fn populate(store: &Store, mutations: usize) -> Result<()> {
    let store = store.clone();
    in_parallel(4, mutations, move |_, n| {
        let store = store.clone();
        async move {
            let stream = format!("account-{:02}", n % STREAMS);
            store
                .append(&stream, vec![input(n)], ExpectedVersion::Any)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

async fn pg_page(pool: &PgPool, table: &str, after: i64) -> Result<Vec<CopyRow>> {
    let sql = format!(
        r#"SELECT id, stream, version, payload::text, order_key, dedup_key, schema_version,
                  metadata::text, tags::text, annotations::text,
                  (extract(epoch FROM created_at) * 1000000)::bigint,
                  (extract(epoch FROM updated_at) * 1000000)::bigint
           FROM "{table}" WHERE id > $1 ORDER BY id LIMIT $2"#
    );
    let rows = sqlx::query(&sql)
        .bind(after)
        .bind(i64::from(PAGE))
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| copy_row(r)).collect()
}

async fn sqlite_page(pool: &SqlitePool, table: &str, after: i64) -> Result<Vec<CopyRow>> {
    let sql = format!(
        r#"SELECT id, stream, version, payload, order_key, dedup_key, schema_version, metadata,
                  tags, annotations, created_at, updated_at
           FROM "{table}" WHERE id > ? ORDER BY id LIMIT ?"#
    );
    let rows = sqlx::query(&sql)
        .bind(after)
        .bind(i64::from(PAGE))
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| copy_row(r)).collect()
}

fn copy_row<R: Row>(r: &R) -> Result<CopyRow>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database>,
{
    Ok(CopyRow {
        id: r.try_get(0)?,
        stream: r.try_get(1)?,
        version: r.try_get(2)?,
        payload: r.try_get(3)?,
        order_key: r.try_get(4)?,
        dedup_key: r.try_get(5)?,
        schema_version: r.try_get(6)?,
        metadata: r.try_get(7)?,
        tags: r.try_get(8)?,
        annotations: r.try_get(9)?,
        created_at: r.try_get(10)?,
        updated_at: r.try_get(11)?,
    })
}

async fn sqlite_insert(pool: &SqlitePool, rows: &[CopyRow]) -> Result<()> {
    let mut tx = pool.begin().await?;
    // SQLite takes at most 32766 bound values a statement: 12 columns × 500 rows fit.
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO copy (id, stream, version, payload, order_key, dedup_key, schema_version, \
         metadata, tags, annotations, created_at, updated_at) ",
    );
    q.push_values(rows, |mut b, r| {
        b.push_bind(r.id)
            .push_bind(&r.stream)
            .push_bind(r.version)
            .push_bind(&r.payload)
            .push_bind(&r.order_key)
            .push_bind(&r.dedup_key)
            .push_bind(r.schema_version)
            .push_bind(&r.metadata)
            .push_bind(&r.tags)
            .push_bind(&r.annotations)
            .push_bind(r.created_at)
            .push_bind(r.updated_at);
    });
    q.build().execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn pg_insert(pool: &PgPool, table: &str, rows: &[CopyRow]) -> Result<()> {
    let sql = format!(
        r#"INSERT INTO "{table}" SELECT i, s, v, p::jsonb, o, d, sv, m::jsonb, t::jsonb, a::jsonb,
                  to_timestamp(c / 1000000.0), to_timestamp(u / 1000000.0)
           FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                       $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[],
                       $11::bigint[], $12::bigint[])
                AS x(i, s, v, p, o, d, sv, m, t, a, c, u)"#
    );
    let col = |f: fn(&CopyRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(&sql)
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(col(|r| r.stream.clone()))
        .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(col(|r| r.payload.clone()))
        .bind(rows.iter().map(|r| r.order_key.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.dedup_key.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.schema_version).collect::<Vec<_>>())
        .bind(col(|r| r.metadata.clone()))
        .bind(col(|r| r.tags.clone()))
        .bind(col(|r| r.annotations.clone()))
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    Ok(())
}

/// The raw copy: page after page read from the source's table and written to the copy.
async fn raw_copy<R, W>(read: R, write: W) -> Result<usize>
where
    R: AsyncFn(i64) -> Result<Vec<CopyRow>>,
    W: AsyncFn(&[CopyRow]) -> Result<()>,
{
    let (mut after, mut copied) = (0, 0);
    loop {
        let page = read(after).await?;
        let Some(last) = page.last() else {
            return Ok(copied);
        };
        after = last.id;
        write(&page).await?;
        copied += page.len();
        if page.len() < PAGE as usize {
            return Ok(copied);
        }
    }
}

/// Records per second of one bridge run from `source` into `sink`.
async fn bridged(source: &Store, sink: &Store) -> Result<f64> {
    let options = BridgeOptions::new("bench").batch(PAGE);
    let bridge = Bridge::new(source, sink, options)?;
    let started = Instant::now();
    let stats = bridge.run_once().await?;
    Ok(rate(stats.applied as usize, started.elapsed()))
}

pub async fn run(pg_url: &str, sizes: BridgeSizes, report: &mut Report) -> Result<()> {
    let pg = PgPoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect(pg_url)
        .await?;
    let fresh = |kind: &str| format!("bench_bridge_{kind}_{}", fastrand::u32(..));
    let mutations = sizes.mutations;

    // PostgreSQL → SQLite.
    let source: Store = PostgresStore::builder()
        .table(fresh("source"))
        .change_feed(true)
        .connect(pg_url)
        .await?
        .into();
    populate(&source, mutations).await?;
    let (mut raw, mut led) = (Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        let scratch = Scratch::new("bridge-raw");
        let copy = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(crate::sqlite::connect_options(&scratch.db()))
            .await?;
        sqlx::raw_sql(SQLITE_COPY).execute(&copy).await?;
        let started = Instant::now();
        let table = source.name().to_owned();
        let copied = raw_copy(
            async |after| pg_page(&pg, &table, after).await,
            async |rows| sqlite_insert(&copy, rows).await,
        )
        .await?;
        assert_eq!(copied, mutations, "the raw copy copies every row");
        raw.push(rate(copied, started.elapsed()));

        let scratch = Scratch::new("bridge-ledger");
        let sink: Store = SqliteStore::open(scratch.db()).await?.into();
        led.push(bridged(&source, &sink).await?);
    }
    report.row(ReportRow {
        backend: "bridge",
        workload: format!("PostgreSQL → SQLite, {mutations} appends, pages of {PAGE}"),
        baseline: "1 SELECT per page from the source table, 1 multi-row INSERT per page".into(),
        raw_eps: median(raw),
        ledger_eps: median(led),
        target: Some(0.5),
    });

    // SQLite → PostgreSQL.
    let scratch = Scratch::new("bridge-source");
    let source: Store = SqliteStore::builder()
        .change_feed(true)
        .open(scratch.db())
        .await?
        .into();
    populate(&source, mutations).await?;
    let source_pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(crate::sqlite::connect_options(&scratch.db()))
        .await?;
    let (mut raw, mut led) = (Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        let table = fresh("copy");
        sqlx::raw_sql(&pg_copy(&table)).execute(&pg).await?;
        let started = Instant::now();
        let name = source.name().to_owned();
        let copied = raw_copy(
            async |after| sqlite_page(&source_pool, &name, after).await,
            async |rows| pg_insert(&pg, &table, rows).await,
        )
        .await?;
        assert_eq!(copied, mutations, "the raw copy copies every row");
        raw.push(rate(copied, started.elapsed()));

        let sink: Store = PostgresStore::builder()
            .table(fresh("sink"))
            .connect(pg_url)
            .await?
            .into();
        led.push(bridged(&source, &sink).await?);
    }
    report.row(ReportRow {
        backend: "bridge",
        workload: format!("SQLite → PostgreSQL, {mutations} appends, pages of {PAGE}"),
        baseline: "1 SELECT per page from the source table, 1 multi-row INSERT (unnest) per page"
            .into(),
        raw_eps: median(raw),
        ledger_eps: median(led),
        target: Some(0.5),
    });

    // Lag of a running bridge (default options) under a steady load on the source.
    let source: Store = PostgresStore::builder()
        .table(fresh("load"))
        .change_feed(true)
        .connect(pg_url)
        .await?
        .into();
    let scratch = Scratch::new("bridge-lag");
    let sink: Store = SqliteStore::open(scratch.db()).await?.into();
    let lags = lag(&source, &sink, &sizes).await?;
    report.measurement(Measurement {
        backend: "bridge",
        what: format!(
            "PostgreSQL → SQLite lag, {} appends/s for {} s (append called → applied in the sink)",
            sizes.load_rate,
            sizes.load_for.as_secs()
        ),
        value: lags,
    });
    Ok(())
}

/// Appends at a steady rate while a started bridge follows; returns the lag's median, 99th
/// percentile and maximum.
async fn lag(source: &Store, sink: &Store, sizes: &BridgeSizes) -> Result<String> {
    let bridge = Bridge::new(source, sink, BridgeOptions::new("lag"))?;
    let running = bridge.start()?;
    let appended: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    let mut lags = Vec::new();
    let mut progress = bridge.progress();
    let writer = {
        let (source, appended) = (source.clone(), appended.clone());
        let (rate, total) = (
            sizes.load_rate,
            (sizes.load_rate as f64 * sizes.load_for.as_secs_f64()) as usize,
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
            for n in 0..total {
                tick.tick().await;
                // One writer on a fresh stream: append n is version n + 1.
                appended
                    .lock()
                    .expect("lock")
                    .insert(n as u64 + 1, Instant::now());
                source
                    .append("load", vec![input(n)], ExpectedVersion::Any)
                    .await?;
            }
            Ok::<_, ledger_core::Error>(total as u64)
        })
    };
    let mut seen = 0;
    let total = (sizes.load_rate as f64 * sizes.load_for.as_secs_f64()) as u64;
    while seen < total {
        tokio::time::timeout(Duration::from_secs(30), progress.changed()).await??;
        let version = sink.stat("load").await?.last_version;
        let now = Instant::now();
        if version <= seen {
            continue;
        }
        let times = appended.lock().expect("lock");
        for (_, at) in times.range(seen + 1..=version) {
            lags.push(now.duration_since(*at).as_secs_f64() * 1000.0);
        }
        seen = seen.max(version);
    }
    writer.await??;
    running.stop().await?;
    lags.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    Ok(format!(
        "median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    ))
}
