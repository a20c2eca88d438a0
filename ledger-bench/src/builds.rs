//! The build-event service: records from Kafka to the `build` read model (ledger entries
//! first, the change feed, the guarded upsert) against a raw consumer that only parses each
//! record and upserts the same row in one transaction per batch, committing offsets after.
//! Both read the same topic with a fresh consumer group from its beginning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ledger_builds::config::{KafkaSettings, OffsetReset};
use ledger_builds::{Build, BuildEvent, BuildService, BuildServiceOptions, KafkaSource};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use crate::report::{Report, Row};
use crate::sqlite::Scratch;
use crate::workload::Result;

/// How many builds, and snapshots of each.
#[derive(Clone, Copy)]
pub struct BuildSizes {
    pub builds: u32,
    pub snapshots: u32,
    pub partitions: i32,
}

impl BuildSizes {
    pub fn records(self) -> u64 {
        u64::from(self.builds) * u64::from(self.snapshots)
    }
}

const TIMEOUT: Duration = Duration::from_secs(60);
/// Records a consumer stores at a time at most (the service's default).
const BATCH: usize = 500;

fn uuid(kind: char, n: u32) -> String {
    let k = kind.to_string().repeat(8);
    format!("{k}-0000-4000-8000-{n:012x}")
}

/// Snapshot `second` of build `n`: a realistic Probo build of about 700 bytes.
fn record(n: u32, second: u32) -> Vec<u8> {
    let id = uuid('b', n);
    let build = json!({
        "id": id, "projectId": uuid('a', n % 50), "requestId": uuid('c', n),
        "status": if second + 1 == 10 { "success" } else { "running" },
        "submittedState": "submitted", "active": true,
        "createdAt": "2026-11-02T00:00:00.000Z",
        "updatedAt": ledger_builds::iso((1_793_577_600 + i64::from(second)) * 1_000_000),
        "diskSpace": {"realBytes": 1000 + second, "virtualBytes": 2000 + second},
        "branch": {"name": format!("feature-{n}"), "htmlUrl": format!("https://git.example.com/p/tree/feature-{n}")},
        "commit": {"ref": format!("{n:040x}"), "htmlUrl": format!("https://git.example.com/p/commit/{n:040x}")},
        "pullRequest": {"number": n.to_string(), "name": "Make the thing", "description": "It does it.", "htmlUrl": format!("https://git.example.com/p/pull/{n}")},
        "config": {"image": "proboci/ubuntu:22.04-php8.2", "steps": [{"name": "build", "plugin": "Script", "script": "make"}]},
        "reaped": false, "pinned": false,
        "steps": [{"id": "s1", "name": "build", "plugin": "Script", "state": "running"}],
    });
    serde_json::to_vec(
        &json!({"version": "1", "data": {"event": "updated", "data": {}, "build": build}}),
    )
    .expect("JSON serializes")
}

/// A new topic holding every snapshot, in time order (each build's newest last).
async fn load_topic(brokers: &str, sizes: BuildSizes) -> Result<String> {
    let topic = format!("bench_builds_{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let new = NewTopic::new(&topic, sizes.partitions, TopicReplication::Fixed(1));
    for created in admin.create_topics([&new], &options).await? {
        created.map_err(|(t, e)| format!("creating topic {t}: {e}"))?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()?;
    let values: Vec<(u32, Vec<u8>)> = (0..sizes.snapshots)
        .flat_map(|second| (0..sizes.builds).map(move |n| (n, record(n, second))))
        .collect();
    for chunk in values.chunks(2000) {
        let sends = chunk.iter().map(|(n, value)| {
            // Keyed by build, as a producer would: one build's snapshots stay in order.
            let record = FutureRecord::<str, [u8]>::to(&topic)
                .partition((*n % sizes.partitions as u32) as i32)
                .payload(value);
            producer.send(record, TIMEOUT)
        });
        for sent in futures::future::join_all(sends).await {
            sent.map_err(|(e, _)| format!("producing: {e}"))?;
        }
    }
    Ok(topic)
}

fn settings(brokers: &str, topic: &str) -> KafkaSettings {
    KafkaSettings {
        group: format!("bench_{}_{}", std::process::id(), fastrand::u64(..)),
        topic: topic.to_owned(),
        version: 1,
        brokers: brokers.to_owned(),
        offset_reset: OffsetReset::Earliest,
        batch: BATCH,
        librdkafka: Default::default(),
    }
}

/// Records per second through the service: from a new group's start until every record is
/// stored and the read model has applied it.
async fn through_service(url: &str, brokers: &str, topic: &str, sizes: BuildSizes) -> Result<f64> {
    let service = BuildService::open(url, BuildServiceOptions::default()).await?;
    service.follow();
    let source = Arc::new(KafkaSource::new(settings(brokers, topic))?);
    let started = Instant::now();
    let (running, consumer_service) = (source.clone(), service.clone());
    let task = tokio::spawn(async move { running.run(&consumer_service).await });
    while source.stored() < sizes.records() {
        if started.elapsed() > Duration::from_secs(1800) {
            return Err("the service did not consume the topic within 30 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    service.catch_up().await?;
    let elapsed = started.elapsed();
    task.abort();
    // The rows are the newest snapshots.
    for n in [0, sizes.builds / 2, sizes.builds - 1] {
        let row = service
            .build(&uuid('b', n))
            .await?
            .ok_or("a build is missing")?;
        if row.build.bytes_real != 1000 + i64::from(sizes.snapshots - 1) {
            return Err(format!("build {n} holds an old snapshot").into());
        }
    }
    service.ledger().close().await?;
    Ok(sizes.records() as f64 / elapsed.as_secs_f64())
}

/// The raw consumer's table and upsert: the same row, guarded by `updatedAt` only.
const RAW_TABLE: &str = "CREATE TABLE raw_build (
    build_id TEXT PRIMARY KEY, request_id TEXT, project_id TEXT NOT NULL,
    time_started BIGINT NOT NULL, time_updated BIGINT NOT NULL,
    bytes_virtual BIGINT NOT NULL, bytes_real BIGINT NOT NULL, config TEXT NOT NULL,
    branch_name TEXT, branch_url TEXT, commit_url TEXT, commit_ref TEXT,
    pr_description TEXT, pr_url TEXT, pr_name TEXT, pr_number TEXT,
    reaped BIGINT NOT NULL, reaped_reason BIGINT NOT NULL, reaped_reason_text TEXT,
    reaped_date BIGINT, pinned BIGINT NOT NULL, status_submitted TEXT NOT NULL,
    status_build TEXT NOT NULL)";
const RAW_INDEX: &str = "CREATE INDEX raw_build_project ON raw_build (project_id, reaped)";

const RAW_UPSERT: &str = "INSERT INTO raw_build VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
    $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) \
    ON CONFLICT (build_id) DO UPDATE SET request_id = excluded.request_id, \
    project_id = excluded.project_id, time_started = excluded.time_started, \
    time_updated = excluded.time_updated, bytes_virtual = excluded.bytes_virtual, \
    bytes_real = excluded.bytes_real, config = excluded.config, \
    branch_name = excluded.branch_name, branch_url = excluded.branch_url, \
    commit_url = excluded.commit_url, commit_ref = excluded.commit_ref, \
    pr_description = excluded.pr_description, pr_url = excluded.pr_url, \
    pr_name = excluded.pr_name, pr_number = excluded.pr_number, reaped = excluded.reaped, \
    reaped_reason = excluded.reaped_reason, reaped_reason_text = excluded.reaped_reason_text, \
    reaped_date = excluded.reaped_date, pinned = excluded.pinned, \
    status_submitted = excluded.status_submitted, status_build = excluded.status_build \
    WHERE excluded.time_updated >= raw_build.time_updated";

/// Binds a row's values to the raw upsert, for either database.
macro_rules! bind_row {
    ($b:expr) => {{
        let b: &Build = $b;
        sqlx::query(RAW_UPSERT)
            .bind(b.build_id.clone())
            .bind(b.request_id.clone())
            .bind(b.project_id.clone())
            .bind(b.time_started)
            .bind(b.time_updated)
            .bind(b.bytes_virtual)
            .bind(b.bytes_real)
            .bind(b.config.to_string())
            .bind(b.branch_name.clone())
            .bind(b.branch_url.clone())
            .bind(b.commit_url.clone())
            .bind(b.commit_ref.clone())
            .bind(b.pr_description.clone())
            .bind(b.pr_url.clone())
            .bind(b.pr_name.clone())
            .bind(b.pr_number.clone())
            .bind(i64::from(b.reaped))
            .bind(b.reaped_reason)
            .bind(b.reaped_reason_text.clone())
            .bind(b.reaped_date)
            .bind(i64::from(b.pinned))
            .bind(b.status_submitted.clone())
            .bind(b.status_build.clone())
    }};
}

enum RawPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawPool {
    async fn upsert(&self, builds: &[Build]) -> Result<()> {
        match self {
            RawPool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for b in builds {
                    bind_row!(b).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            RawPool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for b in builds {
                    bind_row!(b).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

/// Records per second through the raw consumer: parse, upsert per batch, commit offsets.
async fn raw(pool: &RawPool, brokers: &str, topic: &str, sizes: BuildSizes) -> Result<f64> {
    let settings = settings(brokers, topic);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let started = Instant::now();
    let mut consumed = 0u64;
    let mut batches = consumer.stream().ready_chunks(BATCH);
    while consumed < sizes.records() {
        let Some(batch) = batches.next().await else {
            break;
        };
        let mut builds = Vec::with_capacity(batch.len());
        let mut offsets = rdkafka::TopicPartitionList::new();
        for record in batch {
            let record = record?;
            if let Ok(event) = BuildEvent::parse(record.payload().unwrap_or_default()) {
                builds.push(event.build);
            }
            offsets.add_partition_offset(
                record.topic(),
                record.partition(),
                rdkafka::Offset::Offset(record.offset() + 1),
            )?;
            consumed += 1;
        }
        pool.upsert(&builds).await?;
        consumer.commit(&offsets, CommitMode::Async)?;
    }
    Ok(sizes.records() as f64 / started.elapsed().as_secs_f64())
}

fn row(backend: &'static str, sizes: BuildSizes, raw: f64, ledger: f64) -> Row {
    Row {
        backend,
        workload: format!(
            "build events from Kafka to the read model ({} builds × {} snapshots)",
            sizes.builds, sizes.snapshots
        ),
        baseline: "rdkafka consumer, parse, per-row upsert in one transaction per batch".into(),
        raw_eps: raw,
        ledger_eps: ledger,
        target: None,
    }
}

pub async fn run(
    brokers: &str,
    postgres: &str,
    sizes: BuildSizes,
    report: &mut Report,
) -> Result<()> {
    let topic = load_topic(brokers, sizes).await?;

    let raw_dir = Scratch::new("builds-raw");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(crate::sqlite::connect_options(&raw_dir.db()))
        .await?;
    sqlx::query(RAW_TABLE).execute(&pool).await?;
    sqlx::query(RAW_INDEX).execute(&pool).await?;
    let raw_sqlite = raw(&RawPool::Sqlite(pool), brokers, &topic, sizes).await?;
    drop(raw_dir);
    let dir = Scratch::new("builds");
    let url = format!("sqlite:{}", dir.db().display());
    let ledger_sqlite = through_service(&url, brokers, &topic, sizes).await?;
    report.row(row("SQLite", sizes, raw_sqlite, ledger_sqlite));

    let schema = format!("bench_builds_{}", std::process::id());
    let (admin, scoped) = crate::postgres::fresh_schema(postgres, &schema).await?;
    let pool = sqlx::PgPool::connect(&scoped).await?;
    sqlx::query(RAW_TABLE).execute(&pool).await?;
    sqlx::query(RAW_INDEX).execute(&pool).await?;
    let raw_pg = raw(&RawPool::Postgres(pool), brokers, &topic, sizes).await?;
    let ledger_pg = through_service(&scoped, brokers, &topic, sizes).await?;
    report.row(row("PostgreSQL", sizes, raw_pg, ledger_pg));
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await?;
    Ok(())
}
