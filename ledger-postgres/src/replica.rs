//! Replication steps on PostgreSQL, inside the transaction of
//! [`ledger_core::Store::apply_replicated`], and the trim and rename statements the store's own
//! mutations share with them.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Row};

use ledger_core::backend::replica::ReplicaTarget;
use ledger_core::{Entry, EntryId, Mutation, Result};

use crate::sql::Statements;
use crate::{append, backend_err, feed};

/// Deletes the stream's entries with id `<= up_to`; how many.
pub async fn delete_up_to(
    conn: &mut PgConnection,
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

/// Locks the rows of both names, creating them at version 0 if missing, in a fixed order (so
/// two renames cannot deadlock), and returns their versions. Creating `to`'s row makes a first
/// append to it, even one in flight, wait for the rename and then find the stream existing.
pub async fn lock_both(
    conn: &mut PgConnection,
    sql: &Statements,
    from: &str,
    to: &str,
) -> Result<(u64, u64)> {
    let mut versions = BTreeMap::new();
    for name in if from <= to { [from, to] } else { [to, from] } {
        versions.insert(name, append::lock_stream(conn, sql, name).await?);
    }
    Ok((versions[from], versions[to]))
}

/// Moves every entry of `from`, and its version, to `to`, whose row (locked, at version 0, with
/// no entries: just created, or left by an append that failed inside a caller's transaction)
/// makes room.
pub async fn move_stream(
    conn: &mut PgConnection,
    sql: &Statements,
    from: &str,
    to: &str,
) -> Result<()> {
    sqlx::query(&sql.drop_stream_lock)
        .bind(to)
        .execute(&mut *conn)
        .await
        .map_err(backend_err)?;
    let statements = [sql.rename_entries.as_str(), sql.rename_stream.as_str()];
    ledger_sql::move_stream::<Postgres>(conn, &statements, from, to).await
}

/// The replication steps on one transaction.
pub struct Target<'a> {
    pub conn: &'a mut PgConnection,
    pub sql: &'a Statements,
    pub change_feed: bool,
}

#[async_trait]
impl ReplicaTarget for Target<'_> {
    async fn cursor(&mut self, name: &str) -> Result<Option<u64>> {
        ledger_sql::get_cursor(&mut *self.conn, &self.sql.get_cursor, name).await
    }

    async fn cursors(&mut self, names: &[String]) -> Result<Vec<Option<u64>>> {
        let rows = sqlx::query(&self.sql.get_cursors)
            .bind(names)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(backend_err)?;
        let mut saved = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get(0).map_err(backend_err)?;
            let position: i64 = row.try_get(1).map_err(backend_err)?;
            saved.insert(name, position as u64);
        }
        Ok(names.iter().map(|n| saved.get(n).copied()).collect())
    }

    async fn save_cursor(&mut self, name: &str, position: u64) -> Result<()> {
        ledger_sql::set_cursor(&mut *self.conn, &self.sql.set_cursor, name, position).await
    }

    async fn held(&mut self, ids: &[EntryId]) -> Result<Vec<(EntryId, String, u64)>> {
        let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let rows = sqlx::query(&self.sql.held)
            .bind(&ids)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(backend_err)?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get(0)?;
                let version: i64 = row.try_get(2)?;
                Ok((EntryId::new(id), row.try_get(1)?, version as u64))
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(backend_err)
    }

    async fn insert(&mut self, entries: &[Entry]) -> Result<()> {
        let mut payloads = Vec::with_capacity(entries.len());
        let mut exact = Vec::with_capacity(entries.len());
        for e in entries {
            let (payload, exact_copy) = append::payload_columns(&e.payload);
            payloads.push(payload);
            exact.push(exact_copy);
        }
        let texts = |f: fn(&Entry) -> String| entries.iter().map(f).collect::<Vec<_>>();
        sqlx::query(&self.sql.insert_replicated)
            .bind(entries.iter().map(|e| e.id.get()).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.stream.clone()).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.version as i64).collect::<Vec<_>>())
            .bind(payloads)
            .bind(exact)
            .bind(
                entries
                    .iter()
                    .map(|e| e.order_key.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                entries
                    .iter()
                    .map(|e| e.dedup_key.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                entries
                    .iter()
                    .map(|e| i64::from(e.schema_version))
                    .collect::<Vec<_>>(),
            )
            .bind(texts(|e| ledger_sql::json_text(&e.metadata)))
            .bind(texts(|e| ledger_sql::json_text(&e.tags)))
            .bind(texts(|e| ledger_sql::json_text(&e.annotations)))
            .bind(entries.iter().map(|e| e.created_at).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.updated_at).collect::<Vec<_>>())
            .execute(&mut *self.conn)
            .await
            .map_err(backend_err)?;
        // Ids this store assigns later must come after the replicated ones.
        let top = entries.iter().map(|e| e.id.get()).max().unwrap_or(0);
        sqlx::query(&self.sql.raise_ids)
            .bind(top)
            .execute(&mut *self.conn)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn raise_version(&mut self, stream: &str, version: u64) -> Result<()> {
        self.raise_versions(&[(stream, version)]).await
    }

    async fn raise_versions(&mut self, versions: &[(&str, u64)]) -> Result<()> {
        // In stream order, as every writer locks stream rows, so two cannot deadlock.
        let mut versions = versions.to_vec();
        versions.sort_unstable();
        let streams: Vec<&str> = versions.iter().map(|(s, _)| *s).collect();
        let numbers: Vec<i64> = versions
            .iter()
            .map(|(_, v)| ledger_sql::stored_version(*v))
            .collect();
        sqlx::query(&self.sql.raise_stream_versions)
            .bind(streams)
            .bind(numbers)
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
            .bind(updated_at)
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
        let done = sqlx::query(&self.sql.replace_annotations)
            .bind(ledger_sql::json_text(annotations))
            .bind(updated_at)
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
        let (from_version, to_version) = lock_both(self.conn, self.sql, from, to).await?;
        let movable = from_version > 0 && to_version == 0;
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
