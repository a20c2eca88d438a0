//! One PostgreSQL database shared by the stores opened on it: its connection pool, its one
//! LISTEN connection and its one commit notifier, so N stores on a server hold one of each, not
//! N.
//!
//! Sharing is explicit ([`PostgresDatabase`]): connections belong to the tokio runtime that
//! opened them, so a process-wide registry would hand one runtime's connections to another.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use ledger_core::Result;
use ledger_core::backend::CommitSignal;

use crate::backend_err;
use crate::listen::Listener;
use crate::notify::Notifier;

/// A PostgreSQL database to open stores on, sharing one pool and one LISTEN connection:
/// `PostgresStore::builder().table(…).open(&database)`. Clones share it. Stores opened on it
/// stay open until each is closed; [`PostgresDatabase::close`] closes the pool and the
/// listener under all of them.
///
/// ```no_run
/// use ledger_postgres::{PostgresDatabase, PostgresStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ledger_core::Result<()> {
/// let database = PostgresDatabase::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let orders = PostgresStore::builder().table("orders").open(&database).await?;
/// let payments = PostgresStore::builder().table("payments").open(&database).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresDatabase {
    pub(crate) inner: Arc<Database>,
}

impl std::fmt::Debug for PostgresDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDatabase").finish_non_exhaustive()
    }
}

impl PostgresDatabase {
    /// Connects to `url` (`postgres://user@host:port/db`) with a pool of 10 connections.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, 10).await
    }

    /// Connects to `url` with a pool of `max_connections`.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self> {
        let inner = Database::connect(url, max_connections).await?;
        Ok(PostgresDatabase { inner })
    }

    /// The database behind a caller's pool (for appending inside the application's own
    /// transactions). The pool stays the caller's: closing leaves it open.
    pub fn with_pool(pool: PgPool) -> Self {
        PostgresDatabase {
            inner: Arc::new(Database::new(pool, false)),
        }
    }

    /// The pool the stores on this database use.
    pub fn pool(&self) -> &PgPool {
        self.inner.pool()
    }

    /// Stops the listener and, for a pool opened here, closes it (waiting for calls in progress
    /// to return their connections). Stores on it fail with connection errors from now on.
    pub async fn close(&self) {
        self.inner.close().await
    }
}

/// A database and what the stores on it share.
pub struct Database {
    pool: PgPool,
    /// Opened from a URL: closed with the database.
    owns_pool: bool,
    /// The LISTEN connection, started by the first store that wants wake-ups.
    listener: std::sync::Mutex<Option<Listener>>,
    /// Notifies other processes of commits, started by the first commit.
    notifier: std::sync::Mutex<Option<Notifier>>,
}

impl Database {
    /// The database at `url`, with a pool of `max_connections` opened here.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<Database>> {
        let options: PgConnectOptions = url.parse().map_err(backend_err)?;
        // No ping per acquire (a round trip on every call): a connection the server dropped
        // fails one call with a connection error and leaves the pool; subscriptions retry.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(backend_err)?;
        Ok(Arc::new(Database::new(pool, true)))
    }

    /// The database behind a pool; `owns_pool`: closing it closes the pool.
    pub fn new(pool: PgPool, owns_pool: bool) -> Database {
        Database {
            pool,
            owns_pool,
            listener: std::sync::Mutex::new(None),
            notifier: std::sync::Mutex::new(None),
        }
    }

    /// Notifies listeners in every process, soon, that a transaction on `table` committed.
    pub fn committed(&self, table: &str) {
        let mut notifier = self.notifier.lock().unwrap_or_else(|p| p.into_inner());
        notifier
            .get_or_insert_with(|| Notifier::spawn(self.pool.clone()))
            .committed(table);
    }

    /// The pool every call of the stores on this database uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Raises `signal` whenever a commit to `table` is notified (and whenever the listener
    /// reconnects, since notifications sent meanwhile are lost).
    pub fn listen(&self, table: &str, signal: &Arc<CommitSignal>) {
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        listener
            .get_or_insert_with(|| Listener::spawn(&self.pool))
            .add(table, Arc::downgrade(signal));
    }

    /// Stops the listener and, if the pool was opened here, closes the pool (waiting for calls
    /// in progress to return their connections).
    pub async fn close(&self) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(listener) = listener {
            listener.stop().await;
        }
        let notifier = self
            .notifier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(notifier) = notifier {
            notifier.stop();
        }
        if self.owns_pool {
            self.pool.close().await;
        }
    }
}
