//! Build services on fresh databases, build snapshots, and a real Kafka broker.
#![allow(dead_code)] // each test binary uses part of it

use std::future::Future;
use std::time::Duration;

use ledger_builds::{BuildService, BuildServiceOptions};
use ledger_core::testkit::{fresh_table, server::server_url};
pub use ledger_readmodel::testkit::Backend;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

/// Every Kafka call in the tests waits this long at most.
pub const KAFKA_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn fresh_url(backend: Backend) -> String {
    ledger_readmodel::testkit::fresh_url(backend, "ledger-builds-tests").await
}

pub async fn open(backend: Backend) -> BuildService {
    open_with(backend, BuildServiceOptions::default()).await
}

pub async fn open_with(backend: Backend, options: BuildServiceOptions) -> BuildService {
    let url = fresh_url(backend).await;
    BuildService::open(&url, options)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"))
}

/// The `n`th test UUID of a kind (`kind` a hex digit: builds, projects…).
pub fn uuid(kind: char, n: u32) -> String {
    format!("{kind}{kind}{kind}{kind}{kind}{kind}{kind}{kind}-0000-4000-8000-{n:012x}")
}

/// The time `second` seconds after 1 June 2026, as Probo sends it.
pub fn at(second: i64) -> String {
    ledger_builds::iso((1_780_272_000 + second) * 1_000_000)
}

/// A build snapshot: build `id` of `project` updated at `second` with `bytes` real bytes.
pub fn snapshot(id: &str, project: &str, second: i64, bytes: i64) -> Value {
    json!({
        "id": id, "projectId": project, "status": "running", "submittedState": "submitted",
        "createdAt": at(0), "updatedAt": at(second),
        "diskSpace": {"realBytes": bytes, "virtualBytes": bytes * 2},
        "branch": {"name": format!("branch-{second}"), "htmlUrl": "https://example.com/b"},
        "pullRequest": {"number": "7", "name": "pr", "description": "d", "htmlUrl": "https://example.com/p"},
        "commit": {"ref": "abc", "htmlUrl": "https://example.com/c"},
        "config": {"image": "php:8"},
        "reaped": false, "pinned": false,
    })
}

/// The wire message carrying `build` with event `event`.
pub fn message(event: &str, build: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"version": "1", "data": {"event": event, "data": {}, "build": build}}),
    )
    .unwrap()
}

/// The broker the tests use.
pub fn brokers() -> String {
    server_url("LEDGER_KAFKA_BROKERS", env!("CARGO_MANIFEST_DIR"))
}

/// A new topic with `partitions` partitions.
pub async fn new_topic(partitions: i32) -> String {
    let name = format!("builds_{}", fresh_table());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("an admin client");
    let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
    let created = tokio::time::timeout(KAFKA_TIMEOUT, admin.create_topics([&topic], &options))
        .await
        .unwrap_or_else(|_| panic!("creating topic {name} timed out on {}", brokers()))
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
    for result in created {
        result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
    name
}

/// A producer on the test broker.
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.timeout.ms", "20000")
        .set("compression.type", "none")
        .create()
        .expect("a producer")
}

/// Produces `value` (none: a record without a value) to `partition` of `topic`; returns its
/// offset.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    value: Option<&[u8]>,
) -> i64 {
    let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).partition(partition);
    if let Some(value) = value {
        record = record.payload(value);
    }
    let Ok(sent) = tokio::time::timeout(KAFKA_TIMEOUT, producer.send(record, KAFKA_TIMEOUT)).await
    else {
        panic!("producing to {topic} timed out");
    };
    match sent {
        Ok(delivered) => delivered.offset,
        Err((e, _)) => panic!("producing to {topic}: {e}"),
    }
}

/// Kafka settings for a new group on `topic` that starts at the topic's beginning.
pub fn kafka_settings(topic: &str) -> ledger_builds::config::KafkaSettings {
    ledger_builds::config::KafkaSettings {
        group: format!("group_{}", fresh_table()),
        topic: topic.to_owned(),
        version: 1,
        brokers: brokers(),
        offset_reset: ledger_builds::config::OffsetReset::Earliest,
        batch: 500,
        librdkafka: [
            ("session.timeout.ms".to_owned(), "6000".to_owned()),
            ("heartbeat.interval.ms".to_owned(), "500".to_owned()),
        ]
        .into(),
    }
}

/// Waits until `check` returns `Some`, polling; panics naming `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves the API of `service` on a free port of 127.0.0.1; returns its base URL.
pub async fn serve(service: &BuildService) -> String {
    serve_with(service, &[]).await
}

/// [`serve`] with API plugins.
pub async fn serve_with(
    service: &BuildService,
    plugins: &[&dyn ledger_builds::http::ApiPlugin],
) -> String {
    let options = ledger_builds::http::ApiOptions {
        server_name: "test".into(),
        version: "1.0.0".into(),
    };
    let router = ledger_builds::http::router(service.clone(), &options, plugins);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}
