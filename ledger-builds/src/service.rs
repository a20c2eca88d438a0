//! The build service: a ledger, the read model beside it, and the pipeline between them.

use std::sync::Arc;
use std::time::Duration;

use ledger_core::{FeedConsumer, Mutation, MutationKind, ReadOptions, Store, SubscribeOptions};
use ledger_readmodel::Db;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::event::parse_uuid;
use crate::ingest::{self, DEAD_LETTER_STREAM, DeadLetter, Message, Origin, Outcome};
use crate::pipeline::{DbPlugin, Pipeline, Retry};
use crate::readmodel::{self, BuildRow, IdColumn};

/// The ledger table the service keeps its streams in, unless
/// [`BuildServiceOptions::ledger_table`] names another.
pub const DEFAULT_LEDGER_TABLE: &str = "builds_ledger";

/// The most ids one page of `GET /build` or `GET /project` returns.
pub const MAX_PAGE: u32 = 10_000;

/// How a [`BuildService`] runs.
#[derive(Clone)]
pub struct BuildServiceOptions {
    /// The ledger table (default [`DEFAULT_LEDGER_TABLE`]).
    pub ledger_table: String,
    /// DB plugins, run in this order after the read model.
    pub plugins: Vec<Arc<dyn DbPlugin>>,
    /// How failed projections are retried.
    pub retry: Retry,
    /// How often the read model looks for events other processes stored.
    pub poll_interval: Duration,
}

impl Default for BuildServiceOptions {
    fn default() -> BuildServiceOptions {
        BuildServiceOptions {
            ledger_table: DEFAULT_LEDGER_TABLE.to_owned(),
            plugins: Vec::new(),
            retry: Retry::default(),
            poll_interval: Duration::from_millis(200),
        }
    }
}

impl BuildServiceOptions {
    /// Adds a DB plugin after those already added.
    pub fn plugin(mut self, plugin: impl DbPlugin) -> BuildServiceOptions {
        self.plugins.push(Arc::new(plugin));
        self
    }
}

/// Probo-DB's job on a ledger: build events in, the `build` read model and its API out.
/// Clones share the service.
#[derive(Clone)]
pub struct BuildService {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Store,
    db: Db,
    pipeline: Pipeline,
    poll_interval: Duration,
    /// One pass at a time in this process (others in other processes are safe anyway).
    projecting: Mutex<()>,
    follower: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.follower.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for BuildService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildService")
            .field("backend", &self.inner.ledger.backend_kind())
            .finish_non_exhaustive()
    }
}

impl BuildService {
    /// Opens the service's database at `url` (`sqlite:PATH`, `sqlite::memory:` or
    /// `postgres://…`), creates its tables if missing (the migration), and brings the read
    /// model and plugins up to date.
    pub async fn open(url: &str, options: BuildServiceOptions) -> Result<BuildService> {
        let (ledger, db) = ledger_readmodel::open(url, &options.ledger_table)
            .await
            .map_err(|e| match e {
                ledger_core::Error::InvalidArgument(reason) => Error::invalid("database", reason),
                other => Error::Store(other),
            })?;
        readmodel::migrate(&db).await?;
        let pipeline = Pipeline::new(ledger.clone(), db.clone(), options.plugins, options.retry)?;
        let service = BuildService {
            inner: Arc::new(Inner {
                ledger,
                db,
                pipeline,
                poll_interval: options.poll_interval,
                projecting: Mutex::new(()),
                follower: std::sync::Mutex::new(None),
            }),
        };
        service.catch_up().await?;
        Ok(service)
    }

    /// The ledger the events are kept in.
    pub fn ledger(&self) -> &Store {
        &self.inner.ledger
    }

    /// Stores `messages` in the ledger (see [`Outcome`]); the read model follows. Once this
    /// returns, the messages are durable and their source may commit them.
    pub async fn ingest(&self, messages: Vec<Message>) -> Result<Vec<Outcome>> {
        ingest::store(&self.inner.ledger, &messages).await
    }

    /// [`BuildService::ingest`] of a batch the caller keeps (to retry it).
    pub(crate) async fn ingest_all(&self, messages: &[Message]) -> Result<Vec<Outcome>> {
        ingest::store(&self.inner.ledger, messages).await
    }

    /// Applies every stored event the read model and plugins have not yet applied. The
    /// follower ([`BuildService::follow`]) does this as events arrive.
    pub async fn catch_up(&self) -> Result<()> {
        let _one = self.inner.projecting.lock().await;
        self.inner.pipeline.pass().await
    }

    /// Keeps the read model and plugins following the ledger in the background until the
    /// service is dropped. Idempotent.
    pub fn follow(&self) {
        let mut follower = self.inner.follower.lock().expect("follower lock");
        if follower.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let mut commits = self.inner.ledger.commits();
        let poll = self.inner.poll_interval;
        *follower = Some(tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let service = BuildService { inner };
                if let Err(e) = service.catch_up().await {
                    tracing::warn!(error = %e, "read model pass failed; retrying");
                }
                drop(service);
                // Woken by this process's commits, and by the clock for other processes'.
                match commits.as_mut() {
                    Some(rx) => {
                        let _ = tokio::time::timeout(poll, rx.changed()).await;
                    }
                    None => tokio::time::sleep(poll).await,
                }
            }
        }));
    }

    /// `Ok` if the database answers and no plugin is stuck retrying; else why not.
    pub async fn ready(&self) -> Result<(), String> {
        self.inner.ledger.health().await.map_err(|e| {
            tracing::warn!(error = %e, "readiness: the database does not answer");
            "the database does not answer".to_owned()
        })?;
        match self.inner.pipeline.stalled() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// The row of build `id` (a UUID, either case), if the build is known.
    pub async fn build(&self, id: &str) -> Result<Option<BuildRow>> {
        let id = parse_uuid(id).map_err(|e| Error::invalid("build id", e))?;
        readmodel::build(&self.inner.db, &id).await
    }

    /// Up to `limit` build ids after `after`, ascending (reaped builds included).
    pub async fn builds(&self, after: Option<&str>, limit: u32) -> Result<Vec<String>> {
        check_page(limit)?;
        readmodel::ids(&self.inner.db, IdColumn::Build, after, limit).await
    }

    /// Up to `limit` project ids after `after`, ascending (projects whose builds are all
    /// reaped included).
    pub async fn projects(&self, after: Option<&str>, limit: u32) -> Result<Vec<String>> {
        check_page(limit)?;
        readmodel::ids(&self.inner.db, IdColumn::Project, after, limit).await
    }

    /// The disk usage of project `id`: the real bytes of its builds that are not reaped (0
    /// when there are none).
    pub async fn project_disk_usage(&self, id: &str) -> Result<i64> {
        let id = parse_uuid(id).map_err(|e| Error::invalid("project id", e))?;
        readmodel::project_disk_usage(&self.inner.db, &id).await
    }

    /// The refused messages, oldest first, up to `limit`.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        let entries = self
            .inner
            .ledger
            .read(DEAD_LETTER_STREAM, &ReadOptions::default().limit(limit))
            .await?;
        entries
            .into_iter()
            .map(|e| {
                serde_json::from_value(e.payload)
                    .map_err(|err| Error::invalid("dead letter", format!("entry {}: {err}", e.id)))
            })
            .collect()
    }

    /// Stores each line of `input` (JSON lines of wire messages: a replay), then applies
    /// them; blank lines are skipped. Replaying the same lines again stores nothing new.
    pub async fn replay(&self, input: impl AsyncBufRead + Unpin) -> Result<Vec<Outcome>> {
        let mut lines = input.split(b'\n');
        let mut outcomes = Vec::new();
        let mut batch = Vec::new();
        let mut number = 0;
        while let Some(line) = lines.next_segment().await? {
            number += 1;
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push(Message {
                origin: Origin::line(number, line),
                value: Some(line.to_vec()),
            });
            if batch.len() == 500 {
                outcomes.extend(self.ingest(std::mem::take(&mut batch)).await?);
            }
        }
        outcomes.extend(self.ingest(batch).await?);
        self.catch_up().await?;
        Ok(outcomes)
    }

    /// Ingests the wire messages appended to the ledger stream `stream` (the embedded source:
    /// see [`crate::emit`]) as they arrive, resuming from the cursor `builds-source-<stream>`,
    /// until the future is dropped or the ledger fails.
    pub async fn run_ledger_source(&self, stream: &str) -> Result<()> {
        let consumer = FeedConsumer::new(&self.inner.ledger, format!("builds-source-{stream}"))?
            .streams([stream])
            .kinds([MutationKind::Append])
            .options(SubscribeOptions::new().poll_interval(self.inner.poll_interval));
        consumer
            .run(|records| async move {
                let messages = records
                    .into_iter()
                    .filter_map(|r| match r.mutation {
                        Mutation::Append { entries, .. } => Some(entries),
                        _ => None,
                    })
                    .flatten()
                    .map(|e| Message {
                        origin: Origin::Ledger {
                            stream: e.stream,
                            version: e.version,
                        },
                        value: Some(serde_json::to_vec(&e.payload).expect("JSON serializes")),
                    })
                    .collect();
                self.ingest(messages).await?;
                Ok(())
            })
            .await?;
        Ok(())
    }
}

fn check_page(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::invalid(
            "limit",
            format!("{limit} is not between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(())
}
