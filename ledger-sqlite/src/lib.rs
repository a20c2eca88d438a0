//! SQLite backend for `ledger`: the embedded default store.
//!
//! [`SqliteStore`] keeps the whole [`ledger_core::Store`] contract with every capability: search,
//! a change feed, durable cursors, health checks and subscriptions, and it lets an application
//! append inside its own sqlx transaction ([`SqliteStore::append_in`]). It runs in-process on a
//! file (WAL, `synchronous = NORMAL`) or in memory, through sqlx.
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
//! let order = Stream::<_, Shipped>::new(store.clone(), "order-7")?;
//! order.append(vec![Shipped { parcel: "P-1".into() }], ExpectedVersion::NoStream).await?;
//! assert_eq!(order.read(&ReadOptions::new()).await?[0].payload.parcel, "P-1");
//! # Ok(())
//! # }
//! ```
//!
//! # Decisions
//!
//! - **Ids** are `i64` from an `AUTOINCREMENT` key: ascending, never reused after a trim.
//! - **Concurrency**: every write runs in `BEGIN IMMEDIATE`, taking SQLite's single write lock
//!   before it reads the stream's version, so expected-version checks cannot race; writers of one
//!   process also queue on an in-process lock instead of spinning on `SQLITE_BUSY`. Writers in
//!   other processes wait up to the busy timeout (30 s).
//! - **Change feed** (off by default, [`SqliteStoreBuilder::change_feed`]): one record per
//!   mutation in the same transaction. Positions are commit-ordered because writes are
//!   serialized, so the feed is gap-safe without further machinery. Enabling it writes each
//!   payload twice.
//! - **Search** matches string values of the payload at any depth, ignoring ASCII case, with
//!   `%` and `_` taken literally ([`ledger_core::payload_contains`], the same on every backend);
//!   it scans the stream (or the table), testing the JSON text first where it can.
//! - **Cancellation**: dropping an append's future never leaves a transaction open (which would
//!   lock the file for every other writer): the append runs to its end on a task of its own,
//!   committed or rolled back. Read the stream, or retry with a dedup key, to learn which.
//! - **Migrations** are recorded per store in `ledger_migrations`; a store migrated by a newer
//!   release is refused ([`ledger_core::Error::IncompatibleSchema`]).
//! - **Timestamps** are stored as microseconds since the Unix epoch.
//!
//! # Features
//!
//! This crate has no optional features.
#![deny(missing_docs)]

mod append;
mod feed;
mod read;
mod schema;
mod sql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use ledger_core::append::{
    merge_annotations, now, validate_annotations, validate_append, validate_tags,
};
use ledger_core::{
    AppendInput, AppendOutcome, BackendErrorKind, Capabilities, ChangeFeed, CursorStore, Entry,
    Error, ExpectedVersion, FeedRecord, Health, Lifecycle, ListOptions, Mutation, ReadOptions,
    Result, Search, Store, StreamStat, validate_cursor_name, validate_search_text,
    validate_stream_id, validate_table_name,
};

pub use schema::SCHEMA_VERSION;

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

    /// Opens (creating if missing) the database file at `path`.
    pub async fn open(self, path: impl AsRef<Path>) -> Result<SqliteStore> {
        self.open_path(path.as_ref().to_path_buf()).await
    }

    async fn open_path(self, path: PathBuf) -> Result<SqliteStore> {
        validate_table_name(&self.table)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        // A local file's connections do not drop like network ones: skip the ping per acquire.
        let pool_options = SqlitePoolOptions::new()
            .max_connections(self.max_connections + 1)
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
                    tokio::time::sleep(Duration::from_millis(10 + jitter_millis(attempt))).await;
                }
                Err(e) => return Err(backend_err(e)),
            }
        };
        self.build(pool, Ownership::Store).await
    }

    /// Opens a private in-memory database (gone when the store is dropped).
    pub async fn open_in_memory(self) -> Result<SqliteStore> {
        validate_table_name(&self.table)?;
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
        self.build(pool, Ownership::InMemory).await
    }

    /// Uses an existing pool (for appending inside the application's own transactions). The
    /// pool should set a busy timeout; `journal_mode = WAL` is recommended. On a file database
    /// the store keeps one of the pool's connections for writing; on an in-memory database
    /// (where every connection may be a database of its own) it writes through the pool, whose
    /// connections must all reach one database: use one connection, as
    /// [`SqliteStoreBuilder::open_in_memory`] does.
    pub async fn with_pool(self, pool: SqlitePool) -> Result<SqliteStore> {
        validate_table_name(&self.table)?;
        // `file` is empty for an in-memory (or temporary) main database.
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(&pool)
                .await
                .map_err(backend_err)?;
        let ownership = if file.is_empty() {
            Ownership::CallerInMemory
        } else {
            Ownership::Caller
        };
        self.build(pool, ownership).await
    }

    async fn build(self, pool: SqlitePool, ownership: Ownership) -> Result<SqliteStore> {
        validate_table_name(&self.table)?;
        schema::migrate(&pool, &self.table).await?;
        // A connection kept for writes (outside the pool, so a transaction it leaves open can
        // never reach another user) saves a pool round trip per write. Not for an in-memory
        // database: a connection taken out of its pool may be the only one holding it.
        let writer = match ownership {
            Ownership::InMemory | Ownership::CallerInMemory => None,
            Ownership::Store | Ownership::Caller => Some(Writer {
                conn: pool.acquire().await.map_err(backend_err)?.detach(),
                maybe_open: false,
            }),
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                sql: Statements::new(&self.table),
                pool,
                change_feed: self.change_feed,
                writer: tokio::sync::Mutex::new(writer),
                ownership,
                lifecycle: Lifecycle::new(),
            }),
        })
    }
}

struct Inner {
    sql: Statements,
    pool: SqlitePool,
    change_feed: bool,
    /// The connection writes go through (`None`: the in-memory database's single pooled one).
    /// Its lock also queues this process's writers, so they do not poll for SQLite's lock.
    writer: tokio::sync::Mutex<Option<Writer>>,
    ownership: Ownership,
    lifecycle: Lifecycle,
}

/// A few milliseconds that differ between attempts and between processes, so that openers
/// retrying at once do not collide again.
fn jitter_millis(attempt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) ^ (attempt * 7919)) % 20
}

/// Who owns the pool, and so what `close` closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// Opened by path: the store closes the pool.
    Store,
    /// Opened in memory: the store closes the pool, whose one connection also writes.
    InMemory,
    /// Given by the caller: the store closes only its write connection.
    Caller,
    /// Given by the caller, on an in-memory database: writes go through the pool, which the
    /// store leaves open.
    CallerInMemory,
}

/// The store's own write connection.
struct Writer {
    conn: SqliteConnection,
    /// An append opened a transaction by hand and may not have ended it (a panic or the
    /// runtime shutting down stopped it midway): roll back before the next write.
    maybe_open: bool,
}

impl Writer {
    async fn settle(&mut self) -> Result<()> {
        if self.maybe_open {
            // Fails harmlessly ("no transaction is active") if the append did end it.
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            self.maybe_open = false;
        }
        Ok(())
    }
}

/// A ledger store on SQLite. Clones share the pool and state.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.inner.sql.table)
            .field("change_feed", &self.inner.change_feed)
            .finish_non_exhaustive()
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
        &self.inner.sql.table
    }

    /// The connection pool (to begin transactions for [`SqliteStore::append_in`]).
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// Appends inside the caller's transaction, so that an application's own write and its
    /// ledger entries commit (or roll back) together. Same semantics as [`Store::append`].
    ///
    /// Begin the transaction with `pool.begin_with("BEGIN IMMEDIATE")`: a deferred transaction
    /// that another writer overtakes fails with `SQLITE_BUSY` instead of waiting.
    ///
    /// ```
    /// # use ledger_core::{AppendInput, ExpectedVersion, ReadOptions, Store};
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
    ) -> Result<Vec<AppendOutcome<i64>>> {
        self.check_open()?;
        validate_append(stream, &entries)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let outcome = append::append_on(
            conn,
            &self.inner.sql,
            self.inner.change_feed,
            append::Transaction::Caller,
            stream,
            entries,
            expected,
        )
        .await?;
        // Subscribers woken before the caller commits find nothing and poll again.
        self.committed();
        Ok(outcome)
    }

    fn check_open(&self) -> Result<()> {
        self.inner.lifecycle.check_open()
    }

    /// [`Store::append`] after validation, on the store's write connection.
    async fn append_now(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<i64>>> {
        let (sql, feed) = (&self.inner.sql, self.inner.change_feed);
        let mut writer = self.inner.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            drop(writer);
            let tx = append::Transaction::Caller;
            return self
                .write(async |conn| {
                    append::append_on(conn, sql, feed, tx, stream, entries, expected).await
                })
                .await;
        };
        w.settle().await?;
        w.maybe_open = true;
        let tx = append::Transaction::Own;
        let outcome =
            append::append_on(&mut w.conn, sql, feed, tx, stream, entries, expected).await;
        // append_on ended the transaction unless it failed to.
        w.maybe_open = outcome.is_err();
        drop(writer);
        if matches!(&outcome, Ok(o) if o.iter().any(|o| o.is_appended())) {
            self.committed();
        }
        outcome
    }

    fn committed(&self) {
        self.inner.lifecycle.committed();
    }

    /// Runs `work` in a write transaction (`BEGIN IMMEDIATE`), committing on success.
    async fn write<T>(
        &self,
        work: impl for<'c> AsyncFnOnce(&'c mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut writer = self.inner.writer.lock().await;
        let mut tx = match writer.as_mut() {
            Some(w) => {
                w.settle().await?;
                w.conn.begin_with("BEGIN IMMEDIATE").await
            }
            None => self.inner.pool.begin_with("BEGIN IMMEDIATE").await,
        }
        .map_err(backend_err)?;
        // On error the transaction is dropped, which rolls it back.
        let value = work(&mut tx).await?;
        tx.commit().await.map_err(backend_err)?;
        self.committed();
        Ok(value)
    }

    async fn record(
        &self,
        conn: &mut SqliteConnection,
        stream: &str,
        m: Mutation<i64>,
    ) -> Result<()> {
        if self.inner.change_feed {
            feed::record(conn, &self.inner.sql, stream, &m).await?;
        }
        Ok(())
    }

    async fn select(
        &self,
        stream: Option<&str>,
        text: Option<&str>,
        options: &ReadOptions<i64>,
    ) -> Result<Vec<Entry<i64>>> {
        let mut q = QueryBuilder::<Sqlite>::new(&self.inner.sql.read_columns);
        match stream {
            Some(s) => q.push("stream = ").push_bind(s),
            None => q.push("1 = 1"),
        };
        if let Some(text) = text {
            read::push_search(&mut q, text);
        }
        read::push_conditions(&mut q, options);
        let rows = q
            .build()
            .fetch_all(&self.inner.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(read::entry_from_row).collect()
    }
}

#[async_trait]
impl Store for SqliteStore {
    type Id = i64;

    fn capabilities(&self) -> Capabilities {
        let all = Capabilities::all();
        if self.inner.change_feed {
            all
        } else {
            all.without_change_feed()
        }
    }

    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<i64>>> {
        self.check_open()?;
        validate_append(stream, &entries)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // An append opens its transaction by hand, inside its first command (to save a round
        // trip), so dropping its future midway would leave the transaction open and the file
        // locked. It runs on a task of its own instead, which always ends it.
        let (store, stream) = (self.clone(), stream.to_owned());
        let work = async move { store.append_now(&stream, entries, expected).await };
        match tokio::spawn(work).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::backend(BackendErrorKind::Other, e)),
        }
    }

    async fn read(&self, stream: &str, options: &ReadOptions<i64>) -> Result<Vec<Entry<i64>>> {
        self.check_open()?;
        validate_stream_id(stream)?;
        options.validate()?;
        self.select(Some(stream), None, options).await
    }

    async fn count(&self, stream: &str) -> Result<u64> {
        self.check_open()?;
        validate_stream_id(stream)?;
        let n: i64 = sqlx::query_scalar(&self.inner.sql.count)
            .bind(stream)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(backend_err)?;
        Ok(n as u64)
    }

    async fn stat(&self, stream: &str) -> Result<StreamStat<i64>> {
        self.check_open()?;
        validate_stream_id(stream)?;
        let row = sqlx::query(&self.inner.sql.stat)
            .bind(stream)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(backend_err)?;
        ledger_sql::stream_stat(stream, &row)
    }

    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        self.check_open()?;
        options.validate()?;
        sqlx::query_scalar(&self.inner.sql.list_streams)
            // Every valid stream id sorts after "" (ids are never empty).
            .bind(options.after.as_deref().unwrap_or(""))
            .bind(i64::from(options.limit))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(backend_err)
    }

    async fn set_tags(&self, stream: &str, id: &i64, tags: BTreeSet<String>) -> Result<()> {
        self.check_open()?;
        validate_stream_id(stream)?;
        validate_tags(&tags)?;
        let id = *id;
        let text = serde_json::to_string(&tags).map_err(Error::Encode)?;
        self.write(async |conn| {
            let updated_at = now();
            // Tags are stored as sorted JSON text, so equal sets have equal text.
            let done = sqlx::query(&self.inner.sql.set_tags)
                .bind(text)
                .bind(updated_at.timestamp_micros())
                .bind(stream)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend_err)?;
            if done.rows_affected() == 0 {
                return ledger_sql::require_entry::<Sqlite>(
                    conn,
                    &self.inner.sql.entry_exists,
                    stream,
                    id,
                )
                .await;
            }
            let m = Mutation::SetTags {
                id,
                tags,
                updated_at,
            };
            self.record(conn, stream, m).await
        })
        .await
    }

    async fn set_annotations(
        &self,
        stream: &str,
        id: &i64,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.check_open()?;
        validate_stream_id(stream)?;
        validate_annotations(&changes)?;
        let id = *id;
        // Read-merge-write is safe: the write lock is held from BEGIN IMMEDIATE to COMMIT.
        self.write(async |conn| {
            let current: Option<String> = sqlx::query_scalar(&self.inner.sql.get_annotations)
                .bind(stream)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend_err)?;
            let current = current.ok_or_else(|| Error::entry_not_found(stream, id))?;
            let before: BTreeMap<String, String> = serde_json::from_str(&current)
                .map_err(|e| Error::corrupt(format_args!("annotations of entry {id}: {e}")))?;
            let mut annotations = before.clone();
            merge_annotations(&mut annotations, &changes);
            if annotations == before {
                return Ok(()); // nothing changes: no updated_at, no feed record
            }
            let updated_at = now();
            sqlx::query(&self.inner.sql.set_annotations)
                .bind(serde_json::to_string(&annotations).map_err(Error::Encode)?)
                .bind(updated_at.timestamp_micros())
                .bind(stream)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend_err)?;
            let m = Mutation::SetAnnotations {
                id,
                changes,
                updated_at,
            };
            self.record(conn, stream, m).await
        })
        .await
    }

    async fn trim(&self, stream: &str, up_to: &i64) -> Result<u64> {
        self.check_open()?;
        validate_stream_id(stream)?;
        let up_to = *up_to;
        self.write(async |conn| {
            let deleted = sqlx::query(&self.inner.sql.trim)
                .bind(stream)
                .bind(up_to)
                .execute(&mut *conn)
                .await
                .map_err(backend_err)?
                .rows_affected();
            if deleted > 0 {
                self.record(conn, stream, Mutation::Trim { up_to, deleted })
                    .await?;
            }
            Ok(deleted)
        })
        .await
    }

    async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        self.check_open()?;
        validate_stream_id(from)?;
        validate_stream_id(to)?;
        let sql = &self.inner.sql;
        self.write(async |conn| {
            if append::stream_version(conn, sql, from).await? == 0 {
                return Err(Error::StreamNotFound(from.to_owned()));
            }
            if append::stream_version(conn, sql, to).await? > 0 {
                return Err(Error::StreamExists(to.to_owned()));
            }
            for statement in [&sql.rename_entries, &sql.rename_stream] {
                sqlx::query(statement)
                    .bind(to)
                    .bind(from)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend_err)?;
            }
            let m = Mutation::Rename { to: to.to_owned() };
            self.record(conn, from, m).await
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        self.inner.lifecycle.close();
        // Waits for a write in progress, then releases the files' connections.
        if let Some(writer) = self.inner.writer.lock().await.take() {
            writer.conn.close().await.map_err(backend_err)?;
        }
        if matches!(self.inner.ownership, Ownership::Store | Ownership::InMemory) {
            self.inner.pool.close().await;
        }
        Ok(())
    }

    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.inner.lifecycle.commits())
    }

    fn as_search(&self) -> Option<&dyn Search<Id = i64>> {
        Some(self)
    }

    fn as_change_feed(&self) -> Option<&dyn ChangeFeed<Id = i64>> {
        self.inner
            .change_feed
            .then_some(self as &dyn ChangeFeed<Id = i64>)
    }

    fn as_cursor_store(&self) -> Option<&dyn CursorStore> {
        Some(self)
    }

    fn as_health(&self) -> Option<&dyn Health> {
        Some(self)
    }
}

#[async_trait]
impl Search for SqliteStore {
    type Id = i64;

    async fn search(
        &self,
        stream: Option<&str>,
        text: &str,
        options: &ReadOptions<i64>,
    ) -> Result<Vec<Entry<i64>>> {
        self.check_open()?;
        if let Some(s) = stream {
            validate_stream_id(s)?;
        }
        validate_search_text(text)?;
        options.validate()?;
        self.select(stream, Some(text), options).await
    }
}

#[async_trait]
impl ChangeFeed for SqliteStore {
    type Id = i64;

    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord<i64>>> {
        self.check_open()?;
        ListOptions::new().limit(limit).validate()?;
        ledger_sql::read_feed(&self.inner.pool, &self.inner.sql.read_feed, after, limit).await
    }
}

#[async_trait]
impl CursorStore for SqliteStore {
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>> {
        self.check_open()?;
        validate_cursor_name(name)?;
        ledger_sql::get_cursor(&self.inner.pool, &self.inner.sql.get_cursor, name).await
    }

    async fn set_cursor(&self, name: &str, position: u64) -> Result<()> {
        self.check_open()?;
        validate_cursor_name(name)?;
        ledger_sql::set_cursor(&self.inner.pool, &self.inner.sql.set_cursor, name, position).await
    }
}

#[async_trait]
impl Health for SqliteStore {
    async fn health(&self) -> Result<()> {
        self.check_open()?;
        ledger_sql::ping(&self.inner.pool).await
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
