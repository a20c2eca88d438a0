//! One SQLite database shared by the stores opened on it: its connection pool and the one
//! connection writes go through.
//!
//! SQLite lets one writer in at a time per file. Writes of all the stores on one
//! [`SqliteDatabase`] queue on one in-process lock in front of one write connection, instead of
//! each store holding its own and waiting on `SQLITE_BUSY`; readers share the pool (WAL lets
//! them run beside the writer). Sharing is explicit: connections belong to the tokio runtime
//! that opened them, so a process-wide registry would hand one runtime's connections to another.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use ledger_core::Result;

use crate::backend_err;

/// An SQLite database to open stores on, sharing its pool and its one write connection:
/// `SqliteStore::builder().table(…).open_on(&database)`. Clones share it. Stores opened on it
/// stay open until each is closed; [`SqliteDatabase::close`] closes the connections under all of
/// them.
///
/// ```
/// use ledger_sqlite::{SqliteDatabase, SqliteStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ledger_core::Result<()> {
/// let database = SqliteDatabase::open_in_memory().await?;
/// let orders = SqliteStore::builder().table("orders").open_on(&database).await?;
/// let payments = SqliteStore::builder().table("payments").open_on(&database).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteDatabase {
    pub(crate) inner: Arc<Database>,
}

impl std::fmt::Debug for SqliteDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDatabase").finish_non_exhaustive()
    }
}

impl SqliteDatabase {
    /// Opens (creating if missing) the file at `path`, with 4 reader connections.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, 4).await
    }

    /// Opens the file at `path` with `max_connections` reader connections.
    pub async fn open_with(path: impl AsRef<Path>, max_connections: u32) -> Result<Self> {
        let inner = Database::file(path.as_ref().to_path_buf(), max_connections).await?;
        Ok(SqliteDatabase { inner })
    }

    /// A private in-memory database.
    pub async fn open_in_memory() -> Result<Self> {
        Ok(SqliteDatabase {
            inner: Database::in_memory().await?,
        })
    }

    /// The database behind a caller's pool (see [`crate::SqliteStoreBuilder::with_pool`]).
    pub async fn with_pool(pool: SqlitePool) -> Result<Self> {
        Ok(SqliteDatabase {
            inner: Database::with_pool(pool).await?,
        })
    }

    /// The pool the stores on this database read through.
    pub fn pool(&self) -> &SqlitePool {
        self.inner.pool()
    }

    /// Closes the write connection and, for a pool opened here, the pool. Stores on it fail
    /// with connection errors from now on.
    pub async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// A database and how the stores on it write.
pub struct Database {
    pool: SqlitePool,
    /// The connection writes go through (`None`: an in-memory database, written through its
    /// pool). Its lock queues this process's writers.
    writer: tokio::sync::Mutex<Option<Writer>>,
    /// Opened here (a file or in memory): closed with the database.
    owns_pool: bool,
}

/// The database's own write connection.
pub struct Writer {
    pub conn: SqliteConnection,
    /// An append opened a transaction by hand and may not have ended it (a panic or the
    /// runtime shutting down stopped it midway): roll back before the next write.
    pub maybe_open: bool,
}

impl Writer {
    /// Ends a transaction an interrupted append may have left open.
    pub async fn settle(&mut self) {
        if self.maybe_open {
            // Fails harmlessly ("no transaction is active") if the append did end it.
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            self.maybe_open = false;
        }
    }
}

/// A few milliseconds that differ between attempts and between processes, so that openers
/// retrying at once do not collide again.
fn jitter_millis(attempt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) ^ (attempt * 7919)) % 20
}

impl Database {
    /// The database in the file at `path` (created if missing), with a pool of
    /// `max_connections` readers.
    pub async fn file(path: PathBuf, max_connections: u32) -> Result<Arc<Database>> {
        {
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30));
            // A local file's connections do not drop like network ones: no ping per acquire.
            let pool_options = SqlitePoolOptions::new()
                .max_connections(max_connections + 1)
                .test_before_acquire(false);
            // Switching a new file to WAL needs an exclusive lock that SQLite's busy timeout does
            // not wait for, so processes opening one new file at once can see "database is
            // locked": retry for a while (once the file is in WAL mode, opening never needs it).
            let mut attempt = 0;
            let pool = loop {
                match pool_options.clone().connect_with(options.clone()).await {
                    Ok(pool) => break pool,
                    Err(sqlx::Error::Database(e))
                        if e.code().as_deref() == Some("5") && attempt < 100 =>
                    {
                        attempt += 1;
                        let pause = 10 + jitter_millis(attempt);
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                    Err(e) => return Err(backend_err(e)),
                }
            };
            Ok(Arc::new(Database::new(pool, true, false).await?))
        }
    }

    /// A private in-memory database (gone when its last store is closed or dropped).
    pub async fn in_memory() -> Result<Arc<Database>> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(backend_err)?;
        // One connection, kept forever, shared by readers and writes: the database lives as long
        // as it does (and shared-cache connections would fail each other's writes).
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(backend_err)?;
        Ok(Arc::new(Database::new(pool, true, true).await?))
    }

    /// The database behind a caller's pool, which stays the caller's: closing leaves it open.
    pub async fn with_pool(pool: SqlitePool) -> Result<Arc<Database>> {
        // `file` is empty for an in-memory (or temporary) main database.
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(&pool)
                .await
                .map_err(backend_err)?;
        Ok(Arc::new(Database::new(pool, false, file.is_empty()).await?))
    }

    async fn new(pool: SqlitePool, owns_pool: bool, in_memory: bool) -> Result<Database> {
        // A connection kept for writes (outside the pool, so a transaction it leaves open can
        // never reach another user) saves a pool round trip per write. Not for an in-memory
        // database: a connection taken out of its pool may be the only one holding it.
        let writer = if in_memory {
            None
        } else {
            let conn = pool.acquire().await.map_err(backend_err)?.detach();
            Some(Writer {
                conn,
                maybe_open: false,
            })
        };
        Ok(Database {
            pool,
            writer: tokio::sync::Mutex::new(writer),
            owns_pool,
        })
    }

    /// The pool readers (and the caller's transactions) use.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The write connection, once the writers before have finished (`None`: write through the
    /// pool).
    pub async fn writer(&self) -> tokio::sync::MutexGuard<'_, Option<Writer>> {
        let mut writer = self.writer.lock().await;
        if let Some(w) = writer.as_mut() {
            w.settle().await;
        }
        writer
    }

    /// Ends, on a task of its own, a transaction that an append dropped midway may have left
    /// open on the write connection, so that other writers (other processes, `append_in`)
    /// need not wait for the busy timeout or this store's next write.
    pub fn settle_soon(self: &Arc<Self>) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let db = Arc::clone(self);
            runtime.spawn(async move { drop(db.writer().await) });
        }
    }

    /// Closes the write connection and, if the pool was opened here, the pool.
    pub async fn close(&self) -> Result<()> {
        // Waits for a write in progress, then releases the file's connections.
        if let Some(writer) = self.writer.lock().await.take() {
            writer.conn.close().await.map_err(backend_err)?;
        }
        if self.owns_pool {
            self.pool.close().await;
        }
        Ok(())
    }
}
