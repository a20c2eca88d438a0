//! The SQLite backend behind a [`crate::SqliteStore`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};

use ledger_core::backend::append::{merge_annotations, now};
use ledger_core::backend::replica::apply_records;
use ledger_core::backend::{
    Backend, ChangeFeedBackend, CommitSignal, CursorBackend, HealthBackend, ReplicaBackend,
    SearchBackend,
};
use ledger_core::{
    AppendInput, AppendResult, Capabilities, Conditions, Entry, EntryId, Error, ExpectedVersion,
    FeedOrder, FeedRecord, Lane, ListOptions, Mutation, RawPayload, ReadOptions, Replication,
    Result, SearchModes, SearchQuery, StreamStat, TimestampPrecision,
};

use crate::database::Database;
use crate::sql::Statements;
use crate::{append, backend_err, feed, read, replica};

/// Settles the write connection soon ([`Database::settle_soon`]) if dropped while armed: when
/// the append holding it was cancelled.
struct SettleOnDrop<'a>(Option<&'a Arc<Database>>);

impl Drop for SettleOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(db) = self.0 {
            db.settle_soon();
        }
    }
}

/// One store: a table on a shared [`Database`].
pub struct SqliteBackend {
    pub db: Arc<Database>,
    /// The database is this store's alone: closing the store closes it.
    pub owns_db: bool,
    pub sql: Statements,
    pub change_feed: bool,
    pub signal: CommitSignal,
}

impl SqliteBackend {
    /// Runs `work` in a write transaction (`BEGIN IMMEDIATE`), committing on success and waking
    /// subscribers.
    pub async fn write<T>(
        &self,
        work: impl for<'c> AsyncFnOnce(&'c mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut writer = self.db.writer().await;
        let mut tx = match writer.as_mut() {
            Some(w) => w.conn.begin_with("BEGIN IMMEDIATE").await,
            None => self.db.pool().begin_with("BEGIN IMMEDIATE").await,
        }
        .map_err(backend_err)?;
        // On error the transaction is dropped, which rolls it back.
        let value = work(&mut tx).await?;
        tx.commit().await.map_err(backend_err)?;
        self.signal.committed();
        Ok(value)
    }

    async fn record(&self, conn: &mut SqliteConnection, stream: &str, m: &Mutation) -> Result<()> {
        if self.change_feed {
            feed::record(conn, &self.sql, stream, m).await?;
        }
        Ok(())
    }

    async fn select<P: serde::de::DeserializeOwned>(
        &self,
        stream: Option<&str>,
        text: Option<&str>,
        options: &ReadOptions,
    ) -> Result<Vec<Entry<P>>> {
        let mut q = QueryBuilder::<Sqlite>::new(&self.sql.read_columns);
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
            .fetch_all(self.db.pool())
            .await
            .map_err(backend_err)?;
        rows.iter().map(read::entry_from_row).collect()
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &str {
        &self.sql.table
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .expected_version(true)
            .dedup(true)
            .conditions(Conditions::Database)
            .atomic_append(true)
            .tags(true)
            .annotations(true)
            .trim(true)
            .rename(true)
            .search(SearchModes::SUBSTRING)
            .change_feed(self.change_feed.then_some(FeedOrder::CommitOrdered))
            .timestamp_precision(TimestampPrecision::Microseconds)
            .transactions(true)
            .cursor_store(true)
            .health(true)
            .replication(Some(Replication::Transactional))
    }

    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        // On the database's write connection, in a transaction of its own; where the database
        // has none (an in-memory database), in a transaction of its pool.
        let (sql, feed) = (&self.sql, self.change_feed);
        let mut writer = self.db.writer().await;
        let Some(w) = writer.as_mut() else {
            drop(writer);
            let tx = append::Transaction::Caller;
            return self
                .write(async |conn| {
                    append::append_on(conn, sql, feed, tx, stream, &entries, expected, None).await
                })
                .await;
        };
        let first = append::OneCommand::prepare(sql, feed, stream, &entries, expected);
        w.maybe_open = true;
        // An append opens its transaction by hand, inside its first command (to save a round
        // trip): dropped midway, it would leave the file locked until this store's next write.
        let mut cancelled = SettleOnDrop(Some(&self.db));
        let tx = append::Transaction::Own;
        let outcome = append::append_on(
            &mut w.conn,
            sql,
            feed,
            tx,
            stream,
            &entries,
            expected,
            first,
        )
        .await;
        cancelled.0 = None;
        // append_on ended the transaction unless it failed to.
        w.maybe_open = outcome.is_err();
        drop(writer);
        if matches!(&outcome, Ok(r) if r.appended().next().is_some()) {
            self.signal.committed();
        }
        outcome
    }

    async fn read(&self, stream: &str, options: &ReadOptions) -> Result<Vec<Entry>> {
        self.select(Some(stream), None, options).await
    }

    async fn read_json(
        &self,
        stream: &str,
        options: &ReadOptions,
    ) -> Result<Vec<Entry<RawPayload>>> {
        self.select(Some(stream), None, options).await
    }

    async fn count(&self, stream: &str) -> Result<u64> {
        ledger_sql::count(self.db.pool(), &self.sql.count, stream).await
    }

    async fn stat(&self, stream: &str) -> Result<StreamStat> {
        ledger_sql::stat(self.db.pool(), &self.sql.stat, stream).await
    }

    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        ledger_sql::list_streams(self.db.pool(), &self.sql.list_streams, options).await
    }

    async fn set_tags(&self, stream: &str, id: EntryId, tags: BTreeSet<String>) -> Result<()> {
        let text = ledger_sql::json_text(&tags);
        self.write(async |conn| {
            let updated_at = now();
            // Tags are stored as sorted JSON text, so equal sets have equal text; an update that
            // changes nothing matches no row.
            let version: Option<i64> = sqlx::query_scalar(&self.sql.set_tags)
                .bind(text)
                .bind(updated_at.timestamp_micros())
                .bind(stream)
                .bind(id.get())
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend_err)?;
            let Some(version) = version else {
                return ledger_sql::require_entry::<Sqlite>(
                    conn,
                    &self.sql.entry_exists,
                    stream,
                    id,
                )
                .await;
            };
            let m = Mutation::SetTags {
                id,
                version: version as u64,
                tags,
                updated_at,
            };
            self.record(conn, stream, &m).await
        })
        .await
    }

    async fn set_annotations(
        &self,
        stream: &str,
        id: EntryId,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        // Read-merge-write is safe: the write lock is held from BEGIN IMMEDIATE to COMMIT.
        self.write(async |conn| {
            let row = sqlx::query(&self.sql.get_annotations)
                .bind(stream)
                .bind(id.get())
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend_err)?
                .ok_or_else(|| Error::entry_not_found(stream, id))?;
            let current: &str = row.try_get(0).map_err(backend_err)?;
            let version: i64 = row.try_get(1).map_err(backend_err)?;
            let before: BTreeMap<String, String> = serde_json::from_str(current)
                .map_err(|e| Error::corrupt(format_args!("annotations of entry {id}: {e}")))?;
            let mut annotations = before.clone();
            merge_annotations(&mut annotations, &changes);
            if annotations == before {
                return Ok(()); // nothing changes: no updated_at, no feed record
            }
            let updated_at = now();
            sqlx::query(&self.sql.set_annotations)
                .bind(ledger_sql::json_text(&annotations))
                .bind(updated_at.timestamp_micros())
                .bind(stream)
                .bind(id.get())
                .execute(&mut *conn)
                .await
                .map_err(backend_err)?;
            let m = Mutation::SetAnnotations {
                id,
                version: version as u64,
                changes,
                annotations,
                updated_at,
            };
            self.record(conn, stream, &m).await
        })
        .await
    }

    async fn trim(&self, stream: &str, up_to: EntryId) -> Result<u64> {
        self.write(async |conn| {
            let deleted = replica::delete_up_to(conn, &self.sql, stream, up_to).await?;
            if deleted > 0 {
                self.record(conn, stream, &Mutation::Trim { up_to, deleted })
                    .await?;
            }
            Ok(deleted)
        })
        .await
    }

    async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        let sql = &self.sql;
        self.write(async |conn| {
            if append::stream_version(conn, sql, from).await? == 0 {
                return Err(Error::StreamNotFound(from.to_owned()));
            }
            if append::stream_version(conn, sql, to).await? > 0 {
                return Err(Error::StreamExists(to.to_owned()));
            }
            replica::move_stream(conn, sql, from, to).await?;
            let m = Mutation::Rename { to: to.to_owned() };
            self.record(conn, from, &m).await
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        if self.owns_db {
            self.db.close().await?;
        }
        Ok(())
    }

    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.signal.subscribe())
    }

    fn as_search(&self) -> Option<&dyn SearchBackend> {
        Some(self)
    }

    fn as_change_feed(&self) -> Option<&dyn ChangeFeedBackend> {
        self.change_feed.then_some(self as &dyn ChangeFeedBackend)
    }

    fn as_cursor_store(&self) -> Option<&dyn CursorBackend> {
        Some(self)
    }

    fn as_health(&self) -> Option<&dyn HealthBackend> {
        Some(self)
    }

    fn as_replica(&self) -> Option<&dyn ReplicaBackend> {
        Some(self)
    }
}

#[async_trait]
impl SearchBackend for SqliteBackend {
    async fn search(
        &self,
        stream: Option<&str>,
        query: &SearchQuery,
        options: &ReadOptions,
    ) -> Result<Vec<Entry>> {
        self.select(stream, Some(&query.text), options).await
    }
}

#[async_trait]
impl ChangeFeedBackend for SqliteBackend {
    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord>> {
        feed::read(self.db.pool(), &self.sql, after, limit).await
    }

    async fn feed_head(&self) -> Result<Option<u64>> {
        // Positions are taken under SQLite's one write lock: every record below the highest
        // has committed.
        let head: Option<i64> = sqlx::query_scalar(&self.sql.feed_head)
            .fetch_one(self.db.pool())
            .await
            .map_err(backend_err)?;
        Ok(head.map(|p| p as u64))
    }
}

#[async_trait]
impl CursorBackend for SqliteBackend {
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>> {
        ledger_sql::get_cursor(self.db.pool(), &self.sql.get_cursor, name).await
    }

    async fn set_cursor(&self, name: &str, position: u64) -> Result<()> {
        ledger_sql::set_cursor(self.db.pool(), &self.sql.set_cursor, name, position).await
    }
}

#[async_trait]
impl HealthBackend for SqliteBackend {
    async fn health(&self) -> Result<()> {
        ledger_sql::ping(self.db.pool()).await
    }
}

#[async_trait]
impl ReplicaBackend for SqliteBackend {
    async fn apply(&self, cursor: &str, lane: Option<Lane>, records: &[FeedRecord]) -> Result<u64> {
        self.write(async |conn| {
            let mut target = replica::Target {
                conn,
                sql: &self.sql,
                change_feed: self.change_feed,
            };
            apply_records(&mut target, cursor, lane, records).await
        })
        .await
    }
}
