//! The batched writer in front of the store: a bounded queue drained by one task that appends
//! batches (by count, bytes and time) to the ledger.

use std::time::Duration;

use chrono::Utc;
use ledger_core::AppendInput;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::model::Log;
use crate::store::LogStore;

/// What [`LogWriter::write`] does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room: the caller slows down, nothing is dropped.
    Wait,
    /// Drop the log and count it ([`LogStore::dropped`]): the caller never waits.
    Drop,
}

/// How a [`LogWriter`] batches.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Logs the queue holds (default 10 000).
    pub capacity: usize,
    /// Most logs per batch (default 1000).
    pub max_batch: usize,
    /// Most bytes per batch, by a bound on the logs' JSON length (default 64 MiB).
    pub max_batch_bytes: usize,
    /// Longest a log waits for its batch to fill (default 20 ms).
    pub max_delay: Duration,
    /// What a full queue does (default [`WhenFull::Wait`]).
    pub when_full: WhenFull,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            capacity: 10_000,
            max_batch: 1000,
            max_batch_bytes: 64 << 20,
            max_delay: Duration::from_millis(20),
            when_full: WhenFull::Wait,
        }
    }
}

/// The outcome of [`LogWriter::write`].
#[derive(Debug)]
pub enum Accepted {
    /// In the queue; the receipt says when it is durable.
    Queued(Receipt),
    /// Dropped: the queue was full (drop mode).
    Dropped,
}

/// Resolves once a queued log is in the ledger.
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<Result<bool, String>>);

impl Receipt {
    /// Waits until the log is durable: `true` if stored, `false` if its id was taken.
    pub async fn durable(self) -> Result<bool> {
        match self.0.await {
            Ok(Ok(stored)) => Ok(stored),
            Ok(Err(e)) => Err(Error::Store(ledger_core::Error::backend(
                ledger_core::BackendErrorKind::Other,
                std::io::Error::other(e),
            ))),
            Err(_) => Err(Error::Closed),
        }
    }
}

/// A checked log, ready for [`LogWriter::queue`].
#[derive(Debug)]
pub struct Prepared(AppendInput);

enum Job {
    Append {
        input: AppendInput,
        bytes: usize,
        done: oneshot::Sender<Result<bool, String>>,
    },
    /// Answered once every job before it is durable.
    Flush(oneshot::Sender<()>),
}

/// An async batched writer of logs into a [`LogStore`]. Everything it accepted is written by
/// [`LogWriter::flush`] and by [`LogWriter::shutdown`].
pub struct LogWriter {
    store: LogStore,
    queue: mpsc::Sender<Job>,
    when_full: WhenFull,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl LogWriter {
    /// Starts a writer into `store`.
    pub fn new(store: LogStore, options: WriterOptions) -> LogWriter {
        let (queue, jobs) = mpsc::channel(options.capacity.max(1));
        let task = tokio::spawn(drain(store.clone(), jobs, options));
        LogWriter {
            store,
            queue,
            when_full: options.when_full,
            task: Mutex::new(Some(task)),
        }
    }

    /// Queues a log. A bad log is refused here, naming its field; a full queue waits or drops
    /// as configured.
    pub async fn write(&self, log: Log) -> Result<Accepted> {
        let prepared = self.prepare(log)?;
        self.queue(prepared).await
    }

    /// Checks a log and makes it ready to queue, so that a caller with several can refuse them
    /// all before queueing any.
    pub fn prepare(&self, log: Log) -> Result<Prepared> {
        Ok(Prepared(self.store.create_input(log, Utc::now())?))
    }

    /// Queues a log made ready by [`LogWriter::prepare`].
    pub async fn queue(&self, prepared: Prepared) -> Result<Accepted> {
        let input = prepared.0;
        let bytes = crate::model::json_size_bound(&input.payload);
        let (done, receipt) = oneshot::channel();
        let job = Job::Append { input, bytes, done };
        match self.when_full {
            WhenFull::Wait => self.queue.send(job).await.map_err(|_| Error::Closed)?,
            WhenFull::Drop => match self.queue.try_send(job) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.store.count_dropped(1);
                    return Ok(Accepted::Dropped);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Error::Closed),
            },
        }
        Ok(Accepted::Queued(Receipt(receipt)))
    }

    /// Waits until every log queued before the call is durable and in the read model.
    pub async fn flush(&self) -> Result<()> {
        let (done, flushed) = oneshot::channel();
        self.queue
            .send(Job::Flush(done))
            .await
            .map_err(|_| Error::Closed)?;
        flushed.await.map_err(|_| Error::Closed)?;
        self.store.catch_up().await
    }

    /// Writes everything queued, then stops; later writes fail with [`Error::Closed`].
    pub async fn shutdown(&self) -> Result<()> {
        let result = self.flush().await;
        if let Some(task) = self.task.lock().await.take() {
            task.abort();
        }
        match result {
            Err(Error::Closed) => Ok(()),
            other => other,
        }
    }
}

/// The writer's task: takes a batch, appends it (retrying storage failures, so nothing
/// accepted is lost), answers the receipts.
async fn drain(store: LogStore, mut jobs: mpsc::Receiver<Job>, options: WriterOptions) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut flushes = Vec::new();
        let deadline = tokio::time::Instant::now() + options.max_delay;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Flush(done) => {
                    flushes.push(done);
                    break;
                }
                Job::Append {
                    input,
                    bytes: b,
                    done,
                } => {
                    if !batch.is_empty() && bytes + b > options.max_batch_bytes {
                        pending = Some(Job::Append {
                            input,
                            bytes: b,
                            done,
                        });
                        break;
                    }
                    bytes += b;
                    batch.push((input, done));
                }
            }
            if batch.len() >= options.max_batch {
                break;
            }
            next = match jobs.try_recv() {
                Ok(job) => Some(job),
                Err(_) => tokio::time::timeout_at(deadline, jobs.recv())
                    .await
                    .ok()
                    .flatten(),
            };
        }
        write_batch(&store, batch).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write_batch(
    store: &LogStore,
    batch: Vec<(AppendInput, oneshot::Sender<Result<bool, String>>)>,
) {
    if batch.is_empty() {
        return;
    }
    let (inputs, receipts): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let mut delay = Duration::from_millis(50);
    let mut retried = false;
    loop {
        match store.append(inputs.clone()).await {
            Ok(duplicates) => {
                // After a failure whose outcome was unknown, the batch may have committed: its
                // logs then read as duplicates of themselves, and are stored.
                for (done, duplicate) in receipts.into_iter().zip(duplicates) {
                    let _ = done.send(Ok(retried || !duplicate));
                }
                return;
            }
            Err(Error::Store(e)) if e.is_transient() => {
                tracing::warn!(error = %e, logs = inputs.len(), "log batch not written yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                retried = true;
            }
            Err(e) => {
                tracing::error!(error = %e, logs = inputs.len(), "log batch refused");
                let reason = e.to_string();
                for done in receipts {
                    let _ = done.send(Err(reason.clone()));
                }
                return;
            }
        }
    }
}
