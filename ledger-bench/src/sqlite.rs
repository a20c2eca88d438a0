//! SQLite: ledger's `SqliteStore` against hand-written sqlx statements on the same schema.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ledger_core::ExpectedVersion;
use ledger_sqlite::SqliteStore;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::Sizes;
use crate::report::{Report, Row as ReportRow};
use crate::workload::{
    RawEntry, RawEvent, Result, cursor_reads, dedup_key, in_parallel, input, median, medians,
    metadata, payload, rate, read_raw_pages, system, whole_stream_reads,
};

/// The baseline's table: the columns and indexes a careful hand-written event table has.
const RAW_SCHEMA: &str = r#"
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, version INTEGER NOT NULL,
    payload TEXT NOT NULL, order_key TEXT, dedup_key TEXT, schema_version INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}', tags TEXT NOT NULL DEFAULT '[]',
    annotations TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL, updated_at INTEGER,
    UNIQUE (stream, version));
CREATE INDEX events_stream_id ON events (stream, id);
CREATE UNIQUE INDEX events_dedup ON events (stream, dedup_key) WHERE dedup_key IS NOT NULL;
"#;

const INSERT: &str = "INSERT INTO events (stream, version, payload, dedup_key, schema_version, \
                      metadata, created_at) ";

pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
}

async fn raw_pool(path: &Path, connections: u32) -> Result<SqlitePool> {
    let pool = SqlitePoolOptions::new()
        .max_connections(connections)
        .test_before_acquire(false)
        .connect_with(connect_options(path))
        .await?;
    sqlx::raw_sql(RAW_SCHEMA).execute(&pool).await?;
    Ok(pool)
}

pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// A new directory (never a reused path: SQLite keys file state by inode in-process).
    pub(crate) fn new(name: &str) -> Self {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ledger-bench-{}-{name}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        Scratch(dir)
    }
    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("bench.db")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

async fn raw_single(sizes: Sizes) -> Result<f64> {
    let scratch = Scratch::new("raw-single");
    let pool = raw_pool(&scratch.db(), 4).await?;
    let started = Instant::now();
    for n in 0..sizes.single_appends {
        sqlx::query(&format!("{INSERT} VALUES (?, ?, ?, ?, 1, ?, ?)"))
            .bind(format!("s-{:03}", n % 100))
            .bind((n / 100 + 1) as i64)
            .bind(serde_json::to_string(&payload(n))?)
            .bind(dedup_key(n))
            .bind(serde_json::to_string(&metadata(n))?)
            .bind(now_micros())
            .execute(&pool)
            .await?;
    }
    let measured = rate(sizes.single_appends, started.elapsed());
    pool.close().await;
    Ok(measured)
}

async fn ledger_single(sizes: Sizes) -> Result<f64> {
    let scratch = Scratch::new("ledger-single");
    let store = SqliteStore::open(scratch.db()).await?;
    let started = Instant::now();
    for n in 0..sizes.single_appends {
        let stream = format!("s-{:03}", n % 100);
        store
            .append(&stream, vec![input(n)], ExpectedVersion::Any)
            .await?;
    }
    Ok(rate(sizes.single_appends, started.elapsed()))
}

/// Stream of batch `b`: a new one per batch, or round-robin over `streams` existing ones.
fn batch_stream(b: usize, streams: Option<usize>) -> String {
    format!("b-{:05}", streams.map_or(b, |n| b % n))
}

/// Batched appends: `writers` tasks, each batch to a new stream (`streams` None) or round-robin
/// over that many existing ones (one writer only: the baseline knows each stream's version).
async fn raw_batched(sizes: Sizes, streams: Option<usize>, writers: usize) -> Result<f64> {
    let scratch = Scratch::new("raw-batched");
    // One connection per writer, plus one, as a hand-written importer would size its pool.
    let pool = raw_pool(&scratch.db(), writers as u32 + 1).await?;
    let (batch, task_pool) = (sizes.batch, pool.clone());
    let elapsed = in_parallel(writers, sizes.batches, move |_, b| {
        let pool = task_pool.clone();
        async move {
            let stream = batch_stream(b, streams);
            let base = streams.map_or(0, |n| (b / n) * batch);
            let rows = (0..batch)
                .map(|i| {
                    let n = b * batch + i;
                    Ok((
                        i,
                        serde_json::to_string(&payload(n))?,
                        serde_json::to_string(&metadata(n))?,
                    ))
                })
                .collect::<Result<Vec<(usize, String, String)>>>()?;
            let created_at = now_micros();
            let mut q = QueryBuilder::<Sqlite>::new(INSERT);
            q.push_values(&rows, |mut r, (i, p, m)| {
                r.push_bind(&stream)
                    .push_bind((base + i + 1) as i64)
                    .push_bind(p)
                    .push_bind(dedup_key(b * batch + i))
                    .push_bind(1i64)
                    .push_bind(m)
                    .push_bind(created_at);
            });
            q.build().execute(&pool).await?;
            Ok(())
        }
    })
    .await?;
    pool.close().await;
    Ok(rate(sizes.batches * sizes.batch, elapsed))
}

async fn ledger_batched(
    sizes: Sizes,
    streams: Option<usize>,
    writers: usize,
    change_feed: bool,
) -> Result<f64> {
    let scratch = Scratch::new("ledger-batched");
    let store = SqliteStore::builder()
        .change_feed(change_feed)
        .open(scratch.db())
        .await?;
    let batch = sizes.batch;
    let elapsed = in_parallel(writers, sizes.batches, move |_, b| {
        let store = store.clone();
        async move {
            let inputs = (0..batch).map(|i| input(b * batch + i)).collect();
            let expected = match streams {
                None => ExpectedVersion::NoStream,
                Some(n) => ExpectedVersion::Exact(((b / n) * batch) as u64),
            };
            store
                .append(&batch_stream(b, streams), inputs, expected)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate(sizes.batches * sizes.batch, elapsed))
}

async fn raw_page(
    pool: &SqlitePool,
    stream: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<RawEntry>> {
    let sql = "SELECT id, stream, version, payload, order_key, dedup_key, schema_version, \
           metadata, tags, annotations, created_at, updated_at FROM ledger_entries \
           WHERE stream = ? AND id > ? ORDER BY id LIMIT ?";
    let rows = sqlx::query(sql)
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
            payload: serde_json::from_str(row.get(3))?,
            order_key: row.get(4),
            dedup_key: row.get(5),
            schema_version: row.get(6),
            metadata: serde_json::from_str(row.get(7))?,
            tags: serde_json::from_str(row.get(8))?,
            annotations: serde_json::from_str(row.get(9))?,
            created_at: DateTime::from_timestamp_micros(row.get(10)).ok_or("bad time")?,
            updated_at: row
                .get::<Option<i64>, _>(11)
                .and_then(DateTime::from_timestamp_micros),
        });
    }
    Ok(page)
}

/// What a raw reader rebuilding state reads of one page: the typed event and its metadata.
async fn raw_event_page(pool: &SqlitePool, after: i64, page: u32) -> Result<Vec<RawEvent>> {
    let sql = "SELECT id, version, payload, metadata, created_at FROM ledger_entries \
           WHERE stream = 'long' AND id > ? ORDER BY id LIMIT ?";
    let rows = sqlx::query(sql)
        .bind(after)
        .bind(i64::from(page))
        .fetch_all(pool)
        .await?;
    let mut page = Vec::with_capacity(rows.len());
    for row in &rows {
        page.push(RawEvent {
            id: row.try_get(0)?,
            version: row.try_get(1)?,
            event: serde_json::from_str(row.try_get(2)?)?,
            metadata: serde_json::from_str(row.try_get(3)?)?,
            created_at: DateTime::from_timestamp_micros(row.try_get(4)?).ok_or("bad time")?,
        });
    }
    Ok(page)
}

async fn sqlite_version() -> Result<String> {
    let pool = SqlitePoolOptions::new().connect("sqlite::memory:").await?;
    Ok(sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&pool)
        .await?)
}

/// Runs every SQLite workload and adds its rows and settings to `report`.
pub async fn run(sizes: Sizes, report: &mut Report) -> Result<()> {
    report.setting(
        "SQLite",
        format!(
            "{} (bundled by libsqlite3-sys), one file per run in the temp dir, journal_mode=WAL, \
         synchronous=NORMAL, busy_timeout 30 s, 4 pooled connections for both systems (plus ledger's write connection)",
            sqlite_version().await?
        ),
    );
    report.setting(
        "machine",
        format!(
            "{} CPUs, {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::env::consts::ARCH
        ),
    );

    let (mut raw, mut led) = (Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        raw.push(raw_single(sizes).await?);
        led.push(ledger_single(sizes).await?);
    }
    report.row(ReportRow {
        backend: "SQLite",
        workload: "append, 1 entry per commit, 1 writer".into(),
        baseline: "1 INSERT per entry (autocommit)".into(),
        raw_eps: median(raw),
        ledger_eps: median(led),
        target: Some(0.8),
    });

    for writers in [1, 4] {
        let [raw, off, on] = medians(
            sizes.repeats,
            &[
                system(|| raw_batched(sizes, None, writers)),
                system(|| ledger_batched(sizes, None, writers, false)),
                system(|| ledger_batched(sizes, None, writers, true)),
            ],
        )
        .await?[..] else {
            unreachable!("three runs")
        };
        let who = match writers {
            1 => "1 writer".to_owned(),
            n => format!("{n} writers"),
        };
        for (ledger_eps, feed) in [(off, ""), (on, ", change feed on")] {
            report.row(ReportRow {
                backend: "SQLite",
                workload: format!("append, batches of {}, {who}{feed}", sizes.batch),
                baseline: "1 multi-row INSERT per batch, same writers (a connection each)".into(),
                raw_eps: raw,
                ledger_eps,
                target: Some(0.8),
            });
        }
    }
    let [raw, led] = medians(
        sizes.repeats,
        &[
            system(|| raw_batched(sizes, Some(10), 1)),
            system(|| ledger_batched(sizes, Some(10), 1, false)),
        ],
    )
    .await?[..] else {
        unreachable!("two runs")
    };
    report.row(ReportRow {
        backend: "SQLite",
        workload: format!(
            "append, batches of {} to 10 existing streams, Exact, 1 writer",
            sizes.batch
        ),
        baseline: "1 multi-row INSERT per batch".into(),
        raw_eps: raw,
        ledger_eps: led,
        target: Some(0.8),
    });

    let scratch = Scratch::new("read");
    let store = SqliteStore::open(scratch.db()).await?;
    for chunk in (0..sizes.read_entries).collect::<Vec<_>>().chunks(5_000) {
        let inputs = chunk.iter().map(|&n| input(n)).collect();
        store.append("big", inputs, ExpectedVersion::Any).await?;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(connect_options(&scratch.db()))
        .await?;
    // Reads come from the database file, not a 300 MB write-ahead log, and both systems start
    // warm: one untimed pass each.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    let (raw, led) = cursor_reads(&store, sizes, async |after| {
        raw_page(&pool, "big", after, sizes.page).await
    })
    .await?;
    report.row(ReportRow {
        backend: "SQLite",
        workload: format!(
            "read {} entries, cursor pages of {}",
            sizes.read_entries, sizes.page
        ),
        baseline: "SELECT … WHERE stream = ? AND id > ? LIMIT, same decoding".into(),
        raw_eps: raw,
        ledger_eps: led,
        target: Some(0.8),
    });

    for chunk in (0..sizes.long.events).collect::<Vec<_>>().chunks(1_000) {
        let inputs = chunk.iter().map(|&n| input(n)).collect();
        store.append("long", inputs, ExpectedVersion::Any).await?;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    whole_stream_reads(
        report,
        "SQLite",
        &store,
        sizes,
        (
            system(|| {
                read_raw_pages(
                    sizes.long,
                    async |after| raw_event_page(&pool, after, sizes.long.page).await,
                    |e| e.id,
                )
            }),
            "SELECT id, version, payload, metadata, created_at … LIMIT, decoded to the typed event",
        ),
        (
            system(|| {
                read_raw_pages(
                    sizes.long,
                    async |after| raw_page(&pool, "long", after, sizes.long.page).await,
                    |e| e.id,
                )
            }),
            "SELECT of every column … LIMIT, same decoding",
        ),
    )
    .await?;
    Ok(())
}
