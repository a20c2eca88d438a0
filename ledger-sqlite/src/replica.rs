//! Replication steps on SQLite, inside the write transaction of [`ledger_core::Store::apply_replicated`],
//! and the trim and rename statements the store's own mutations share with them.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use ledger_core::backend::replica::ReplicaTarget;
use ledger_core::{Entry, EntryId, Mutation, Result};

use crate::sql::Statements;
use crate::{append, backend_err, feed};

/// SQLite allows 32 766 bound values per statement; a replicated entry row binds 12.
const ROWS_PER_INSERT: usize = 2_000;

/// Deletes the stream's entries with id `<= up_to`; how many.
pub async fn delete_up_to(
    conn: &mut SqliteConnection,
    sql: &Statements,
    stream: &str,
    up_to: EntryId,
) -> Result<u64> {
    let done = sqlx::query(&sql.trim)
        .bind(stream)
        .bind(up_to.get())
        .execute(conn)
        .await
        .map_err(backend_err)?;
    Ok(done.rows_affected())
}

/// Moves every entry of `from`, and its version, to `to` (which holds neither).
pub async fn move_stream(
    conn: &mut SqliteConnection,
    sql: &Statements,
    from: &str,
    to: &str,
) -> Result<()> {
    let statements = [sql.rename_entries.as_str(), sql.rename_stream.as_str()];
    ledger_sql::move_stream::<Sqlite>(conn, &statements, from, to).await
}

/// The replication steps on one write transaction.
pub struct Target<'a> {
    pub conn: &'a mut SqliteConnection,
    pub sql: &'a Statements,
    pub change_feed: bool,
}

#[async_trait]
impl ReplicaTarget for Target<'_> {
    async fn cursor(&mut self, name: &str) -> Result<Option<u64>> {
        ledger_sql::get_cursor(&mut *self.conn, &self.sql.get_cursor, name).await
    }

    async fn save_cursor(&mut self, name: &str, position: u64) -> Result<()> {
        ledger_sql::set_cursor(&mut *self.conn, &self.sql.set_cursor, name, position).await
    }

    async fn held(&mut self, ids: &[EntryId]) -> Result<Vec<(EntryId, String, u64)>> {
        let mut held = Vec::new();
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(&self.sql.held_prefix);
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.get());
            }
            q.push(")");
            for row in q
                .build()
                .fetch_all(&mut *self.conn)
                .await
                .map_err(backend_err)?
            {
                let id: i64 = row.try_get(0).map_err(backend_err)?;
                let version: i64 = row.try_get(2).map_err(backend_err)?;
                let stream = row.try_get(1).map_err(backend_err)?;
                held.push((EntryId::new(id), stream, version as u64));
            }
        }
        Ok(held)
    }

    async fn insert(&mut self, entries: &[Entry]) -> Result<()> {
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(&self.sql.insert_replicated_columns);
            q.push_values(chunk, |mut b, e| {
                b.push_bind(e.id.get())
                    .push_bind(e.stream.as_str())
                    .push_bind(e.version as i64)
                    .push_bind(ledger_sql::json_text(&e.payload))
                    .push_bind(e.order_key.as_deref())
                    .push_bind(e.dedup_key.as_deref())
                    .push_bind(i64::from(e.schema_version))
                    .push_bind(ledger_sql::json_text(&e.metadata))
                    .push_bind(ledger_sql::json_text(&e.tags))
                    .push_bind(ledger_sql::json_text(&e.annotations))
                    .push_bind(e.created_at.timestamp_micros())
                    .push_bind(e.updated_at.map(|t| t.timestamp_micros()));
            });
            q.build()
                .execute(&mut *self.conn)
                .await
                .map_err(backend_err)?;
        }
        Ok(())
    }

    async fn raise_version(&mut self, stream: &str, version: u64) -> Result<()> {
        sqlx::query(&self.sql.raise_stream_version)
            .bind(stream)
            .bind(ledger_sql::stored_version(version))
            .execute(&mut *self.conn)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn set_tags(
        &mut self,
        stream: &str,
        id: EntryId,
        tags: &BTreeSet<String>,
        updated_at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(&self.sql.replace_tags)
            .bind(ledger_sql::json_text(tags))
            .bind(updated_at.timestamp_micros())
            .bind(stream)
            .bind(id.get())
            .execute(&mut *self.conn)
            .await
            .map_err(backend_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_annotations(
        &mut self,
        stream: &str,
        id: EntryId,
        annotations: &BTreeMap<String, String>,
        updated_at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(&self.sql.set_annotations)
            .bind(ledger_sql::json_text(annotations))
            .bind(updated_at.timestamp_micros())
            .bind(stream)
            .bind(id.get())
            .execute(&mut *self.conn)
            .await
            .map_err(backend_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn trim(&mut self, stream: &str, up_to: EntryId) -> Result<u64> {
        delete_up_to(self.conn, self.sql, stream, up_to).await
    }

    async fn rename(&mut self, from: &str, to: &str) -> Result<bool> {
        let movable = append::stream_version(self.conn, self.sql, from).await? > 0
            && append::stream_version(self.conn, self.sql, to).await? == 0;
        if movable {
            move_stream(self.conn, self.sql, from, to).await?;
        }
        Ok(movable)
    }

    async fn record(&mut self, stream: &str, mutation: &Mutation) -> Result<()> {
        if self.change_feed {
            feed::record(self.conn, self.sql, stream, mutation).await?;
        }
        Ok(())
    }
}
