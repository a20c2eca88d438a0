//! SQLite backend for `ledger`: the embedded default store.
//!
//! [`SqliteStore`] is a [`ledger_core::Store`] (it dereferences to one) that keeps the whole
//! contract with every capability: search, a change feed, durable cursors, health checks,
//! subscriptions and replication, and it lets an application append inside its own sqlx
//! transaction ([`SqliteStore::append_in`]). It runs in-process on a file (WAL,
//! `synchronous = NORMAL`) or in memory, through sqlx.
//!
//! ```
//! use ledger_core::{ExpectedVersion, ReadOptions, Stream};
//! use ledger_sqlite::SqliteStore;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Shipped { parcel: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ledger_core::Result<()> {
//! let store = SqliteStore::builder().table("shipments").open_in_memory().await?;
//! let order = Stream::<Shipped>::new(&store, "order-7")?;
//! order.append(vec![Shipped { parcel: "P-1".into() }], ExpectedVersion::NoStream).await?;
//! assert_eq!(order.read(&ReadOptions::new()).await?[0].payload.parcel, "P-1");
//! # Ok(())
//! # }
//! ```
//!
//! # Decisions
//!
//! - **Ids** come from an `AUTOINCREMENT` key: ascending, never reused after a trim.
//! - **One database, many stores**: stores opened on one [`SqliteDatabase`] share its connection
//!   pool and its one write connection, so their writes queue in-process instead of waiting on
//!   SQLite's file lock. A store opened on a path alone has connections of its own.
//! - **Concurrency**: every write runs in `BEGIN IMMEDIATE`, taking SQLite's single write lock
//!   before it reads the stream's version, so expected-version checks cannot race; writers of one
//!   process also queue on an in-process lock instead of spinning on `SQLITE_BUSY`. Writers in
//!   other processes wait up to the busy timeout (30 s).
//! - **Change feed** (off by default, [`SqliteStoreBuilder::change_feed`]): one record per
//!   mutation in the same transaction. Positions are commit-ordered because writes are
//!   serialized, so the feed is gap-safe without further machinery. An append's record names
//!   its entries (a run of ids and the stream's version) instead of copying them, and reading
//!   the feed joins them back, so the feed costs one small row per append.
//! - **Appends** are one command to SQLite's worker thread (`BEGIN IMMEDIATE` … `COMMIT`, the
//!   database putting the entries after the stream's version when `expected` admits it); a
//!   conflict or a taken dedup key is then decided in two, with a lookup. A handoff to that
//!   thread costs more than the statements, so round trips are what an append is priced in.
//! - **Reads** fetch an entry's id, version, payload and creation time as columns and the rest
//!   as one JSON array: sqlx copies every value it reads from SQLite, and each column cost about
//!   as much as parsing that small array.
//! - **Search** matches string values of the payload at any depth, ignoring ASCII case, with
//!   `%` and `_` taken literally ([`ledger_core::payload_contains`], the same on every backend);
//!   it scans the stream (or the table), testing the JSON text first where it can.
//! - **Cancellation**: dropping an append's future never leaves a transaction open for long
//!   (which would lock the file for every other writer): a task of its own rolls back at once
//!   whatever the append left open, unless it had committed. Read the stream, or retry with a
//!   dedup key, to learn which.
//! - **Migrations** are recorded per store in `ledger_migrations`; a store migrated by a newer
//!   release is refused ([`ledger_core::Error::IncompatibleSchema`]).
//! - **Timestamps** are stored as microseconds since the Unix epoch.
//!
//! # Features
//!
//! This crate has no optional features.
#![deny(missing_docs)]

mod append;
mod backend;
mod database;
mod feed;
mod read;
mod replica;
mod schema;
mod sql;

use std::path::Path;
use std::sync::Arc;

use sqlx::{SqliteConnection, SqlitePool};

use ledger_core::backend::CommitSignal;
use ledger_core::{AppendInput, AppendResult, ExpectedVersion, Result, Store, validate_table_name};

pub use database::SqliteDatabase;
pub use schema::SCHEMA_VERSION;

use crate::backend::SqliteBackend;
use crate::database::Database;
use crate::sql::Statements;

/// The table a store uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "ledger_entries";

pub(crate) use ledger_sql::backend_err;

/// Options for opening a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    table: String,
    change_feed: bool,
    max_connections: u32,
}

impl SqliteStoreBuilder {
    /// The table (store name) to use; validated on open. Default [`DEFAULT_TABLE`].
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Records every mutation in the change feed (default off).
    pub fn change_feed(mut self, enabled: bool) -> Self {
        self.change_feed = enabled;
        self
    }

    /// Pool size for a file database (default 4; readers run in parallel under WAL).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Opens (creating if missing) the database file at `path`, with connections of the store's
    /// own, which closing the store closes. To share them among several stores on one file (one
    /// write connection for all), open the stores on a [`SqliteDatabase`].
    pub async fn open(self, path: impl AsRef<Path>) -> Result<SqliteStore> {
        validate_table_name(&self.table)?;
        let db = Database::file(path.as_ref().to_path_buf(), self.max_connections).await?;
        self.build(db, true).await
    }

    /// Opens a private in-memory database (gone when the store is closed or dropped).
    pub async fn open_in_memory(self) -> Result<SqliteStore> {
        validate_table_name(&self.table)?;
        self.build(Database::in_memory().await?, true).await
    }

    /// Opens the store on a shared database; closing the store leaves the database open.
    pub async fn open_on(self, database: &SqliteDatabase) -> Result<SqliteStore> {
        validate_table_name(&self.table)?;
        self.build(database.inner.clone(), false).await
    }

    /// Uses an existing pool (for appending inside the application's own transactions); closing
    /// the store leaves it open. The pool should set a busy timeout; `journal_mode = WAL` is
    /// recommended. On a file database the store keeps one of its connections for writing; on an
    /// in-memory database (where every connection may be a database of its own) it writes through
    /// the pool, whose connections must all reach one database: use one connection, as
    /// [`SqliteStoreBuilder::open_in_memory`] does.
    pub async fn with_pool(self, pool: SqlitePool) -> Result<SqliteStore> {
        validate_table_name(&self.table)?;
        self.build(Database::with_pool(pool).await?, true).await
    }

    async fn build(self, db: Arc<Database>, owns_db: bool) -> Result<SqliteStore> {
        if let Err(e) = schema::migrate(db.pool(), &self.table).await {
            if owns_db {
                db.close().await?;
            }
            return Err(e);
        }
        let backend = Arc::new(SqliteBackend {
            db,
            owns_db,
            sql: Statements::new(&self.table),
            change_feed: self.change_feed,
            signal: CommitSignal::new(),
        });
        Ok(SqliteStore {
            store: Store::from_backend(backend.clone()),
            backend,
        })
    }
}

/// A ledger store on SQLite: a [`Store`] (it dereferences to one) with SQLite's own methods.
/// Clones share the store.
#[derive(Clone)]
pub struct SqliteStore {
    store: Store,
    backend: Arc<SqliteBackend>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.table())
            .field("change_feed", &self.backend.change_feed)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for SqliteStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl AsRef<Store> for SqliteStore {
    fn as_ref(&self) -> &Store {
        &self.store
    }
}

impl From<SqliteStore> for Store {
    fn from(sqlite: SqliteStore) -> Store {
        sqlite.store
    }
}

impl SqliteStore {
    /// Options, starting from the defaults.
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            table: DEFAULT_TABLE.to_owned(),
            change_feed: false,
            max_connections: 4,
        }
    }

    /// Opens the file at `path` with the default table and options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder().open(path).await
    }

    /// The store's table name.
    pub fn table(&self) -> &str {
        &self.backend.sql.table
    }

    /// The connection pool (to begin transactions for [`SqliteStore::append_in`]).
    pub fn pool(&self) -> &SqlitePool {
        self.backend.db.pool()
    }

    /// Appends inside the caller's transaction, so that an application's own write and its
    /// ledger entries commit (or roll back) together. Same semantics and checks as
    /// [`Store::append`].
    ///
    /// Begin the transaction with `pool.begin_with("BEGIN IMMEDIATE")`: a deferred transaction
    /// that another writer overtakes fails with `SQLITE_BUSY` instead of waiting.
    ///
    /// ```
    /// # use ledger_core::{AppendInput, ExpectedVersion, ReadOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ledger_core::Result<()> {
    /// let store = ledger_sqlite::SqliteStore::builder().open_in_memory().await?;
    /// let mut tx = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    /// let input = AppendInput::new(serde_json::json!({"paid": true}));
    /// store.append_in(&mut tx, "invoice-1", vec![input], ExpectedVersion::Any).await?;
    /// tx.rollback().await.unwrap();
    /// assert!(store.read("invoice-1", &ReadOptions::new()).await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn append_in(
        &self,
        conn: &mut SqliteConnection,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        let backend = &self.backend;
        let run = async |entries: Vec<AppendInput>| {
            append::append_on(
                conn,
                &backend.sql,
                backend.change_feed,
                append::Transaction::Caller,
                stream,
                &entries,
                expected,
                None,
            )
            .await
        };
        let result = self
            .store
            .append_with(stream, entries, expected, run)
            .await?;
        // Subscribers woken before the caller commits find nothing and poll again.
        backend.signal.committed();
        Ok(result)
    }
}
