//! Per-stream write leases, for deployments without transactions: appends (and annotation
//! merges) of one stream take turns, so a batch is never interleaved with another writer's and
//! a merge never overwrites a concurrent one. A writer that dies leaves its lease to expire.

use std::time::Duration;

use mongodb::bson::doc;

use ledger_core::{BackendErrorKind, Error, Result};

use crate::backend::MongoBackend;
use crate::error::{backend, is_duplicate_key};
use crate::txn::{Retry, raced};

/// How long a lease holds a stream for its writer before another writer may take it over.
const LEASE: Duration = Duration::from_secs(30);

/// A stream's write lease, held in its document in `N_streams`.
pub struct Lease {
    streams: mongodb::Collection<mongodb::bson::Document>,
    stream: String,
    token: i64,
    held: bool,
}

impl Lease {
    /// Waits for the stream to be free and takes it.
    pub async fn acquire(store: &MongoBackend, stream: &str) -> Result<Lease> {
        let token = fastrand::i64(..);
        let mut waited = Retry::new();
        loop {
            // Milliseconds as a number: every server compares those exactly.
            let now = chrono::Utc::now().timestamp_millis();
            let free = doc! {"_id": stream, "$or": [
                {"writer": {"$exists": false}},
                {"writer.until": {"$lt": now}},
            ]};
            let take = doc! {"$set": {"writer": {
                "token": token,
                "until": now + LEASE.as_millis() as i64,
            }}};
            match store.streams.update_one(free, take).upsert(true).await {
                Ok(_) => {
                    return Ok(Lease {
                        streams: store.streams.clone(),
                        stream: stream.to_owned(),
                        token,
                        held: true,
                    });
                }
                // The document exists and another writer holds it.
                Err(e) if is_duplicate_key(&e) => {
                    let busy = raced(format!("stream {stream:?} is being appended to"));
                    if !waited.again(&busy).await {
                        return Err(Error::backend(
                            BackendErrorKind::Timeout,
                            format!("stream {stream:?} stayed locked by another writer"),
                        ));
                    }
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// Hands the stream back.
    pub async fn release(&mut self) {
        self.held = false;
        // A failed release leaves the lease to expire; the append's own outcome stands.
        let _ = release(&self.streams, &self.stream, self.token).await;
    }
}

async fn release(
    streams: &mongodb::Collection<mongodb::bson::Document>,
    stream: &str,
    token: i64,
) -> mongodb::error::Result<()> {
    streams
        .update_one(
            doc! {"_id": stream, "writer.token": token},
            doc! {"$unset": {"writer": ""}},
        )
        .await
        .map(|_| ())
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A cancelled append: hand the stream back now rather than after the lease expires.
        if self.held
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (streams, stream, token) = (self.streams.clone(), self.stream.clone(), self.token);
            runtime.spawn(async move {
                let _ = release(&streams, &stream, token).await;
            });
        }
    }
}
