//! The Kafka source against a real broker (tansu from `cargo xtask services up`, or the Kafka
//! that `LEDGER_KAFKA_BROKERS` names): records become rows, offsets are committed after the
//! records are stored, a rewound group's redeliveries are duplicates, bad records are
//! dead-lettered with their coordinates, and snapshots of one build spread over partitions
//! converge to the newest.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ledger_builds::{BuildService, DEAD_LETTER_STREAM, KafkaSource, Origin, build_stream};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::{
    Backend, KAFKA_TIMEOUT, eventually, kafka_settings, message, new_topic, open, produce,
    producer, snapshot, uuid,
};

/// Runs a Kafka source for `service` in the background until the handle is aborted.
fn consume(
    service: &BuildService,
    settings: ledger_builds::config::KafkaSettings,
) -> (Arc<KafkaSource>, tokio::task::JoinHandle<()>) {
    let source = Arc::new(KafkaSource::new(settings).expect("a consumer"));
    let (running, service) = (source.clone(), service.clone());
    let task = tokio::spawn(async move {
        running.run(&service).await.expect("the source runs");
    });
    (source, task)
}

/// The group's committed offset of each partition of `topic`.
async fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let (group, topic) = (group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", support::brokers())
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(&topic, p);
        }
        let offsets = consumer.committed_offsets(list, KAFKA_TIMEOUT).unwrap();
        (0..partitions)
            .map(
                |p| match offsets.find_partition(&topic, p).unwrap().offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                },
            )
            .collect()
    })
    .await
    .unwrap()
}

/// Rewinds `group` to the start of every partition of `topic`.
async fn rewind(group: &str, topic: &str, partitions: i32) {
    let (group, topic) = (group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", support::brokers())
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(&topic, p, Offset::Offset(0))
                .unwrap();
        }
        consumer
            .commit(&list, rdkafka::consumer::CommitMode::Sync)
            .unwrap();
    })
    .await
    .unwrap();
}

async fn row_bytes(service: &BuildService, id: &str) -> Option<i64> {
    service.build(id).await.unwrap().map(|r| r.build.bytes_real)
}

async fn kafka_records_become_rows_and_are_committed_after_storing(backend: Backend) {
    let service = open(backend).await;
    service.follow();
    let topic = new_topic(3).await;
    let producer = producer();
    let project = uuid('a', 1);
    let ids: Vec<String> = (0..6).map(|n| uuid('b', n)).collect();
    let mut produced = [0i64; 3];
    for second in 1..=5 {
        for (n, id) in ids.iter().enumerate() {
            let partition = (n % 3) as i32;
            let value = message("updated", snapshot(id, &project, second, second * 100));
            produce(&producer, &topic, partition, Some(&value)).await;
            produced[partition as usize] += 1;
        }
    }
    let settings = kafka_settings(&topic);
    let group = settings.group.clone();
    let (_source, task) = consume(&service, settings);
    for id in &ids {
        let bytes = eventually(
            "every build's newest row",
            Duration::from_secs(30),
            || async { row_bytes(&service, id).await.filter(|&b| b == 500) },
        )
        .await;
        assert_eq!(bytes, 500);
        assert_eq!(service.ledger().count(&build_stream(id)).await.unwrap(), 5);
    }
    // Committed only once stored: the group's offsets reach the end of every partition.
    let offsets = eventually("the committed offsets", Duration::from_secs(20), || async {
        let offsets = committed(&group, &topic, 3).await;
        (offsets == produced.to_vec()).then_some(offsets)
    })
    .await;
    assert_eq!(offsets, vec![10, 10, 10]);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_records_become_rows_and_are_committed_after_storing_sqlite() {
    kafka_records_become_rows_and_are_committed_after_storing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_records_become_rows_and_are_committed_after_storing_postgres() {
    kafka_records_become_rows_and_are_committed_after_storing(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewound_group_redelivers_and_the_ledger_keeps_each_record_once() {
    let service = open(Backend::Sqlite).await;
    service.follow();
    let topic = new_topic(2).await;
    let producer = producer();
    let (id, project) = (uuid('b', 20), uuid('a', 2));
    for second in 1..=6 {
        let value = message("updated", snapshot(&id, &project, second, second));
        produce(&producer, &topic, (second % 2) as i32, Some(&value)).await;
    }
    let settings = kafka_settings(&topic);
    let group = settings.group.clone();
    let (source, task) = consume(&service, settings.clone());
    eventually("the first delivery", Duration::from_secs(30), || async {
        let offsets = committed(&group, &topic, 2).await;
        (offsets == vec![3, 3]).then_some(())
    })
    .await;
    task.abort();
    let _ = task.await;
    drop(source); // leaves the group
    assert_eq!(service.ledger().count(&build_stream(&id)).await.unwrap(), 6);

    // The group starts over (a consumer restarted before its commits landed does the same).
    rewind(&group, &topic, 2).await;
    assert_eq!(committed(&group, &topic, 2).await, vec![0, 0]);
    let (_source, task) = consume(&service, settings);
    eventually("the redelivery", Duration::from_secs(30), || async {
        let offsets = committed(&group, &topic, 2).await;
        (offsets == vec![3, 3]).then_some(())
    })
    .await;
    task.abort();
    service.catch_up().await.unwrap();
    assert_eq!(service.ledger().count(&build_stream(&id)).await.unwrap(), 6);
    assert_eq!(row_bytes(&service, &id).await, Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kafka_records_are_dead_lettered_with_their_coordinates_and_consumption_goes_on() {
    let service = open(Backend::Sqlite).await;
    service.follow();
    let topic = new_topic(1).await;
    let producer = producer();
    let (id, project) = (uuid('b', 30), uuid('a', 3));
    let bad: [Option<&[u8]>; 4] = [
        Some(b"{not json"),
        None,
        Some(br#"{"version":"1","data":{"event":"ready","data":null,"build":{}}}"#),
        Some(br#"{"version":"1","data":{"event":"ready","data":{},"build":{"id":"nope"}}}"#),
    ];
    for value in bad {
        produce(&producer, &topic, 0, value).await;
    }
    // A duplicate (the same message produced twice) and an older snapshot after a newer one.
    let newer = message("ready", snapshot(&id, &project, 9, 900));
    let older = message("started", snapshot(&id, &project, 1, 100));
    for value in [&newer, &newer, &older] {
        produce(&producer, &topic, 0, Some(value)).await;
    }
    let (_source, task) = consume(&service, kafka_settings(&topic));
    eventually(
        "the good record after the bad ones",
        Duration::from_secs(30),
        || async {
            let stored = service.ledger().count(&build_stream(&id)).await.unwrap();
            (stored == 3).then_some(())
        },
    )
    .await;
    service.catch_up().await.unwrap();
    // Produced twice, stored twice (two records), one row; the older snapshot lost.
    assert_eq!(row_bytes(&service, &id).await, Some(900));
    let letters = service.dead_letters(10).await.unwrap();
    assert_eq!(service.ledger().count(DEAD_LETTER_STREAM).await.unwrap(), 4);
    for (offset, letter) in letters.iter().enumerate() {
        assert_eq!(
            letter.origin,
            Origin::Kafka {
                topic: topic.clone(),
                partition: 0,
                offset: offset as i64
            }
        );
    }
    assert!(letters[0].reason.contains("not JSON"));
    assert_eq!(letters[1].reason, "the record has no value");
    assert!(letters[2].reason.contains("\"data.data\" is null"));
    assert!(letters[3].reason.contains("not a UUID"));
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_one_build_over_many_partitions_converge_to_the_newest() {
    let service = open(Backend::Postgres).await;
    service.follow();
    let topic = new_topic(4).await;
    let producer = producer();
    let (id, project) = (uuid('b', 40), uuid('a', 4));
    // Round-robin over partitions, so the consumer sees them in no particular order.
    for second in 0..40 {
        let value = message("updated", snapshot(&id, &project, second, second));
        produce(&producer, &topic, (second % 4) as i32, Some(&value)).await;
    }
    let (_source, task) = consume(&service, kafka_settings(&topic));
    eventually("all 40 stored", Duration::from_secs(30), || async {
        let stored = service.ledger().count(&build_stream(&id)).await.unwrap();
        (stored == 40).then_some(())
    })
    .await;
    service.catch_up().await.unwrap();
    assert_eq!(row_bytes(&service, &id).await, Some(39));
    task.abort();
}
