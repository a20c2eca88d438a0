//! Projections from the ledger, in order: the `build` read model first, then each DB plugin.
//! Each stage keeps its own checkpoint and goes only as far as the stage before it has, so a
//! plugin sees an event only after the read model (and every plugin before it) has. A failing
//! plugin is retried with backoff until it succeeds; it is never passed over.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use ledger_core::{FeedConsumer, MutationKind, Store, SubscribeOptions};
use ledger_readmodel::Db;

use crate::error::Result;
use crate::readmodel::{self, StoredEvent, stored_events};

/// An error a plugin returns; the event is retried.
pub type PluginError = Box<dyn std::error::Error + Send + Sync>;

/// What a plugin may use: the ledger and the read model's database (for tables of its own).
#[derive(Debug, Clone)]
pub struct PluginContext {
    /// The ledger the events are in.
    pub ledger: Store,
    /// The read model's database.
    pub db: Db,
}

/// A DB plugin: a projection of build events, run after the read model in the order plugins
/// were added, each with its own checkpoint (the ledger cursor `builds-plugin-<name>`).
///
/// Delivery is at least once: after a crash, the events since the plugin's last checkpoint are
/// delivered again, so `process` must be idempotent (the snapshot's `updatedAt` and the
/// event's ledger version make a guard).
#[async_trait]
pub trait DbPlugin: Send + Sync + 'static {
    /// The plugin's name: stable, since its checkpoint is kept under it.
    fn name(&self) -> &str;
    /// Handles one event. An error is logged and the same event is tried again, with backoff.
    async fn process(
        &self,
        event: &StoredEvent,
        context: &PluginContext,
    ) -> Result<(), PluginError>;
}

/// How failed stages are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// The first pause.
    pub min_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl Retry {
    fn backoff(self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .without_max_times()
    }
}

/// Events handed to a stage at a time.
const PAGE: u32 = 1000;

pub(crate) struct Pipeline {
    ledger: Store,
    db: Db,
    read_model: FeedConsumer,
    plugins: Vec<(Arc<dyn DbPlugin>, FeedConsumer)>,
    retry: Retry,
    /// The plugin being retried and its last error, for readiness.
    stalled: std::sync::Mutex<Option<String>>,
}

fn consumer(ledger: &Store) -> Result<FeedConsumer> {
    Ok(FeedConsumer::new(ledger, "builds-read-model")?
        .kinds([MutationKind::Append])
        .options(SubscribeOptions::new().batch(PAGE)))
}

impl Pipeline {
    pub(crate) fn new(
        ledger: Store,
        db: Db,
        plugins: Vec<Arc<dyn DbPlugin>>,
        retry: Retry,
    ) -> Result<Pipeline> {
        let read_model = consumer(&ledger)?.checkpoint(readmodel::checkpoint(&db, "build")?);
        let plugins = plugins
            .into_iter()
            .map(|plugin| {
                let name = format!("builds-plugin-{}", plugin.name());
                let consumer = FeedConsumer::new(&ledger, name)?
                    .kinds([MutationKind::Append])
                    .options(SubscribeOptions::new().batch(PAGE));
                Ok((plugin, consumer))
            })
            .collect::<Result<_>>()?;
        Ok(Pipeline {
            ledger,
            db,
            read_model,
            plugins,
            retry,
            stalled: std::sync::Mutex::new(None),
        })
    }

    /// The plugin being retried and why, if one is.
    pub(crate) fn stalled(&self) -> Option<String> {
        self.stalled.lock().expect("stalled lock").clone()
    }

    /// Brings every stage up to the feed's head as of now, in order. The read model's errors
    /// are returned (the caller tries again later); a plugin's are retried here.
    pub(crate) async fn pass(&self) -> Result<()> {
        let Some(head) = self.ledger.feed_head().await? else {
            return Ok(());
        };
        let db = self.db.clone();
        let reached = self
            .read_model
            .run_until(head, |records| {
                let db = db.clone();
                async move { readmodel::apply(&db, records).await.map_err(Into::into) }
            })
            .await?;
        let Some(mut bound) = reached else {
            return Ok(());
        };
        let context = PluginContext {
            ledger: self.ledger.clone(),
            db: self.db.clone(),
        };
        for (plugin, consumer) in &self.plugins {
            let run = || {
                consumer.run_until(bound, |records| {
                    let plugin = plugin.clone();
                    let context = context.clone();
                    async move {
                        for event in stored_events(&records) {
                            self.process(&*plugin, &event, &context).await;
                        }
                        Ok(())
                    }
                })
            };
            // The plugin's own errors are retried in `process`; this retries its checkpoint.
            let reached = run
                .retry(self.retry.backoff())
                .notify(|e, pause| {
                    tracing::warn!(plugin = plugin.name(), error = %e, ?pause,
                        "plugin checkpoint failed; retrying");
                })
                .await?;
            bound = reached.unwrap_or(bound).min(bound);
        }
        Ok(())
    }

    /// Runs `plugin` on `event` until it succeeds.
    async fn process(&self, plugin: &dyn DbPlugin, event: &StoredEvent, context: &PluginContext) {
        let attempt = || plugin.process(event, context);
        let _ = attempt
            .retry(self.retry.backoff())
            .notify(|e, pause| {
                tracing::warn!(plugin = plugin.name(), build = %event.event.build.build_id,
                    version = event.version, error = %e, ?pause, "plugin failed; retrying");
                *self.stalled.lock().expect("stalled lock") =
                    Some(format!("plugin {:?} is retrying: {e}", plugin.name()));
            })
            .await;
        *self.stalled.lock().expect("stalled lock") = None;
    }
}
