//! Telling other processes about commits: after a store's transaction commits, its table is
//! notified on [`CHANNEL`] from a task of the database's own, not inside the transaction.
//!
//! A transaction that ran `NOTIFY` takes a cluster-wide lock on the notification queue at
//! COMMIT and holds it until the commit is durable, so writers that notify commit one at a time
//! (measured here: 8 writers of one-row transactions at half the rate they reach without it).
//! Notifying after the commit keeps writers parallel; the task coalesces the commits that land
//! while it is busy into one statement, and waits [`PACE`] between statements, so a burst of
//! commits costs a few notifications. A notification is a hint (subscribers poll as well), so
//! one lost with a failed statement costs promptness only.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::listen::CHANNEL;

/// The least time between two notification statements.
const PACE: Duration = Duration::from_millis(20);

/// Tables with commits not yet notified, and the task that notifies them.
pub struct Notifier {
    pending: Arc<Pending>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Pending {
    tables: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Notifier {
    /// A notifier sending through `pool`.
    pub fn spawn(pool: PgPool) -> Self {
        let pending = Arc::new(Pending::default());
        let task = tokio::spawn(notify(pool, pending.clone()));
        Notifier { pending, task }
    }

    /// Notifies `table` soon.
    pub fn committed(&self, table: &str) {
        let mut tables = self
            .pending
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !tables.contains(table) {
            tables.insert(table.to_owned());
        }
        drop(tables);
        self.pending.wake.notify_one();
    }

    /// Stops notifying (pending tables are dropped).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn notify(pool: PgPool, pending: Arc<Pending>) {
    let statement = format!("SELECT pg_notify('{CHANNEL}', t) FROM unnest($1::text[]) AS t");
    loop {
        pending.wake.notified().await;
        let tables: Vec<String> =
            std::mem::take(&mut *pending.tables.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        if tables.is_empty() {
            continue;
        }
        if let Err(e) = sqlx::query(&statement).bind(&tables).execute(&pool).await {
            tracing::debug!(error = %e, "commit notification failed; subscribers will poll");
        }
        tokio::time::sleep(PACE).await;
    }
}
