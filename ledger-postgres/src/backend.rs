//! The PostgreSQL backend behind a [`crate::PostgresStore`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use ledger_core::backend::append::now;
use ledger_core::backend::replica::apply_records;
use ledger_core::backend::{
    Backend, ChangeFeedBackend, CommitSignal, CursorBackend, HealthBackend, ReplicaBackend,
    SearchBackend,
};
use ledger_core::{
    AppendInput, AppendResult, Capabilities, Conditions, Entry, EntryId, Error, ExpectedVersion,
    FeedOrder, FeedRecord, Lane, ListOptions, Mutation, RawPayload, ReadOptions, Replication,
    Result, SearchMode, SearchModes, SearchQuery, StreamStat, TimestampPrecision,
};

use crate::database::Database;
use crate::sql::Statements;
use crate::{append, backend_err, feed, read, replica};

/// One store: a table on a shared [`Database`].
pub struct PostgresBackend {
    pub db: Arc<Database>,
    /// The database is this store's alone: closing the store closes it.
    pub owns_db: bool,
    pub sql: Statements,
    pub change_feed: bool,
    pub signal: Arc<CommitSignal>,
}

impl PostgresBackend {
    /// Runs `work` in a transaction, committing on success (rolled back when dropped on error),
    /// and wakes subscribers.
    pub async fn write<T>(
        &self,
        work: impl for<'c> AsyncFnOnce(&'c mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        let mut tx = self.db.pool().begin().await.map_err(backend_err)?;
        let value = work(&mut tx).await?;
        tx.commit().await.map_err(backend_err)?;
        self.committed();
        Ok(value)
    }

    /// Wakes this process's subscribers now and other processes' soon (see notify.rs).
    pub fn committed(&self) {
        self.signal.committed();
        self.db.committed(&self.sql.names.table);
    }

    async fn record(&self, conn: &mut PgConnection, stream: &str, m: &Mutation) -> Result<()> {
        if self.change_feed {
            feed::record(conn, &self.sql, stream, m).await?;
        }
        Ok(())
    }

    async fn select<P: serde::de::DeserializeOwned>(
        &self,
        stream: Option<&str>,
        query: Option<&SearchQuery>,
        options: &ReadOptions,
    ) -> Result<Vec<Entry<P>>> {
        let mut q = QueryBuilder::<Postgres>::new(&self.sql.read_columns);
        match stream {
            Some(s) => q.push("stream = ").push_bind(s),
            None => q.push("TRUE"),
        };
        match query.map(|q| (q.mode, q.text.as_str())) {
            None => {}
            Some((SearchMode::FullText, text)) => {
                q.push(" AND to_tsvector('simple', payload) @@ websearch_to_tsquery('simple', ")
                    .push_bind(text.to_owned())
                    .push(")");
            }
            Some((_, text)) => read::push_search(&mut q, text),
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
impl Backend for PostgresBackend {
    fn name(&self) -> &str {
        &self.sql.names.table
    }

    fn kind(&self) -> &'static str {
        "postgres"
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
            .search(SearchModes::ALL)
            .change_feed(self.change_feed.then_some(FeedOrder::GapSafeWatermark))
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
        let sql = &self.sql;
        let one = append::append_in_one_statement(self.db.pool(), sql, stream, &entries, expected);
        if let Some(result) = one.await? {
            self.committed();
            return Ok(result);
        }
        self.write(async |conn| append::append_on(conn, sql, stream, entries, expected).await)
            .await
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
            let version: Option<i64> = sqlx::query_scalar(&self.sql.set_tags)
                .bind(text)
                .bind(updated_at)
                .bind(stream)
                .bind(id.get())
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend_err)?;
            let Some(version) = version else {
                return ledger_sql::require_entry::<Postgres>(
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
        let set: BTreeMap<&String, &String> = changes
            .iter()
            .filter_map(|(k, v)| Some((k, v.as_ref()?)))
            .collect();
        let set = ledger_sql::json_text(&set);
        let delete: Vec<String> = changes
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        self.write(async |conn| {
            let updated_at = now();
            let row = sqlx::query(&self.sql.set_annotations)
                .bind(set)
                .bind(&delete)
                .bind(updated_at)
                .bind(stream)
                .bind(id.get())
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend_err)?;
            let Some(row) = row else {
                return ledger_sql::require_entry::<Postgres>(
                    conn,
                    &self.sql.entry_exists,
                    stream,
                    id,
                )
                .await;
            };
            let version: i64 = row.try_get(0).map_err(backend_err)?;
            let Json(annotations): Json<BTreeMap<String, String>> =
                row.try_get(1).map_err(backend_err)?;
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
            let (from_version, to_version) = replica::lock_both(conn, sql, from, to).await?;
            if from_version == 0 {
                return Err(Error::StreamNotFound(from.to_owned()));
            }
            if to_version > 0 {
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
            self.db.close().await;
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
impl SearchBackend for PostgresBackend {
    async fn search(
        &self,
        stream: Option<&str>,
        query: &SearchQuery,
        options: &ReadOptions,
    ) -> Result<Vec<Entry>> {
        self.select(stream, Some(query), options).await
    }
}

#[async_trait]
impl ChangeFeedBackend for PostgresBackend {
    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord>> {
        feed::read(self.db.pool(), &self.sql, after, limit).await
    }

    async fn feed_head(&self) -> Result<Option<u64>> {
        // Sequence values taken by transactions that rolled back leave holes below it: the
        // head is an upper bound of what a reader has left, as documented.
        let horizon = feed::horizon(self.db.pool(), &self.sql).await?;
        Ok((horizon > 0).then_some(horizon))
    }
}

#[async_trait]
impl CursorBackend for PostgresBackend {
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>> {
        ledger_sql::get_cursor(self.db.pool(), &self.sql.get_cursor, name).await
    }

    async fn set_cursor(&self, name: &str, position: u64) -> Result<()> {
        ledger_sql::set_cursor(self.db.pool(), &self.sql.set_cursor, name, position).await
    }
}

#[async_trait]
impl HealthBackend for PostgresBackend {
    async fn health(&self) -> Result<()> {
        ledger_sql::ping(self.db.pool()).await
    }
}

#[async_trait]
impl ReplicaBackend for PostgresBackend {
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
