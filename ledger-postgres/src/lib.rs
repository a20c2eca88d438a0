//! PostgreSQL backend for `ledger`: entries as JSONB, per-stream locking for expected versions,
//! a gap-safe change feed, and subscriptions woken by LISTEN/NOTIFY.
//!
//! [`PostgresStore`] is a [`ledger_core::Store`] (it dereferences to one) that keeps the whole
//! contract with every capability: search, a change feed, durable cursors, health checks,
//! subscriptions and replication, and it lets an application append inside its own sqlx
//! transaction ([`PostgresStore::append_in`]).
//!
//! Search offers both modes ([`ledger_core::SearchMode`]): `Substring` (a plain text) matches
//! string values of the payload at any depth, ignoring ASCII case, exactly as every backend
//! does ([`ledger_core::payload_contains`]); `FullText` ([`ledger_core::SearchQuery::full_text`])
//! matches words with PostgreSQL's text search (`to_tsvector('simple', payload) @@
//! websearch_to_tsquery(…)`), served by a GIN index that [`PostgresStore::ensure_search_index`]
//! builds.
//!
//! ```no_run
//! use ledger_core::{AppendInput, ExpectedVersion, ReadOptions, Store};
//! use ledger_postgres::PostgresStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ledger_core::Result<()> {
//! let store = PostgresStore::builder()
//!     .table("orders")
//!     .change_feed(true)
//!     .connect("postgres://postgres@127.0.0.1:5432/postgres")
//!     .await?;
//! let input = AppendInput::new(serde_json::json!({"sku": "A-1"})).dedup_key("request-1");
//! store.append("customer-7", vec![input], ExpectedVersion::NoStream).await?;
//! let entries = store.read("customer-7", &ReadOptions::new()).await?;
//! assert_eq!(entries[0].version, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Decisions
//!
//! - **Ids** come from a per-store sequence, allocated while the stream's row lock is held:
//!   within a stream, ascending ids are ascending versions and commit order, so per-stream reads
//!   and subscriptions by id are gap-safe.
//! - **Expected versions** are decided by the database: each append upserts and locks the
//!   stream's row in `t_streams` before reading its version, so of two appenders expecting the
//!   same version, from any connection or process, exactly one wins; `UNIQUE (stream, version)`
//!   backs it up. Appends to different streams proceed in parallel.
//! - **One statement per append** in the common case: the version bump under the row lock, the
//!   expected-version check, the insert and (with the change feed) the feed record run as one
//!   autocommitted statement. When it does not apply (the check fails, or a dedup key is taken,
//!   which the unique index reports) nothing was written and the append is decided again in a
//!   transaction that looks the keys up, so conflicts and idempotent retries are reported
//!   exactly as elsewhere.
//! - **Dedup** is a unique index on `(stream, dedup_key)`; duplicates are found before insert and
//!   reported per input.
//! - **Change feed** (off by default, [`PostgresStoreBuilder::change_feed`]): gap-safe through a
//!   watermark of writers in flight, without serializing writers; see below for the mechanism
//!   and its cost. An append's record names its entries (runs of ids) instead of copying them,
//!   and reading the feed joins them back ([`ledger_core::backend::feed`]).
//! - **Payloads** are JSONB, and every payload reads back exactly as written. Where JSONB would
//!   change one (U+0000 in a string or key, which it cannot hold; `-0.0`, which it has no room
//!   for; a float of 1e16 or more, which it keeps as a decimal that reads back as an integer),
//!   the exact JSON text is stored beside it in `payload_exact` and reads return that. The JSONB
//!   column (for search and indexes) then holds U+FFFD for each U+0000.
//! - **Errors** carry their kind ([`ledger_core::BackendErrorKind`]) from the SQLSTATE: a
//!   serialization failure or deadlock (40001, 40P01), as an append inside a caller's
//!   `SERIALIZABLE` or `REPEATABLE READ` transaction meets when it loses a race, is a conflict
//!   to retry ([`ledger_core::Error::is_conflict`]).
//! - **Connections**: a store opened by URL has a pool (10 connections by default) and, for
//!   wake-ups, a LISTEN connection of its own beside the pool; stores opened on one
//!   [`PostgresDatabase`] share both. Closing a store closes what it owns.
//! - **Wake-ups across processes**: each commit's table is notified right after COMMIT by a
//!   task of the database, never inside the writing transaction: a transaction that ran
//!   `NOTIFY` holds a cluster-wide lock from its COMMIT until the commit is durable, which
//!   would make concurrent writers commit one at a time. Commits landing together share one
//!   notification. [`PostgresStore::append_in`] cannot see the caller's COMMIT, so it notifies
//!   inside the caller's transaction (such transactions take that lock).
//! - **Table names** follow the core rule (up to 63 bytes). Derived names (`t_streams`,
//!   `t_cursors`, …) that would exceed PostgreSQL's 63-byte identifiers use a prefix of the table
//!   name plus a hash of the whole name, so they never collide.
//! - **Migrations** are recorded per store in `ledger_migrations` and serialized by an advisory
//!   lock, so several processes may open a store at once. A store migrated by a newer release
//!   is refused ([`ledger_core::Error::IncompatibleSchema`]).
//!
//! ## Gap-safe change feed
//!
//! A sequence value is taken at insert but becomes visible at commit, so commits can land out of
//! sequence order and a reader tailing by sequence can skip a late commit forever. Here every
//! feed writer, before it takes its position from the sequence `t_feed_pos`, takes a *fence*: a
//! shared transaction-scoped advisory lock tagged with the last position taken so far, held
//! until it commits or rolls back. Positions above a held fence's tag may still be in flight;
//! everything at or below the lowest tag (or, with no fence held, the last position taken) is
//! finished. A reader reads that *horizon* (the sequence, then `pg_locks`) in one statement and
//! the records up to it in the next, so it never finds a new record below one it has read
//! ([`ledger_core::FeedOrder::GapSafeWatermark`]). Positions are ascending but not contiguous
//! (a rollback leaves a hole, which readers pass once its writer is gone).
//!
//! The cost: a writer takes one uncontended shared lock and one `nextval`, and never waits for
//! another writer, so concurrent appends commit in parallel (and share WAL flushes). A reader
//! pays one scan of `pg_locks` per page read. Readers wait behind a feed writer of this store
//! that stays open (an append inside a long [`PostgresStore::append_in`] transaction holds its
//! fence until the caller commits), never behind unrelated transactions in other tables or
//! databases. A record committed after a writer that then rolls back is delivered at the next
//! commit or subscription poll, as a rollback wakes nobody.
//!
//! # Features
//!
//! This crate has no optional features.
#![deny(missing_docs)]

mod append;
mod backend;
mod database;
mod feed;
mod listen;
mod notify;
mod read;
mod replica;
mod schema;
mod sql;

use std::sync::Arc;

use sqlx::{PgConnection, PgPool};

use ledger_core::backend::CommitSignal;
use ledger_core::{AppendInput, AppendResult, ExpectedVersion, Result, Store, validate_table_name};

pub use database::PostgresDatabase;
pub use schema::SCHEMA_VERSION;

use crate::backend::PostgresBackend;
use crate::database::Database;
use crate::sql::{Names, Statements};

/// The table a store uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "ledger_entries";

pub(crate) use ledger_sql::backend_err;

/// Options for opening a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresStoreBuilder {
    table: String,
    change_feed: bool,
    listen: bool,
    max_connections: u32,
}

impl PostgresStoreBuilder {
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

    /// Wakes subscriptions through LISTEN/NOTIFY (default on): the database's one listener
    /// holds a connection of its own, beside the pool. Off, subscriptions rely on polling alone.
    pub fn listen(mut self, enabled: bool) -> Self {
        self.listen = enabled;
        self
    }

    /// Pool size when connecting by URL (default 10).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Connects to `url` (`postgres://user@host:port/db`) with a database of the store's own
    /// (a pool and a listener), which closing the store closes. To share one among several
    /// stores, open them on a [`PostgresDatabase`].
    pub async fn connect(self, url: &str) -> Result<PostgresStore> {
        validate_table_name(&self.table)?;
        let db = Database::connect(url, self.max_connections).await?;
        self.build(db, true).await
    }

    /// Uses an existing pool (for appending inside the application's own transactions), with a
    /// listener of the store's own. Closing the store leaves the pool open.
    pub async fn with_pool(self, pool: PgPool) -> Result<PostgresStore> {
        validate_table_name(&self.table)?;
        self.build(Arc::new(Database::new(pool, false)), true).await
    }

    /// Opens the store on a shared database; closing the store leaves the database open.
    pub async fn open(self, database: &PostgresDatabase) -> Result<PostgresStore> {
        validate_table_name(&self.table)?;
        self.build(database.inner.clone(), false).await
    }

    async fn build(self, db: Arc<Database>, owns_db: bool) -> Result<PostgresStore> {
        let names = Names::new(&self.table);
        if let Err(e) = schema::migrate(db.pool(), &names).await {
            if owns_db {
                db.close().await;
            }
            return Err(e);
        }
        let signal = Arc::new(CommitSignal::new());
        if self.listen {
            db.listen(&self.table, &signal);
        }
        let backend = Arc::new(PostgresBackend {
            db,
            owns_db,
            sql: Statements::new(names, self.change_feed),
            change_feed: self.change_feed,
            signal,
        });
        Ok(PostgresStore {
            store: Store::from_backend(backend.clone()),
            backend,
        })
    }
}

/// A ledger store on PostgreSQL: a [`Store`] (it dereferences to one) with PostgreSQL's own
/// methods. Clones share the store.
#[derive(Clone)]
pub struct PostgresStore {
    store: Store,
    backend: Arc<PostgresBackend>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table())
            .field("change_feed", &self.backend.change_feed)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for PostgresStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl AsRef<Store> for PostgresStore {
    fn as_ref(&self) -> &Store {
        &self.store
    }
}

impl From<PostgresStore> for Store {
    fn from(postgres: PostgresStore) -> Store {
        postgres.store
    }
}

impl PostgresStore {
    /// Options, starting from the defaults.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            table: DEFAULT_TABLE.to_owned(),
            change_feed: false,
            listen: true,
            max_connections: 10,
        }
    }

    /// Connects to `url` with the default table and options.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    /// The store's table name.
    pub fn table(&self) -> &str {
        &self.backend.sql.names.table
    }

    /// The connection pool (to begin transactions for [`PostgresStore::append_in`]).
    pub fn pool(&self) -> &PgPool {
        self.backend.db.pool()
    }

    /// Appends inside the caller's transaction, so that an application's own write and its
    /// ledger entries commit (or roll back) together. Same semantics and checks as
    /// [`Store::append`]; the stream's row lock (and, with the change feed, the feed fence that
    /// feed readers wait behind) is held until the caller commits, so keep such transactions
    /// short.
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        let backend = &self.backend;
        let run = async |entries| {
            let result = append::append_on(conn, &backend.sql, stream, entries, expected).await?;
            // Delivered when the caller commits (see notify.rs for what NOTIFY costs there).
            sqlx::query(&backend.sql.notify)
                .bind(&backend.sql.names.table)
                .execute(&mut *conn)
                .await
                .map_err(backend_err)?;
            Ok(result)
        };
        self.store.append_with(stream, entries, expected, run).await
    }

    /// Builds the GIN index that serves [`ledger_core::SearchMode::FullText`] (idempotent; does
    /// not block writers while it builds). An invalid index left by an earlier build that failed
    /// is dropped and built again.
    pub async fn ensure_search_index(&self) -> Result<()> {
        self.store.check_open()?;
        let sql = &self.backend.sql;
        let pool = self.pool();
        let valid: Option<bool> = sqlx::query_scalar(&sql.fts_index_valid)
            .bind(format!("\"{}\"", sql.names.fts_index))
            .fetch_optional(pool)
            .await
            .map_err(backend_err)?;
        if valid == Some(false) {
            // A build that failed or was interrupted leaves an INVALID index, which serves no
            // query and which `IF NOT EXISTS` would keep: drop it and build again.
            sqlx::query(&sql.drop_fts_index)
                .execute(pool)
                .await
                .map_err(backend_err)?;
        }
        if valid != Some(true) {
            sqlx::query(&sql.create_fts_index)
                .execute(pool)
                .await
                .map_err(backend_err)?;
        }
        Ok(())
    }
}
