//! Wake-ups from LISTEN/NOTIFY: commits are notified on the channel [`CHANNEL`], with their
//! store's table as the payload (see notify.rs); one listener connection per database turns
//! notifications into the commit signals of the stores on it.
//!
//! The listener has a connection of its own, opened with the store pool's options outside that
//! pool: a LISTEN connection is held for as long as stores listen, and taking it from the pool
//! would leave one connection fewer for everything else (none, for a pool of one). One channel
//! for every store means the listener never has to LISTEN again when a store joins.
//!
//! A lost connection is re-established (sqlx listens again); since notifications sent meanwhile
//! are lost, every reconnect signals every store, so subscribers re-read from their cursors.
//! They never rely on a notification for correctness, only for promptness; polling remains the
//! fallback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};

use ledger_core::backend::CommitSignal;

/// The channel every store notifies, with its table as the payload.
pub const CHANNEL: &str = "ledger_commits";

/// The stores' signals by table.
type Signals = Arc<Mutex<HashMap<String, Vec<Weak<CommitSignal>>>>>;

/// A running listener: its connection and the task reading it.
pub struct Listener {
    /// Holds the one LISTEN connection; reconnects go through it.
    pool: PgPool,
    signals: Signals,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// A listener with a connection like `store_pool`'s, waking no store yet.
    pub fn spawn(store_pool: &PgPool) -> Self {
        let options = store_pool.connect_options().as_ref().clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options);
        let signals = Signals::default();
        let task = tokio::spawn(listen(pool.clone(), signals.clone()));
        Listener {
            pool,
            signals,
            task,
        }
    }

    /// Raises `signal` on every notification for `table`, from now on.
    pub fn add(&self, table: &str, signal: Weak<CommitSignal>) {
        let mut signals = self.signals.lock().unwrap_or_else(|p| p.into_inner());
        signals.entry(table.to_owned()).or_default().push(signal);
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

/// Raises the signals of `table` (of every table with `None`), forgetting closed stores'.
fn raise(signals: &Signals, table: Option<&str>) {
    let mut signals = signals.lock().unwrap_or_else(|p| p.into_inner());
    for (name, list) in signals.iter_mut() {
        if table.is_none_or(|t| t == name) {
            list.retain(|s| s.upgrade().inspect(|signal| signal.committed()).is_some());
        }
    }
}

async fn listen(pool: PgPool, signals: Signals) {
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
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(pause).await;
            continue;
        }
        pause = Duration::from_millis(100);
        // Listening (again): anything may have happened while we were not.
        raise(&signals, None);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => raise(&signals, Some(n.payload())),
                // The connection dropped and sqlx listens again on a new one.
                Ok(None) => {
                    tracing::debug!("LISTEN connection lost; listening again");
                    raise(&signals, None);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; reconnecting");
                    break;
                }
            }
        }
    }
}
