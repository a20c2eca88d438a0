//! The log store: ingest through the batched writer (ledger append, change feed, read model)
//! against Bifrost's own write path (one multi-row `INSERT … ON CONFLICT (id) DO NOTHING` per
//! batch of 1000 into a table with the same columns and indexes), and search latency on the
//! loaded store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use ledger_logstore::{
    HistogramKind, Log, LogStatus, LogStore, LogStoreOptions, LogWriter, Order, Pagination,
    SearchFilters, SortBy, TokenUsage, WriterOptions,
};
use serde_json::json;
use sqlx::QueryBuilder;

use crate::report::{Measurement, Report, Row};
use crate::sqlite::Scratch;
use crate::workload::{Result, median, rate};

/// How many logs, and how many times each query runs.
pub struct LogSizes {
    pub logs: usize,
    pub query_runs: usize,
}

const PROVIDERS: [&str; 5] = ["openai", "anthropic", "bedrock", "vertex", "mistral"];
const WRITERS: usize = 4;
/// Rows per raw INSERT, Bifrost's batch.
const RAW_BATCH: usize = 1000;

/// The week the logs fall in.
fn week_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap()
}

/// Log `n` of `total`, spread evenly over the week: 5 providers × 4 models, 90 % success,
/// 8 % error, 2 % processing, latencies 50 ms to 5 s, short messages.
fn log(n: usize, total: usize) -> Log {
    let mut rng = fastrand::Rng::with_seed(n as u64);
    let provider = PROVIDERS[n % 5];
    let model = format!("{provider}-model-{}", (n / 5) % 4);
    let status = match n % 50 {
        0 => LogStatus::Processing,
        1..=4 => LogStatus::Error,
        _ => LogStatus::Success,
    };
    let at = week_start() + chrono::Duration::milliseconds((n as i64) * 604_800_000 / total as i64);
    let mut log = Log::new(
        format!("log-{n:08}"),
        at,
        "chat_completion",
        provider,
        model,
        status,
    );
    if status != LogStatus::Processing {
        log.latency = Some(rng.f64() * 4950.0 + 50.0);
        let prompt = rng.i64(10..2000);
        let completion = rng.i64(1..800);
        log.token_usage = Some(TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            ..TokenUsage::default()
        });
        log.cost = Some((prompt + 3 * completion) as f64 * 2e-6);
    }
    log.selected_key_id = Some(format!("key-{}", n % 7));
    log.metadata
        .insert("team".into(), json!(format!("team-{}", n % 9)));
    log.content.input_history =
        Some(json!([{"role": "user", "content": format!("question {n} about the weather")}]));
    log.content.output_message = Some(json!({"role": "assistant", "content": "a short answer"}));
    log
}

/// Bifrost's `logs` table, as far as these rows fill it, with our read model's indexes.
const RAW_SCHEMA: &[&str] = &[
    "CREATE TABLE raw_logs (id TEXT PRIMARY KEY, ts BIGINT NOT NULL, object_type TEXT NOT NULL, \
     provider TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL, selected_key_id TEXT, \
     latency DOUBLE PRECISION, cost DOUBLE PRECISION, prompt_tokens BIGINT NOT NULL, \
     completion_tokens BIGINT NOT NULL, total_tokens BIGINT NOT NULL, input_history TEXT, \
     output_message TEXT, metadata TEXT, content_summary TEXT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE INDEX raw_logs_ts ON raw_logs (ts)",
    "CREATE INDEX raw_logs_created_at ON raw_logs (created_at)",
    "CREATE INDEX raw_logs_status_ts ON raw_logs (status, ts)",
    "CREATE INDEX raw_logs_provider_model ON raw_logs (provider, model, status, ts)",
    "CREATE INDEX raw_logs_model_ts ON raw_logs (model, ts)",
    "CREATE INDEX raw_logs_latency ON raw_logs (latency)",
    "CREATE INDEX raw_logs_cost ON raw_logs (cost)",
    "CREATE INDEX raw_logs_tokens ON raw_logs (total_tokens)",
];

/// The raw baseline's database.
enum RawPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// One multi-row insert of `logs`, as Bifrost's `BatchCreateIfNotExists` makes it.
fn raw_insert<DB>(logs: &[Log], now: i64) -> QueryBuilder<'static, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'static, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'static, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'static, DB> + sqlx::Type<DB>,
    Option<f64>: sqlx::Encode<'static, DB> + sqlx::Type<DB>,
{
    let mut insert = QueryBuilder::<DB>::new(
        "INSERT INTO raw_logs (id, ts, object_type, provider, model, status, selected_key_id, \
         latency, cost, prompt_tokens, completion_tokens, total_tokens, input_history, \
         output_message, metadata, content_summary, created_at) ",
    );
    insert.push_values(logs, |mut row, log| {
        let [prompt, completion, total, _] = log.tokens();
        row.push_bind(log.id.clone())
            .push_bind(log.timestamp.timestamp_micros())
            .push_bind(log.object.clone())
            .push_bind(log.provider.clone())
            .push_bind(log.model.clone())
            .push_bind(log.status.as_str().to_owned())
            .push_bind(log.selected_key_id.clone())
            .push_bind(log.latency)
            .push_bind(log.cost)
            .push_bind(prompt)
            .push_bind(completion)
            .push_bind(total)
            .push_bind(log.content.input_history.as_ref().map(|v| v.to_string()))
            .push_bind(log.content.output_message.as_ref().map(|v| v.to_string()))
            .push_bind(Some(
                serde_json::to_string(&log.metadata).unwrap_or_default(),
            ))
            .push_bind(log.content_summary(32 * 1024))
            .push_bind(now);
    });
    insert.push(" ON CONFLICT (id) DO NOTHING");
    insert
}

/// Inserts logs `0..total` as Bifrost does: batches of 1000, one statement each.
async fn raw_ingest(pool: &RawPool, total: usize) -> Result<Duration> {
    let started = Instant::now();
    let now = Utc::now().timestamp_micros();
    for first in (0..total).step_by(RAW_BATCH) {
        let logs: Vec<Log> = (first..(first + RAW_BATCH).min(total))
            .map(|n| log(n, total))
            .collect();
        match pool {
            RawPool::Sqlite(p) => raw_insert(&logs, now).build().execute(p).await.map(drop)?,
            RawPool::Postgres(p) => raw_insert(&logs, now).build().execute(p).await.map(drop)?,
        }
    }
    Ok(started.elapsed())
}

/// Ingests logs `0..total` through the batched writer from `WRITERS` tasks; the clock stops
/// once every log is durable and in the read model.
async fn ledger_ingest(store: &LogStore, total: usize) -> Result<Duration> {
    let writer = Arc::new(LogWriter::new(store.clone(), WriterOptions::default()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let writer = writer.clone();
            tokio::spawn(async move {
                for n in (w..total).step_by(WRITERS) {
                    writer.write(log(n, total)).await?;
                }
                Ok::<(), ledger_logstore::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    writer.shutdown().await?;
    Ok(started.elapsed())
}

/// p50 and p95 in milliseconds of `runs` runs of `query` (run `i` gets `i`).
async fn latencies<F, Fut>(runs: usize, mut query: F) -> Result<(f64, f64)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ledger_logstore::Result<usize>>,
{
    query(0).await?; // warm the cache
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        query(i).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let p95 = ms[(ms.len() * 95).div_ceil(100).saturating_sub(1)];
    Ok((median(ms), p95))
}

/// The three searches a dashboard makes, on the loaded store.
async fn searches(
    backend: &'static str,
    store: &LogStore,
    sizes: &LogSizes,
    report: &mut Report,
) -> Result<()> {
    let week = SearchFilters {
        start_time: Some(week_start()),
        end_time: Some(week_start() + chrono::Duration::days(7) - chrono::Duration::seconds(1)),
        ..SearchFilters::new()
    };
    let list = latencies(sizes.query_runs, |i| {
        let filters = SearchFilters {
            providers: vec![PROVIDERS[i % 5].into()],
            models: vec![format!("{}-model-{}", PROVIDERS[i % 5], i % 4)],
            status: vec![LogStatus::Success],
            ..week.clone()
        };
        let page = Pagination {
            limit: 50,
            offset: 0,
            sort_by: SortBy::Latency,
            order: Order::Desc,
        };
        async move { Ok(store.search(&filters, &page).await?.logs.len()) }
    })
    .await?;
    let stats = latencies(sizes.query_runs, |_| {
        let week = week.clone();
        async move { Ok(store.stats(&week).await?.total_requests as usize) }
    })
    .await?;
    let histogram = latencies(sizes.query_runs, |_| {
        let week = week.clone();
        async move {
            Ok(store
                .histogram(HistogramKind::Requests, &week, 3600)
                .await?
                .buckets
                .len())
        }
    })
    .await?;
    for (what, (p50, p95)) in [
        (
            "list: 3 filters, sorted by latency, 50 a page, with the total count",
            list,
        ),
        ("stats over the week", stats),
        ("hourly request histogram over the week", histogram),
    ] {
        let met = if p95 < 50.0 { "met" } else { "**not met**" };
        report.measurement(Measurement {
            backend,
            what: format!(
                "log store, {} logs: {what} (p50 / p95; target p95 < 50 ms)",
                sizes.logs
            ),
            value: format!("{p50:.1} / {p95:.1} ms ({met})"),
        });
    }
    Ok(())
}

fn ingest_rows(
    backend: &'static str,
    sizes: &LogSizes,
    raw: Duration,
    ledger: Duration,
    report: &mut Report,
    target: Option<f64>,
) {
    let ledger_rate = rate(sizes.logs, ledger);
    report.row(Row {
        backend,
        workload: format!(
            "log store: ingest {} logs through the batched writer ({WRITERS} producers), until in the read model",
            sizes.logs
        ),
        baseline: "Bifrost's write path: multi-row INSERT … ON CONFLICT DO NOTHING per 1000 logs, same indexes".into(),
        raw_eps: rate(sizes.logs, raw),
        ledger_eps: ledger_rate,
        target: None,
    });
    if let Some(target) = target {
        let met = if ledger_rate >= target {
            "met"
        } else {
            "**not met**"
        };
        report.measurement(Measurement {
            backend,
            what: format!("log store: ingest rate (target ≥ {target:.0} logs/s)"),
            value: format!("{ledger_rate:.0} logs/s ({met})"),
        });
    }
}

pub async fn run_sqlite(sizes: LogSizes, report: &mut Report) -> Result<()> {
    let raw_dir = Scratch::new("logstore-raw");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(crate::sqlite::connect_options(&raw_dir.db()))
        .await?;
    for statement in RAW_SCHEMA {
        sqlx::query(statement).execute(&pool).await?;
    }
    let pool = RawPool::Sqlite(pool);
    let raw = raw_ingest(&pool, sizes.logs).await?;
    drop(pool);
    drop(raw_dir);

    let dir = Scratch::new("logstore");
    let url = format!("sqlite:{}", dir.db().display());
    let store = LogStore::open(&url, LogStoreOptions::default()).await?;
    let ledger = ledger_ingest(&store, sizes.logs).await?;
    ingest_rows("SQLite", &sizes, raw, ledger, report, Some(20_000.0));
    searches("SQLite", &store, &sizes, report).await?;
    store.close().await?;
    Ok(())
}

pub async fn run_postgres(url: &str, sizes: LogSizes, report: &mut Report) -> Result<()> {
    let schema = format!("bench_logstore_{}", std::process::id());
    let (admin, scoped) = crate::postgres::fresh_schema(url, &schema).await?;

    let pool = sqlx::PgPool::connect(&scoped).await?;
    for statement in RAW_SCHEMA {
        sqlx::query(statement).execute(&pool).await?;
    }
    let pool = RawPool::Postgres(pool);
    let raw = raw_ingest(&pool, sizes.logs).await?;
    drop(pool);

    let store = LogStore::open(&scoped, LogStoreOptions::default()).await?;
    let ledger = ledger_ingest(&store, sizes.logs).await?;
    ingest_rows("PostgreSQL", &sizes, raw, ledger, report, None);
    sqlx::query(&format!("ANALYZE {schema}.logstore_logs"))
        .execute(&admin)
        .await?;
    searches("PostgreSQL", &store, &sizes, report).await?;
    store.close().await?;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await?;
    Ok(())
}
