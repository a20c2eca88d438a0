//! The Kafka source: a consumer group reading one topic. A batch of records is stored in the
//! ledger first and its offsets are committed only after, so a crash at any point redelivers
//! (and the dedup keys make the redelivery a no-op) instead of skipping. A batch the ledger
//! fails to take is retried, not passed over.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::error::Result;
use crate::ingest::{Message, Origin};
use crate::service::BuildService;

/// A consumer of the build-events topic.
pub struct KafkaSource {
    consumer: StreamConsumer,
    settings: KafkaSettings,
    stored: AtomicU64,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Joins the consumer group and subscribes to the topic (the broker is reached lazily).
    pub fn new(settings: KafkaSettings) -> Result<KafkaSource> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", settings.offset_reset.as_str())
            .set("client.id", "ledger-builds");
        for (key, value) in &settings.librdkafka {
            config.set(key, value);
        }
        let consumer: StreamConsumer = config.create()?;
        consumer.subscribe(&[&settings.topic])?;
        Ok(KafkaSource {
            consumer,
            settings,
            stored: AtomicU64::new(0),
        })
    }

    /// How many records this source has stored in the ledger (duplicates and dead letters
    /// included) since it was made.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// How many partitions this consumer is assigned now (0 until the group has balanced).
    pub fn assigned_partitions(&self) -> usize {
        self.consumer.assignment().map_or(0, |a| a.count())
    }

    /// Stores records as they arrive and commits their offsets once stored, until the future
    /// is dropped. Client errors (a broker away) are logged and consumption goes on.
    pub async fn run(&self, service: &BuildService) -> Result<()> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times();
        let mut batches = self.consumer.stream().ready_chunks(self.settings.batch);
        while let Some(batch) = batches.next().await {
            let mut messages = Vec::with_capacity(batch.len());
            let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for record in batch {
                let record = match record {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consumer error");
                        continue;
                    }
                };
                let (topic, partition, offset) =
                    (record.topic(), record.partition(), record.offset());
                let at = next.entry((topic.to_owned(), partition)).or_default();
                *at = (*at).max(offset + 1);
                messages.push(Message {
                    origin: Origin::Kafka {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                    },
                    value: record.payload().map(<[u8]>::to_vec),
                });
            }
            if messages.is_empty() {
                continue;
            }
            let count = messages.len() as u64;
            let store = || service.ingest_all(&messages);
            store
                .retry(backoff)
                .notify(|e, pause| {
                    tracing::warn!(error = %e, ?pause, "storing a batch failed; retrying it");
                })
                .await?;
            self.stored.fetch_add(count, Ordering::Relaxed);
            let mut offsets = TopicPartitionList::new();
            for ((topic, partition), offset) in next {
                offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            }
            // Stored before committed: a commit lost here means a redelivery, never a gap.
            if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
                tracing::warn!(error = %e, "committing offsets failed; they are redelivered");
            }
        }
        Ok(())
    }
}
