//! Wake-ups from LISTEN/NOTIFY: appends and feed records notify the store's channel at COMMIT;
//! one listener connection per store turns notifications into commit signals for subscriptions.
//!
//! The listener has a connection of its own, opened with the store pool's options outside that
//! pool: a LISTEN connection is held for the store's life, and taking it from the pool would
//! leave one connection fewer for everything else (none, for a pool of one).
//!
//! A lost connection is re-established by the listener; since notifications sent meanwhile are
//! lost, every reconnect also signals, so subscribers re-read from their cursors (they never rely
//! on a notification for correctness, only for promptness; polling remains the fallback).

use std::sync::Weak;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};

use ledger_core::Lifecycle;

/// A running listener: its connection and the task reading it.
pub struct Listener {
    /// Holds the one LISTEN connection; reconnects go through it.
    pool: PgPool,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Listens on `channel` (with a connection like `store_pool`'s) until the store (its
    /// lifecycle) is dropped or [`Listener::stop`] is called.
    pub fn spawn(store_pool: &PgPool, channel: String, lifecycle: Weak<Lifecycle>) -> Self {
        let options = store_pool.connect_options().as_ref().clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options);
        let task = tokio::spawn(listen(pool.clone(), channel, lifecycle));
        Listener { pool, task }
    }

    /// Stops listening and closes the connection.
    pub async fn stop(&self) {
        self.task.abort();
        self.pool.close().await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen(pool: PgPool, channel: String, lifecycle: Weak<Lifecycle>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            tracing::warn!(error = %e, channel, "LISTEN failed; retrying");
            tokio::time::sleep(pause).await;
            continue;
        }
        pause = Duration::from_millis(100);
        loop {
            let Some(lifecycle) = lifecycle.upgrade() else {
                return;
            };
            // Listening (again): anything may have happened while we were not.
            lifecycle.committed();
            drop(lifecycle);
            match listener.try_recv().await {
                Ok(Some(_)) => {}
                // The connection dropped; the next try_recv reconnects and re-listens.
                Ok(None) => tracing::debug!(channel, "LISTEN connection lost; reconnecting"),
                Err(e) => {
                    tracing::warn!(error = %e, channel, "LISTEN failed; reconnecting");
                    break;
                }
            }
        }
    }
}
