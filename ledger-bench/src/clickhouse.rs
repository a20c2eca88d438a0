//! ClickHouse: ledger's `ClickHouseStore` against the raw `clickhouse` crate inserting and
//! selecting the same rows (the layout of `ledger-clickhouse`'s table) in the same run, on both
//! servers `cargo xtask services up` starts.

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::{Client, Row};
use ledger_clickhouse::ClickHouseStore;
use ledger_core::ExpectedVersion;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Sizes;
use crate::report::{Report, Row as ReportRow};
use crate::workload::{
    ItemAdded, RawEntry, RawEvent, Result, cursor_reads, dedup_key, in_parallel, input, medians,
    metadata, payload, rate, read_raw_pages, system, whole_stream_reads,
};

fn fresh_name(kind: &str) -> String {
    format!("bench_{kind}_{}", fastrand::u32(..))
}

/// A row as ledger writes it (see `ledger-clickhouse`'s `NewRow`).
#[derive(Row, Serialize)]
struct RawRow {
    stream: String,
    id: i64,
    version: u64,
    payload: String,
    order_key: Option<String>,
    dedup_key: Option<String>,
    schema_version: u32,
    metadata_keys: Vec<String>,
    metadata_values: Vec<String>,
    tags: Vec<String>,
    annotation_keys: Vec<String>,
    annotation_values: Vec<String>,
    created_at: i64,
    updated_at: Option<i64>,
    revision: u64,
    search: String,
}

/// A row as both systems read it: every column but `search`.
#[derive(Row, Deserialize)]
struct RawStored {
    stream: String,
    id: i64,
    version: u64,
    payload: String,
    order_key: Option<String>,
    dedup_key: Option<String>,
    schema_version: u32,
    metadata_keys: Vec<String>,
    metadata_values: Vec<String>,
    tags: Vec<String>,
    annotation_keys: Vec<String>,
    annotation_values: Vec<String>,
    created_at: i64,
    updated_at: Option<i64>,
    #[allow(dead_code)]
    revision: u64,
}

/// What a raw reader rebuilding state selects.
#[derive(Row, Deserialize)]
struct RawEventRow {
    id: i64,
    version: u64,
    payload: String,
    metadata_keys: Vec<String>,
    metadata_values: Vec<String>,
    created_at: i64,
}

/// Event `n` as ledger writes it.
fn raw_row(id: i64, stream: &str, version: u64, n: usize, created_at: i64) -> RawRow {
    let payload = payload(n);
    let search = ledger_core::backend::payload_strings(&payload).join("\0");
    let (metadata_keys, metadata_values) = metadata(n).into_iter().unzip();
    RawRow {
        stream: stream.to_owned(),
        id,
        version,
        payload: payload.to_string(),
        order_key: None,
        dedup_key: Some(dedup_key(n)),
        schema_version: 1,
        metadata_keys,
        metadata_values,
        tags: Vec::new(),
        annotation_keys: Vec::new(),
        annotation_values: Vec::new(),
        created_at,
        updated_at: None,
        revision: 0,
        search,
    }
}

/// A baseline table: the table ledger creates, made by ledger (then written only raw).
async fn raw_table(url: &str, kind: &str) -> Result<(ClickHouseStore, String)> {
    let store = ledger_store(url, kind).await?;
    let table = store.table().to_owned();
    Ok((store, table))
}

async fn ledger_store(url: &str, kind: &str) -> Result<ClickHouseStore> {
    Ok(ClickHouseStore::builder()
        .table(fresh_name(kind))
        .connect(url)
        .await?)
}

async fn drop_store(store: ClickHouseStore) -> Result<()> {
    let client = store.client().clone();
    let table = store.table().to_owned();
    drop(store);
    for suffix in ["", "_streams", "_cursors", "_schema"] {
        client
            .query(&format!("DROP TABLE IF EXISTS `{table}{suffix}`"))
            .execute()
            .await?;
    }
    Ok(())
}

/// One insert per batch, ids and versions known to the writer.
async fn raw_batched(url: &str, sizes: Sizes, writers: usize) -> Result<f64> {
    let (store, table) = raw_table(url, "raw_batched").await?;
    let client = store.client().clone();
    let batch = sizes.batch;
    let elapsed = in_parallel(writers, sizes.batches, move |w, b| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            let stream = format!("w-{w}");
            let before = ((b / writers) * batch) as u64;
            let created_at = chrono::Utc::now().timestamp_micros();
            let mut insert = client.insert::<RawRow>(&table).await?;
            for i in 0..batch {
                let n = b * batch + i;
                let row = raw_row(n as i64 + 1, &stream, before + i as u64 + 1, n, created_at);
                insert.write(&row).await?;
            }
            insert.end().await?;
            Ok(())
        }
    })
    .await?;
    drop_store(store).await?;
    Ok(rate(sizes.batches * sizes.batch, elapsed))
}

/// `Store::append` of each batch to the writer's stream, with `ExpectedVersion::Any`.
async fn ledger_batched(url: &str, sizes: Sizes, writers: usize) -> Result<f64> {
    let store = ledger_store(url, "ledger_batched").await?;
    let (batch, task_store) = (sizes.batch, store.clone());
    let elapsed = in_parallel(writers, sizes.batches, move |w, b| {
        let store = task_store.clone();
        async move {
            let inputs = (0..batch).map(|i| input(b * batch + i)).collect();
            store
                .append(&format!("w-{w}"), inputs, ExpectedVersion::Any)
                .await?;
            Ok(())
        }
    })
    .await?;
    drop_store(store).await?;
    Ok(rate(sizes.batches * sizes.batch, elapsed))
}

fn map(keys: Vec<String>, values: Vec<String>) -> BTreeMap<String, String> {
    keys.into_iter().zip(values).collect()
}

fn time(micros: i64) -> Result<chrono::DateTime<chrono::Utc>> {
    Ok(chrono::DateTime::from_timestamp_micros(micros).ok_or("time out of range")?)
}

/// The columns both systems read, in [`RawStored`]'s order.
const COLUMNS: &str = "stream, id, version, payload, order_key, dedup_key, schema_version, \
    metadata_keys, metadata_values, tags, annotation_keys, annotation_values, created_at, \
    updated_at, revision";

async fn raw_page(
    client: &Client,
    table: &str,
    stream: &str,
    after: i64,
    page: u32,
) -> Result<Vec<RawEntry>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM `{table}` FINAL WHERE stream = ? AND id > ? ORDER BY id LIMIT {page}"
    );
    let rows: Vec<RawStored> = client
        .query(&sql)
        .bind(stream)
        .bind(after)
        .fetch_all()
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(RawEntry {
                id: r.id,
                stream: r.stream,
                version: r.version as i64,
                payload: serde_json::from_str::<Value>(&r.payload)?,
                order_key: r.order_key,
                dedup_key: r.dedup_key,
                schema_version: i64::from(r.schema_version),
                metadata: map(r.metadata_keys, r.metadata_values),
                tags: r.tags.into_iter().collect::<BTreeSet<_>>(),
                annotations: map(r.annotation_keys, r.annotation_values),
                created_at: time(r.created_at)?,
                updated_at: r.updated_at.map(time).transpose()?,
            })
        })
        .collect()
}

async fn raw_event_page(
    client: &Client,
    table: &str,
    after: i64,
    page: u32,
) -> Result<Vec<RawEvent>> {
    let sql = format!(
        "SELECT id, version, payload, metadata_keys, metadata_values, created_at FROM `{table}` \
         FINAL WHERE stream = 'long' AND id > ? ORDER BY id LIMIT {page}"
    );
    let rows: Vec<RawEventRow> = client.query(&sql).bind(after).fetch_all().await?;
    rows.into_iter()
        .map(|r| {
            Ok(RawEvent {
                id: r.id,
                version: r.version as i64,
                event: serde_json::from_str::<ItemAdded>(&r.payload)?,
                metadata: map(r.metadata_keys, r.metadata_values),
                created_at: time(r.created_at)?,
            })
        })
        .collect()
}

fn writers_text(writers: usize) -> String {
    match writers {
        1 => "1 writer".to_owned(),
        n => format!("{n} writers"),
    }
}

/// Runs every ClickHouse workload on the server at `url` (`server` says what it is) and adds
/// its rows to `report` as `backend`.
pub async fn run(
    (backend, server): (&'static str, &str),
    url: &str,
    sizes: Sizes,
    report: &mut Report,
) -> Result<()> {
    let probe = ledger_store(url, "probe").await?;
    report.setting(
        backend,
        format!(
            "{server}, answering as version {}, on 127.0.0.1 (same 2 cores as the client), `clickhouse` crate \
             0.15 for both systems (LZ4 inserts; row validation as the store chooses for the \
             version); fresh tables for every run, dropped after it. Ledger's append is one \
             insert, like the baseline's; it also computes the search column and, on its \
             stream's first append, reads the stream's version",
            probe.server_version()
        ),
    );
    drop_store(probe).await?;

    let baseline = "1 insert per batch (same rows, same table), same writers";
    for writers in [1, 4] {
        let [raw, led] = medians(
            sizes.repeats,
            &[
                system(|| raw_batched(url, sizes, writers)),
                system(|| ledger_batched(url, sizes, writers)),
            ],
        )
        .await?[..] else {
            unreachable!("two runs")
        };
        report.row(ReportRow {
            backend,
            workload: format!(
                "append, batches of {} to the writer's stream (Any), {}",
                sizes.batch,
                writers_text(writers)
            ),
            baseline: baseline.into(),
            raw_eps: raw,
            ledger_eps: led,
            target: Some(0.8),
        });
    }

    let store = ledger_store(url, "ledger_read").await?;
    let client = store.client().clone();
    let table = store.table().to_owned();
    let inputs = (0..sizes.read_entries).map(input).collect();
    store
        .append("big", inputs, ExpectedVersion::NoStream)
        .await?;
    let (raw, led) = cursor_reads(&store, sizes, async |after| {
        raw_page(&client, &table, "big", after, sizes.page).await
    })
    .await?;
    report.row(ReportRow {
        backend,
        workload: format!(
            "read {} entries, cursor pages of {}",
            sizes.read_entries, sizes.page
        ),
        baseline: "SELECT … FINAL WHERE stream = ? AND id > ? ORDER BY id LIMIT, every column but \
                   search, same decoding"
            .into(),
        raw_eps: raw,
        ledger_eps: led,
        target: Some(0.8),
    });

    let inputs = (0..sizes.long.events).map(input).collect();
    store
        .append("long", inputs, ExpectedVersion::NoStream)
        .await?;
    let long = sizes.long;
    whole_stream_reads(
        report,
        backend,
        &store,
        sizes,
        (
            system(|| {
                read_raw_pages(
                    long,
                    async |after| raw_event_page(&client, &table, after, long.page).await,
                    |e| e.id,
                )
            }),
            "SELECT id, version, payload, metadata, created_at … FINAL … LIMIT, decoded to \
                   the typed event",
        ),
        (
            system(|| {
                read_raw_pages(
                    long,
                    async |after| raw_page(&client, &table, "long", after, long.page).await,
                    |e| e.id,
                )
            }),
            "SELECT of every column but search … FINAL … LIMIT, same decoding",
        ),
    )
    .await?;
    drop_store(store).await?;
    Ok(())
}
