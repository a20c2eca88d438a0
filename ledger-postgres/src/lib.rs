//! PostgreSQL backend for `ledger`: entries as JSONB, per-stream locking for expected versions,
//! a gap-safe change feed, and subscriptions woken by LISTEN/NOTIFY.
//!
//! [`PostgresStore`] keeps the whole [`ledger_core::Store`] contract with every capability:
//! search, a change feed, durable cursors, health checks and subscriptions, and it lets an
//! application append inside its own sqlx transaction ([`PostgresStore::append_in`]).
//!
//! Search has two modes ([`SearchMode`]): `Substring` (default) matches string values of the
//! payload at any depth, ignoring ASCII case, exactly as every backend does
//! ([`ledger_core::payload_contains`]); `FullText` matches words with PostgreSQL's text search
//! (`to_tsvector('simple', payload) @@ websearch_to_tsquery(…)`), served by a GIN index that
//! [`PostgresStore::ensure_search_index`] builds.
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
//! - **Ids** are `i64` from a per-store sequence, allocated while the stream's row lock is held:
//!   within a stream, ascending ids are ascending versions and commit order, so per-stream reads
//!   and subscriptions by id are gap-safe.
//! - **Expected versions** are decided by the database: each append upserts and locks the
//!   stream's row in `t_streams` before reading its version, so of two appenders expecting the
//!   same version, from any connection or process, exactly one wins; `UNIQUE (stream, version)`
//!   backs it up. Appends to different streams proceed in parallel.
//! - **One statement per append** in the common case (no change feed): the version bump under
//!   the row lock, the expected-version check and the insert run as one autocommitted
//!   statement. When it does not apply (the check fails, or a dedup key is taken, which the
//!   unique index reports) nothing was written and the append is decided again in a
//!   transaction that looks the keys up, so conflicts and idempotent retries are reported
//!   exactly as elsewhere.
//! - **Dedup** is a unique index on `(stream, dedup_key)`; duplicates are found before insert and
//!   reported per input.
//! - **Change feed** (off by default, [`PostgresStoreBuilder::change_feed`]): gap-safe through a
//!   serialized position counter; see the `feed` module notes below for the mechanism and its cost.
//! - **Payloads** are JSONB, and every payload reads back exactly as written. Where JSONB would
//!   change one (U+0000 in a string or key, which it cannot hold; `-0.0`, which it has no room
//!   for; a float of 1e16 or more, which it keeps as a decimal that reads back as an integer),
//!   the exact JSON text is stored beside it in `payload_exact` and reads return that. The JSONB
//!   column (for search and indexes) then holds U+FFFD for each U+0000.
//! - **Errors** carry their kind ([`ledger_core::BackendErrorKind`]) from the SQLSTATE: a
//!   serialization failure or deadlock (40001, 40P01), as an append inside a caller's
//!   `SERIALIZABLE` or `REPEATABLE READ` transaction meets when it loses a race, is a conflict
//!   to retry ([`ledger_core::Error::is_conflict`]).
//! - **Connections**: the pool (10 by default, or the caller's with
//!   [`PostgresStoreBuilder::with_pool`]) serves every call; the LISTEN/NOTIFY listener has one
//!   connection of its own beside it. [`Store::close`] stops the listener and, for a pool the
//!   store opened, closes the pool.
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
//! sequence order and a reader tailing by sequence can skip a late commit forever. Every
//! mutation that records a feed entry therefore takes its position from a single counter row in
//! its last statement and holds that row lock until COMMIT. The next position is only handed out
//! after the previous holder committed (or rolled back, which returns its position), so positions
//! are contiguous and in commit order. The cost: feed-recording writes to one store serialize for
//! the span of their last statement and COMMIT, about one commit latency each (on the order of
//! thousands of transactions per second on modest hardware; batching raises entries per second).
//!
//! # Features
//!
//! This crate has no optional features.
#![deny(missing_docs)]

mod append;
mod feed;
mod listen;
mod read;
mod schema;
mod sql;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use ledger_core::append::{now, validate_annotations, validate_append, validate_tags};
use ledger_core::{
    AppendInput, AppendOutcome, Capabilities, ChangeFeed, CursorStore, Entry, Error,
    ExpectedVersion, FeedOrder, FeedRecord, Health, Lifecycle, ListOptions, Mutation, ReadOptions,
    Result, Search, Store, StreamStat, validate_cursor_name, validate_search_text,
    validate_stream_id, validate_table_name,
};

pub use schema::SCHEMA_VERSION;

use crate::listen::Listener;
use crate::sql::{Names, Statements};

/// The table a store uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "ledger_entries";

pub(crate) use ledger_sql::backend_err;

/// How [`Search::search`] matches payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Case-insensitive substring of the payload's JSON text (`ILIKE`, `%` and `_` literal).
    #[default]
    Substring,
    /// Words, with PostgreSQL's `simple` text-search configuration and web-search syntax
    /// (`"exact phrase"`, `or`, `-excluded`); see [`PostgresStore::ensure_search_index`].
    FullText,
}

/// Options for opening a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresStoreBuilder {
    table: String,
    search: SearchMode,
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

    /// How search matches payloads (default [`SearchMode::Substring`]).
    pub fn search_mode(mut self, mode: SearchMode) -> Self {
        self.search = mode;
        self
    }

    /// Wakes subscriptions through LISTEN/NOTIFY (default on). The listener holds one
    /// connection of its own for the store's life, beside the pool (never one of the pool's).
    /// Off, subscriptions rely on polling alone.
    pub fn listen(mut self, enabled: bool) -> Self {
        self.listen = enabled;
        self
    }

    /// Pool size when connecting by URL (default 10).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Connects to `url` (`postgres://user@host:port/db`) with a pool of its own.
    pub async fn connect(self, url: &str) -> Result<PostgresStore> {
        self.validate()?;
        let options: PgConnectOptions = url.parse().map_err(backend_err)?;
        // No ping per acquire (a round trip on every call): a connection the server dropped
        // fails one call with `Error::Backend` and leaves the pool; subscriptions retry.
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(backend_err)?;
        self.open(pool, true).await
    }

    /// Uses an existing pool (for appending inside the application's own transactions).
    /// [`Store::close`] leaves the pool open: it is the caller's.
    pub async fn with_pool(self, pool: PgPool) -> Result<PostgresStore> {
        self.open(pool, false).await
    }

    async fn open(self, pool: PgPool, owns_pool: bool) -> Result<PostgresStore> {
        self.validate()?;
        let names = Names::new(&self.table);
        schema::migrate(&pool, &names).await?;
        let sql = Statements::new(names);
        let lifecycle = Arc::new(Lifecycle::new());
        let listener = self
            .listen
            .then(|| Listener::spawn(&pool, sql.channel.clone(), Arc::downgrade(&lifecycle)));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                sql,
                pool,
                owns_pool,
                change_feed: self.change_feed,
                search: self.search,
                lifecycle,
                listener,
            }),
        })
    }

    fn validate(&self) -> Result<()> {
        validate_table_name(&self.table)
    }
}

struct Inner {
    sql: Statements,
    pool: PgPool,
    /// Opened by [`PostgresStoreBuilder::connect`]: `close` closes it.
    owns_pool: bool,
    change_feed: bool,
    search: SearchMode,
    lifecycle: Arc<Lifecycle>,
    listener: Option<Listener>,
}

/// A ledger store on PostgreSQL. Clones share the pool and state.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.inner.sql.names.table)
            .field("change_feed", &self.inner.change_feed)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Options, starting from the defaults.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            table: DEFAULT_TABLE.to_owned(),
            search: SearchMode::Substring,
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
        &self.inner.sql.names.table
    }

    /// The connection pool (to begin transactions for [`PostgresStore::append_in`]).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Appends inside the caller's transaction, so that an application's own write and its
    /// ledger entries commit (or roll back) together. Same semantics as [`Store::append`]; the
    /// stream's row lock (and, with the change feed, the feed counter) is held until the caller
    /// commits, so keep such transactions short.
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<i64>>> {
        self.inner.lifecycle.check_open()?;
        validate_append(stream, &entries)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql;
        if self.inner.change_feed {
            // The feed's position lock is held until the caller commits. Taken before any
            // stream's lock, it is never awaited while holding one, so two callers appending to
            // several streams cannot deadlock on it.
            sqlx::query(&sql.lock_feed)
                .execute(&mut *conn)
                .await
                .map_err(backend_err)?;
        }
        append::append_on(conn, sql, self.inner.change_feed, stream, entries, expected).await
    }

    fn check_open(&self) -> Result<()> {
        self.inner.lifecycle.check_open()
    }

    /// Builds the GIN index that serves [`SearchMode::FullText`] (idempotent; does not block
    /// writers while it builds). An invalid index left by an earlier build that failed is
    /// dropped and built again. [`Error::NotSupported`] in [`SearchMode::Substring`], which no
    /// index can serve.
    pub async fn ensure_search_index(&self) -> Result<()> {
        self.check_open()?;
        if self.inner.search != SearchMode::FullText {
            return Err(Error::NotSupported(
                "a search index serves SearchMode::FullText only".into(),
            ));
        }
        let sql = &self.inner.sql;
        let valid: Option<bool> = sqlx::query_scalar(&sql.fts_index_valid)
            .bind(format!("\"{}\"", sql.names.fts_index))
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(backend_err)?;
        if valid == Some(false) {
            // A build that failed or was interrupted leaves an INVALID index, which serves no
            // query and which `IF NOT EXISTS` would keep: drop it and build again.
            sqlx::query(&sql.drop_fts_index)
                .execute(&self.inner.pool)
                .await
                .map_err(backend_err)?;
        }
        if valid != Some(true) {
            sqlx::query(&sql.create_fts_index)
                .execute(&self.inner.pool)
                .await
                .map_err(backend_err)?;
        }
        Ok(())
    }

    /// Runs `work` in a transaction, committing on success (rolled back when dropped on error).
    async fn write<T>(
        &self,
        work: impl for<'c> AsyncFnOnce(&'c mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        let mut tx = self.inner.pool.begin().await.map_err(backend_err)?;
        let value = work(&mut tx).await?;
        tx.commit().await.map_err(backend_err)?;
        self.inner.lifecycle.committed();
        Ok(value)
    }

    async fn record(&self, conn: &mut PgConnection, stream: &str, m: Mutation<i64>) -> Result<()> {
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
        let mut q = QueryBuilder::<Postgres>::new(&self.inner.sql.read_columns);
        match stream {
            Some(s) => q.push("stream = ").push_bind(s),
            None => q.push("TRUE"),
        };
        match (text, self.inner.search) {
            (None, _) => {}
            (Some(text), SearchMode::Substring) => read::push_search(&mut q, text),
            (Some(text), SearchMode::FullText) => {
                q.push(" AND to_tsvector('simple', payload) @@ websearch_to_tsquery('simple', ")
                    .push_bind(text.to_owned())
                    .push(")");
            }
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
impl Store for PostgresStore {
    type Id = i64;

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::all();
        caps.change_feed = self.inner.change_feed.then_some(FeedOrder::CommitOrdered);
        caps
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
        let (sql, feed) = (&self.inner.sql, self.inner.change_feed);
        if !feed {
            let one =
                append::append_in_one_statement(&self.inner.pool, sql, stream, &entries, expected);
            if let Some(outcomes) = one.await? {
                self.inner.lifecycle.committed();
                return Ok(outcomes);
            }
        }
        self.write(async |conn| append::append_on(conn, sql, feed, stream, entries, expected).await)
            .await
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
            let done = sqlx::query(&self.inner.sql.set_tags)
                .bind(text)
                .bind(updated_at)
                .bind(stream)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend_err)?;
            if done.rows_affected() == 0 {
                return ledger_sql::require_entry::<Postgres>(
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
        let set: BTreeMap<&String, &String> = changes
            .iter()
            .filter_map(|(k, v)| Some((k, v.as_ref()?)))
            .collect();
        let set = serde_json::to_string(&set).map_err(Error::Encode)?;
        let delete: Vec<String> = changes
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        self.write(async |conn| {
            let updated_at = now();
            let done = sqlx::query(&self.inner.sql.set_annotations)
                .bind(set)
                .bind(&delete)
                .bind(updated_at)
                .bind(stream)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend_err)?;
            if done.rows_affected() == 0 {
                return ledger_sql::require_entry::<Postgres>(
                    conn,
                    &self.inner.sql.entry_exists,
                    stream,
                    id,
                )
                .await;
            }
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
            // Lock both names' rows, creating them at version 0 if missing, in a fixed order (so
            // two renames cannot deadlock). Creating `to`'s row makes a first append to it, even
            // one in flight, wait for the rename and then find the stream existing.
            let mut versions = BTreeMap::new();
            for name in if from <= to { [from, to] } else { [to, from] } {
                versions.insert(name, append::lock_stream(conn, sql, name).await?);
            }
            if versions[from] == 0 {
                return Err(Error::StreamNotFound(from.to_owned()));
            }
            if versions[to] > 0 {
                return Err(Error::StreamExists(to.to_owned()));
            }
            // `to`'s version-0 row holds no entries (it was just created, or left by an append
            // that failed inside a caller's transaction): make room.
            sqlx::query(&sql.drop_stream_lock)
                .bind(to)
                .execute(&mut *conn)
                .await
                .map_err(backend_err)?;
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
        if let Some(listener) = &self.inner.listener {
            listener.stop().await;
        }
        // Waits for calls in progress to return their connections.
        if self.inner.owns_pool {
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
impl Search for PostgresStore {
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
impl ChangeFeed for PostgresStore {
    type Id = i64;

    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord<i64>>> {
        self.check_open()?;
        ListOptions::new().limit(limit).validate()?;
        ledger_sql::read_feed(&self.inner.pool, &self.inner.sql.read_feed, after, limit).await
    }
}

#[async_trait]
impl CursorStore for PostgresStore {
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
impl Health for PostgresStore {
    async fn health(&self) -> Result<()> {
        self.check_open()?;
        ledger_sql::ping(&self.inner.pool).await
    }
}
