//! PostgreSQL: ledger's `PostgresStore` against hand-written sqlx statements on the same schema,
//! on the server `cargo xtask bench` starts with PostgreSQL's durable defaults.

use std::time::Instant;

use chrono::Utc;
use ledger_core::{ExpectedVersion, Mutation};
use ledger_postgres::PostgresStore;
use serde_json::Value;
use sqlx::{PgPool, Row};

use crate::Sizes;
use crate::report::{Report, Row as ReportRow};
use crate::workload::{
    RawEntry, Result, dedup_key, input, median, metadata, payload, rate, read_both,
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

async fn raw_single(pool: &PgPool, sizes: Sizes) -> Result<f64> {
    let t = raw_table(pool, "raw_single").await?;
    checkpoint(pool).await?;
    let sql = format!(
        "INSERT INTO {t} (stream, version, payload, dedup_key, schema_version, metadata, created_at) \
         VALUES ($1, $2, $3::jsonb, $4, 1, $5::jsonb, $6)"
    );
    let started = Instant::now();
    for n in 0..sizes.single_appends {
        sqlx::query(&sql)
            .bind(format!("s-{:03}", n % 100))
            .bind((n / 100 + 1) as i64)
            .bind(serde_json::to_string(&payload(n))?)
            .bind(dedup_key(n))
            .bind(serde_json::to_string(&metadata(n))?)
            .bind(Utc::now())
            .execute(pool)
            .await?;
    }
    Ok(rate(sizes.single_appends, started.elapsed()))
}

async fn ledger_single(url: &str, pool: &PgPool, sizes: Sizes) -> Result<f64> {
    let store = ledger_store(url, "ledger_single", false).await?;
    checkpoint(pool).await?;
    let started = Instant::now();
    for n in 0..sizes.single_appends {
        let stream = format!("s-{:03}", n % 100);
        store
            .append(&stream, vec![input(n)], ExpectedVersion::Any)
            .await?;
    }
    Ok(rate(sizes.single_appends, started.elapsed()))
}

/// One multi-row INSERT … SELECT FROM unnest(…) per batch, as a careful hand-written importer.
async fn raw_batched(pool: &PgPool, batch: usize, batches: usize) -> Result<f64> {
    let t = raw_table(pool, "raw_batched").await?;
    checkpoint(pool).await?;
    let sql = format!(
        "INSERT INTO {t} (stream, version, payload, dedup_key, schema_version, metadata, created_at) \
         SELECT $1, v, p::jsonb, d, 1, m::jsonb, $2 \
         FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[]) AS u(v, p, d, m)"
    );
    let started = Instant::now();
    for b in 0..batches {
        let ns = (b * batch)..((b + 1) * batch);
        let versions: Vec<i64> = (1..=batch as i64).collect();
        let payloads: Vec<String> = ns.clone().map(|n| payload(n).to_string()).collect();
        let keys: Vec<String> = ns.clone().map(dedup_key).collect();
        let metas: Vec<String> = ns
            .map(|n| serde_json::to_string(&metadata(n)).expect("metadata encodes"))
            .collect();
        sqlx::query(&sql)
            .bind(format!("b-{b:05}"))
            .bind(Utc::now())
            .bind(&versions)
            .bind(&payloads)
            .bind(&keys)
            .bind(&metas)
            .execute(pool)
            .await?;
    }
    Ok(rate(batches * batch, started.elapsed()))
}

async fn ledger_batched(
    url: &str,
    pool: &PgPool,
    batch: usize,
    batches: usize,
    change_feed: bool,
) -> Result<f64> {
    let store = ledger_store(url, "ledger_batched", change_feed).await?;
    checkpoint(pool).await?;
    let started = Instant::now();
    for b in 0..batches {
        let inputs = (0..batch).map(|i| input(b * batch + i)).collect();
        store
            .append(&format!("b-{b:05}"), inputs, ExpectedVersion::NoStream)
            .await?;
    }
    Ok(rate(batches * batch, started.elapsed()))
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

async fn raw_page(pool: &PgPool, table: &str, after: i64, limit: u32) -> Result<Vec<RawEntry>> {
    use sqlx::types::Json;
    let sql = format!(
        "SELECT id, stream, version, payload, order_key, dedup_key, schema_version, metadata, \
     tags, annotations, created_at, updated_at FROM \"{table}\" \
     WHERE stream = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind("big")
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

/// Catch-up over the change feed, in entries per second, against a raw SELECT of the same feed
/// rows decoded the same way.
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

    let sql = format!(
        "SELECT position, stream, mutation FROM \"{}_feed\" WHERE position > $1 \
         ORDER BY position LIMIT 1000",
        store.table()
    );
    let started = Instant::now();
    let (mut after, mut seen) = (0i64, 0usize);
    loop {
        let rows = sqlx::query(&sql).bind(after).fetch_all(pool).await?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        for row in &rows {
            let _stream: String = row.get(1);
            let m: Mutation = serde_json::from_str(row.get(2))?;
            seen += count(&m);
        }
    }
    assert_eq!(seen, entries, "baseline feed read every entry");
    Ok((rate(seen, started.elapsed()), ledger))
}

async fn setting(pool: &PgPool, name: &str) -> Result<String> {
    Ok(sqlx::query_scalar(&format!("SHOW {name}"))
        .fetch_one(pool)
        .await?)
}

/// Runs every PostgreSQL workload and adds its rows and settings to `report`.
pub async fn run(url: &str, sizes: Sizes, report: &mut Report) -> Result<()> {
    let pool = PgPool::connect(url).await?;
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

    let (mut raw, mut led) = (Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        raw.push(raw_single(&pool, sizes).await?);
        led.push(ledger_single(url, &pool, sizes).await?);
    }
    report.row(ReportRow {
        backend: "PostgreSQL",
        workload: "append, 1 entry per commit, dedup key".into(),
        baseline: "1 INSERT per entry (autocommit)".into(),
        raw_eps: median(raw),
        ledger_eps: median(led),
        target: None,
    });

    let (mut raw, mut led, mut feed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        raw.push(raw_batched(&pool, sizes.batch, sizes.batches).await?);
        led.push(ledger_batched(url, &pool, sizes.batch, sizes.batches, false).await?);
        feed.push(ledger_batched(url, &pool, sizes.batch, sizes.batches, true).await?);
    }
    let raw = median(raw);
    report.row(ReportRow {
        backend: "PostgreSQL",
        workload: format!("append, batches of {}, dedup keys", sizes.batch),
        baseline: "1 INSERT … SELECT FROM unnest per batch".into(),
        raw_eps: raw,
        ledger_eps: median(led),
        target: Some(0.7),
    });
    report.row(ReportRow {
        backend: "PostgreSQL",
        workload: format!(
            "append, batches of {}, dedup keys, change feed on",
            sizes.batch
        ),
        baseline: "1 INSERT … SELECT FROM unnest per batch".into(),
        raw_eps: raw,
        ledger_eps: median(feed),
        target: None,
    });

    let (bulk, bulk_batches) = (10_000, sizes.read_entries.min(100_000) / 10_000);
    let (mut raw, mut led) = (Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        raw.push(raw_copy(&pool, bulk, bulk_batches.max(1)).await?);
        led.push(ledger_batched(url, &pool, bulk, bulk_batches.max(1), false).await?);
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
    read_both(&store, sizes, async |after| {
        raw_page(&pool, store.table(), after, sizes.page).await
    })
    .await?;
    let (mut raw, mut led) = (Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        let (r, l) = read_both(&store, sizes, async |after| {
            raw_page(&pool, store.table(), after, sizes.page).await
        })
        .await?;
        raw.push(r);
        led.push(l);
    }
    report.row(ReportRow {
        backend: "PostgreSQL",
        workload: format!(
            "read {} entries, cursor pages of {}",
            sizes.read_entries, sizes.page
        ),
        baseline: "SELECT … WHERE stream = $1 AND id > $2 LIMIT, same decoding".into(),
        raw_eps: median(raw),
        ledger_eps: median(led),
        target: Some(0.8),
    });

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
        baseline: "SELECT of the feed rows, same decoding".into(),
        raw_eps: median(raw),
        ledger_eps: median(led),
        target: None,
    });
    Ok(())
}
