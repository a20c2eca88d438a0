//! MongoDB: ledger's `MongoStore` against the raw driver writing and reading the same documents
//! (the layout of `ledger-mongo`'s entries) with the same unique indexes, on the replica-set
//! server `cargo xtask services up` starts.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use ledger_core::ExpectedVersion;
use ledger_mongo::MongoStore;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::Deserialize;
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

/// The baseline's collection: the unique indexes ledger's entries have.
async fn raw_collection(db: &Database, kind: &str) -> Result<Collection<Document>> {
    let collection = db.collection::<Document>(&fresh_name(kind));
    let unique = |keys: Document, partial: Option<Document>| {
        let options = IndexOptions::builder()
            .unique(true)
            .partial_filter_expression(partial)
            .build();
        IndexModel::builder().keys(keys).options(options).build()
    };
    collection
        .create_indexes([
            unique(doc! {"stream": 1, "version": 1}, None),
            unique(
                doc! {"stream": 1, "dedup_key": 1},
                Some(doc! {"dedup_key": {"$exists": true}}),
            ),
        ])
        .await?;
    Ok(collection)
}

async fn ledger_store(url: &str, kind: &str, change_feed: bool) -> Result<MongoStore> {
    Ok(MongoStore::builder()
        .collection(fresh_name(kind))
        .change_feed(change_feed)
        .connect(url)
        .await?)
}

/// Closes a store and drops its collections (`N` and `N_streams`, `N_feed`, `N_cursors`,
/// `N_meta`), so the in-memory server does not carry one run's data into the next. The store
/// goes first: its change stream must not see its collection dropped (the driver's change
/// stream then spins on the closed cursor without yielding).
async fn drop_store(db: &Database, store: MongoStore) -> Result<()> {
    let name = store.collection().to_owned();
    drop(store);
    for suffix in ["", "_streams", "_feed", "_cursors", "_meta"] {
        db.collection::<Document>(&format!("{name}{suffix}"))
            .drop()
            .await?;
    }
    Ok(())
}

/// Event `n` as ledger writes it (see `ledger-mongo`'s `entry_doc_of`): the same fields, types
/// and sizes. The payload's string values, lowercased, are its `search` strings.
fn raw_doc(id: i64, stream: &str, version: i64, n: usize, created_at: bson::DateTime) -> Document {
    let payload = payload(n);
    let search: Vec<Bson> = payload
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .filter_map(|v| v.as_str().map(|s| Bson::String(s.to_ascii_lowercase())))
        .collect();
    let metadata: Document = metadata(n)
        .into_iter()
        .map(|(k, v)| (k, Bson::String(v)))
        .collect();
    doc! {
        "_id": id,
        "stream": stream,
        "version": version,
        "payload": bson::to_bson(&payload).expect("JSON payloads are BSON"),
        "search": search,
        "dedup_key": dedup_key(n),
        "schema_version": 1i64,
        "metadata": metadata,
        "tags": [],
        "annotations": {},
        "created_at": created_at,
    }
}

/// Checks that the baseline writes the documents ledger writes: the same fields, in the same
/// order, with the same values (its id and time aside).
async fn check_layout(url: &str, db: &Database) -> Result<()> {
    let store = ledger_store(url, "layout", false).await?;
    store
        .append("w-0", vec![input(7)], ExpectedVersion::Any)
        .await?;
    let stored = store
        .entries()
        .find_one(doc! {})
        .await?
        .ok_or("ledger wrote no document")?;
    drop_store(db, store).await?;
    let raw = raw_doc(
        stored.get_i64("_id")?,
        "w-0",
        1,
        7,
        stored.get_datetime("created_at").copied()?,
    );
    if stored != raw {
        return Err(format!(
            "the baseline's documents differ from ledger's: {raw} against {stored}"
        )
        .into());
    }
    Ok(())
}

/// Where batches go: each writer appending to its own stream (`ExpectedVersion::Any`), or each
/// batch to a new stream (`ExpectedVersion::NoStream`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Streams {
    PerWriter,
    PerBatch,
}

/// The stream of batch `b` of writer `w`, and its version before the batch.
fn batch_target(
    streams: Streams,
    batch: usize,
    writers: usize,
    w: usize,
    b: usize,
) -> (String, i64) {
    match streams {
        Streams::PerWriter => (format!("w-{w}"), ((b / writers) * batch) as i64),
        Streams::PerBatch => (format!("b-{b:05}"), 0),
    }
}

/// One `insert_many` (ordered) per batch, ids and versions known to the writer.
async fn raw_batched(db: &Database, sizes: Sizes, streams: Streams, writers: usize) -> Result<f64> {
    let collection = raw_collection(db, "raw_batched").await?;
    let (batch, task_collection) = (sizes.batch, collection.clone());
    let elapsed = in_parallel(writers, sizes.batches, move |w, b| {
        let collection = task_collection.clone();
        async move {
            let (stream, before) = batch_target(streams, batch, writers, w, b);
            let created_at = bson::DateTime::now();
            let docs = (0..batch).map(|i| {
                let n = b * batch + i;
                raw_doc(n as i64 + 1, &stream, before + i as i64 + 1, n, created_at)
            });
            collection.insert_many(docs).await?;
            Ok(())
        }
    })
    .await?;
    collection.drop().await?;
    Ok(rate(sizes.batches * sizes.batch, elapsed))
}

/// `Store::append` of each batch. With `Streams::PerWriter`, every append but a writer's first
/// finds its stream holding entries and looks the batch's dedup keys up first: a `find` of
/// `{stream, dedup_key: {$in: keys}}`, which this server answers by scanning the stream.
async fn ledger_batched(
    url: &str,
    db: &Database,
    sizes: Sizes,
    (streams, writers): (Streams, usize),
    change_feed: bool,
) -> Result<f64> {
    let store = ledger_store(url, "ledger_batched", change_feed).await?;
    let (batch, task_store) = (sizes.batch, store.clone());
    let elapsed = in_parallel(writers, sizes.batches, move |w, b| {
        let store = task_store.clone();
        async move {
            let (stream, _) = batch_target(streams, batch, writers, w, b);
            let inputs = (0..batch).map(|i| input(b * batch + i)).collect();
            let expected = match streams {
                Streams::PerWriter => ExpectedVersion::Any,
                Streams::PerBatch => ExpectedVersion::NoStream,
            };
            store.append(&stream, inputs, expected).await?;
            Ok(())
        }
    })
    .await?;
    drop_store(db, store).await?;
    Ok(rate(sizes.batches * sizes.batch, elapsed))
}

/// An entry document as the baseline decodes it, straight from BSON.
#[derive(Deserialize)]
struct RawDoc {
    #[serde(rename = "_id")]
    id: i64,
    stream: String,
    version: i64,
    payload: Value,
    order_key: Option<String>,
    dedup_key: Option<String>,
    schema_version: i64,
    metadata: BTreeMap<String, String>,
    tags: BTreeSet<String>,
    annotations: BTreeMap<String, String>,
    created_at: bson::DateTime,
    updated_at: Option<bson::DateTime>,
}

/// What a raw reader rebuilding state decodes of an entry document.
#[derive(Deserialize)]
struct RawEventDoc {
    #[serde(rename = "_id")]
    id: i64,
    version: i64,
    payload: ItemAdded,
    metadata: BTreeMap<String, String>,
    created_at: bson::DateTime,
}

fn time(t: bson::DateTime) -> Result<DateTime<Utc>> {
    Ok(DateTime::from_timestamp_millis(t.timestamp_millis()).ok_or("date out of range")?)
}

/// `find({stream, _id: {$gt: after}}).sort({version: 1}).limit(page)`, one batch, documents
/// decoded into `T`, leaving out what the page does not need (the search strings, as ledger).
async fn raw_find<T>(
    collection: &Collection<Document>,
    stream: &str,
    after: i64,
    page: u32,
    projection: Document,
) -> Result<Vec<T>>
where
    T: for<'de> Deserialize<'de> + Send + Sync,
{
    Ok(collection
        .clone_with_type::<T>()
        .find(doc! {"stream": stream, "_id": {"$gt": after}})
        .sort(doc! {"version": 1})
        .limit(i64::from(page))
        .batch_size(page)
        .projection(projection)
        .await?
        .try_collect()
        .await?)
}

async fn raw_page(
    collection: &Collection<Document>,
    stream: &str,
    after: i64,
    page: u32,
) -> Result<Vec<RawEntry>> {
    let docs: Vec<RawDoc> = raw_find(collection, stream, after, page, doc! {"search": 0}).await?;
    docs.into_iter()
        .map(|d| {
            Ok(RawEntry {
                id: d.id,
                stream: d.stream,
                version: d.version,
                payload: d.payload,
                order_key: d.order_key,
                dedup_key: d.dedup_key,
                schema_version: d.schema_version,
                metadata: d.metadata,
                tags: d.tags,
                annotations: d.annotations,
                created_at: time(d.created_at)?,
                updated_at: d.updated_at.map(time).transpose()?,
            })
        })
        .collect()
}

async fn raw_event_page(
    collection: &Collection<Document>,
    after: i64,
    page: u32,
) -> Result<Vec<RawEvent>> {
    let projection = doc! {"version": 1, "payload": 1, "metadata": 1, "created_at": 1};
    let docs: Vec<RawEventDoc> = raw_find(collection, "long", after, page, projection).await?;
    docs.into_iter()
        .map(|d| {
            Ok(RawEvent {
                id: d.id,
                version: d.version,
                event: d.payload,
                metadata: d.metadata,
                created_at: time(d.created_at)?,
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

/// Runs every MongoDB workload and adds its rows and settings to `report`.
pub async fn run(url: &str, sizes: Sizes, report: &mut Report) -> Result<()> {
    let options = ClientOptions::parse(url).await?;
    let database = options
        .default_database
        .clone()
        .unwrap_or_else(|| ledger_mongo::DEFAULT_DATABASE.to_owned());
    let client = Client::with_options(options)?;
    let db = client.database(&database);
    let build = client
        .database("admin")
        .run_command(doc! {"buildInfo": 1})
        .await?;
    report.setting(
        "MongoDB",
        format!(
            "SecantusDB 0.7.0b3 (answers buildInfo as MongoDB {}), a Python reimplementation of \
             MongoDB, as a single-node replica set keeping its data in memory, on 127.0.0.1 (same \
             2 cores as the client), driver `mongodb` 3.6 for both systems with default options; \
             fresh collections for every run, dropped after it. The server's own time per \
             command dominates (tens of ms for a batch of 100), so these ratios say how much \
             ledger adds on top of the driver on that server, not what a real mongod would give. \
             Ledger's append is a transaction of five commands where the baseline sends one \
             insert_many (read the stream's document, take ids, insert, update the stream's \
             document, commit; with the feed, two more), and on this server a page costs more \
             the more entries of the stream are left after it",
            build.get_str("version").unwrap_or("?")
        ),
    );
    report.setting(
        "MongoDB sizes",
        format!(
            "smaller, for the slow server: {} batches of {} (to the writer's own stream with \
             ExpectedVersion::Any, or to a new stream each with NoStream); {} entries read back \
             by cursor pagination in pages of {}; one stream of {} events read whole in pages of \
             {} (each read stream written in one append); {} repetitions",
            sizes.batches,
            sizes.batch,
            sizes.read_entries,
            sizes.page,
            sizes.long.events,
            sizes.long.page,
            sizes.repeats
        ),
    );
    check_layout(url, &db).await?;

    let baseline = "1 insert_many per batch (same documents and unique indexes), same writers";
    for writers in [1, 4] {
        let shape = (Streams::PerWriter, writers);
        let [raw, off, on] = medians(
            sizes.repeats,
            &[
                system(|| raw_batched(&db, sizes, Streams::PerWriter, writers)),
                system(|| ledger_batched(url, &db, sizes, shape, false)),
                system(|| ledger_batched(url, &db, sizes, shape, true)),
            ],
        )
        .await?[..] else {
            unreachable!("three runs")
        };
        for (ledger_eps, feed) in [(off, ""), (on, ", change feed on")] {
            report.row(ReportRow {
                backend: "MongoDB",
                workload: format!(
                    "append, batches of {} to the writer's stream (Any), {}{feed}",
                    sizes.batch,
                    writers_text(writers)
                ),
                baseline: baseline.into(),
                raw_eps: raw,
                ledger_eps,
                target: Some(0.8),
            });
        }
    }
    let [raw, led] = medians(
        sizes.repeats,
        &[
            system(|| raw_batched(&db, sizes, Streams::PerBatch, 1)),
            system(|| ledger_batched(url, &db, sizes, (Streams::PerBatch, 1), false)),
        ],
    )
    .await?[..] else {
        unreachable!("two runs")
    };
    report.row(ReportRow {
        backend: "MongoDB",
        workload: format!(
            "append, batches of {} to a new stream each (NoStream), 1 writer",
            sizes.batch
        ),
        baseline: baseline.into(),
        raw_eps: raw,
        ledger_eps: led,
        target: None,
    });

    let store = ledger_store(url, "ledger_read", false).await?;
    let entries = store.entries();
    // Each read stream is written in one append: on this server an append to a stream that
    // has entries looks its dedup keys up by scanning the stream (see `ledger_batched`).
    let inputs = (0..sizes.read_entries).map(input).collect();
    store
        .append("big", inputs, ExpectedVersion::NoStream)
        .await?;
    // Both systems start warm: one untimed pass each.
    let (raw, led) = cursor_reads(&store, sizes, async |after| {
        raw_page(&entries, "big", after, sizes.page).await
    })
    .await?;
    report.row(ReportRow {
        backend: "MongoDB",
        workload: format!(
            "read {} entries, cursor pages of {}",
            sizes.read_entries, sizes.page
        ),
        baseline: "find({stream, _id: {$gt}}).sort({version: 1}).limit, every field but search, \
                   same decoding"
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
        "MongoDB",
        &store,
        sizes,
        (
            system(|| {
                read_raw_pages(
                    long,
                    async |after| raw_event_page(&entries, after, long.page).await,
                    |e| e.id,
                )
            }),
            "find of _id, version, payload, metadata, created_at … limit, decoded to the \
                   typed event",
        ),
        (
            system(|| {
                read_raw_pages(
                    long,
                    async |after| raw_page(&entries, "long", after, long.page).await,
                    |e| e.id,
                )
            }),
            "find of every field but search … limit, same decoding",
        ),
    )
    .await?;
    drop_store(&db, store).await?;
    Ok(())
}
