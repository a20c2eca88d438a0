//! The service binary killed with SIGKILL while it consumes a topic, then restarted: it
//! converges to the right rows, and the ledger holds each record exactly once.

mod support;

use std::time::Duration;

use futures::future::join_all;
use ledger_builds::{BuildService, BuildServiceOptions, DEAD_LETTER_STREAM, build_stream};
use ledger_readmodel::testkit::{kill_hard, start_service};
use serde_json::Value;
use support::{KAFKA_TIMEOUT, eventually, message, new_topic, producer, snapshot, uuid};
use tokio::process::{Child, Command};

const BUILDS: u32 = 100;
const SNAPSHOTS: i64 = 10;

async fn start(config: &std::path::Path) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger-builds"));
    command
        .arg("-c")
        .arg(config)
        .arg("serve")
        .env("RUST_LOG", "warn");
    start_service(command).await
}

async fn builds(base: &str) -> Vec<String> {
    match reqwest::get(format!("{base}/build?limit=10000")).await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_and_restarted_the_service_converges() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("builds.db");
    let topic = new_topic(3).await;
    let config = dir.path().join("builds.yaml");
    std::fs::write(
        &config,
        format!(
            "host: 127.0.0.1\nport: 0\ndatabase: sqlite:{}\nbuildsEventStream:\n  plugin: Kafka\n  config:\n    group: crash_{group}\n    topic: {topic}\n    version: 1\n    brokers: {}\n    offsetReset: earliest\n    batch: 5\n    librdkafka:\n      session.timeout.ms: '6000'\n",
            db.display(),
            support::brokers(),
            group = ledger_core::testkit::fresh_table(),
        ),
    )
    .unwrap();

    // Every build's snapshots, shuffled over partitions and times.
    let project = uuid('a', 1);
    let mut records: Vec<(i32, Vec<u8>)> = Vec::new();
    for n in 0..BUILDS {
        for second in 0..SNAPSHOTS {
            let value = message("updated", snapshot(&uuid('b', n), &project, second, second));
            records.push((fastrand::i32(0..3), value));
        }
    }
    fastrand::shuffle(&mut records);
    let producer = producer();
    let sends = records.iter().map(|(partition, value)| {
        let record: rdkafka::producer::FutureRecord<'_, str, [u8]> =
            rdkafka::producer::FutureRecord::to(&topic)
                .partition(*partition)
                .payload(value);
        producer.send(record, KAFKA_TIMEOUT)
    });
    for sent in tokio::time::timeout(KAFKA_TIMEOUT * 3, join_all(sends))
        .await
        .unwrap()
    {
        sent.unwrap_or_else(|(e, _)| panic!("producing: {e}"));
    }

    let t0 = std::time::Instant::now();
    let (child, address) = start(&config).await;
    let base = format!("http://{address}");
    eventually("the first rows", Duration::from_secs(60), || async {
        (!builds(&base).await.is_empty()).then_some(())
    })
    .await;
    kill_hard(&child);
    let _ = child.wait_with_output().await;
    let (ledger, _) = ledger_readmodel::open(
        &format!("sqlite:{}", db.display()),
        ledger_builds::DEFAULT_LEDGER_TABLE,
    )
    .await
    .unwrap();
    let mut stored = 0;
    for n in 0..BUILDS {
        stored += ledger.count(&build_stream(&uuid('b', n))).await.unwrap();
    }
    ledger.close().await.unwrap();
    let total = u64::from(BUILDS) * SNAPSHOTS as u64;
    assert!(
        stored < total,
        "killed after all {total} records were stored"
    );

    eprintln!("killed at {:?} with {stored} stored", t0.elapsed());
    let (mut child, address) = start(&config).await;
    let base = format!("http://{address}");
    let http = reqwest::Client::new();
    let newest = (SNAPSHOTS - 1).to_string();
    eventually(
        "every build at its newest snapshot",
        Duration::from_secs(120),
        || async {
            if builds(&base).await.len() != BUILDS as usize {
                return None;
            }
            for n in 0..BUILDS {
                let url = format!("{base}/build/{}", uuid('b', n));
                let row: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                if row["bytesReal"].as_str() != Some(newest.as_str()) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    eprintln!("converged at {:?}", t0.elapsed());
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let _ = child.wait().await;

    let service = BuildService::open(
        &format!("sqlite:{}", db.display()),
        BuildServiceOptions::default(),
    )
    .await
    .unwrap();
    for n in 0..BUILDS {
        let stream = build_stream(&uuid('b', n));
        assert_eq!(
            service.ledger().count(&stream).await.unwrap(),
            SNAPSHOTS as u64,
            "{stream}"
        );
    }
    assert_eq!(service.ledger().count(DEAD_LETTER_STREAM).await.unwrap(), 0);
}
