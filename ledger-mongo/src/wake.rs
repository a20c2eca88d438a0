//! Wake-ups from change streams: every change to the watched collection, by any process,
//! raises the store's commit signal.
//!
//! Subscriptions never rely on an event for correctness, only for promptness: they read from
//! their own cursor whenever woken, and poll meanwhile. So a change stream that breaks (a
//! dropped connection, a restarted server) is opened again after a pause, with a signal
//! raised on reopening for whatever was committed while it was down.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::Document;
use mongodb::change_stream::event::OperationType;

use ledger_core::backend::CommitSignal;

/// Pause before reopening a broken change stream.
const REOPEN_AFTER: Duration = Duration::from_millis(500);

/// Watches `collection` until `signal` is dropped.
pub fn spawn(
    collection: Collection<Document>,
    signal: &Arc<CommitSignal>,
) -> tokio::task::JoinHandle<()> {
    let signal = Arc::downgrade(signal);
    tokio::spawn(watch(collection, signal))
}

async fn watch(collection: Collection<Document>, signal: Weak<CommitSignal>) {
    let mut reopened = false;
    loop {
        match collection.watch().await {
            Ok(mut events) => {
                if reopened {
                    let Some(signal) = signal.upgrade() else {
                        return;
                    };
                    signal.committed();
                }
                // A stream that ends (its collection dropped: an invalidate event) is opened
                // again after the pause, never polled while closed.
                while events.is_alive() {
                    match events.try_next().await {
                        Ok(Some(event)) => {
                            let Some(signal) = signal.upgrade() else {
                                return;
                            };
                            signal.committed();
                            if event.operation_type == OperationType::Invalidate {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "change stream broke; reopening");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot open a change stream; retrying"),
        }
        if signal.strong_count() == 0 {
            return;
        }
        reopened = true;
        tokio::time::sleep(REOPEN_AFTER).await;
    }
}
