//! Applying replicated feed records. Without transactions each step stands alone, and each is
//! idempotent: a replayed append inserts rows whose `(stream, id)` reads already see once, a
//! replayed tag or annotation change writes the state it already holds, a replayed trim
//! deletes nothing more; the cursor, saved last, never moves back.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use ledger_core::backend::CursorBackend;
use ledger_core::backend::replica::ReplicaTarget;
use ledger_core::{Entry, EntryId, Mutation, Result};

use crate::backend::{ClickHouseBackend, rename_not_supported};
use crate::error::backend;
use crate::row::NewRow;

/// A store's tables, as a replica.
pub struct Target<'a> {
    pub backend: &'a ClickHouseBackend,
}

#[async_trait]
impl ReplicaTarget for Target<'_> {
    async fn cursor(&mut self, name: &str) -> Result<Option<u64>> {
        self.backend.get_cursor(name).await
    }

    async fn cursors(&mut self, names: &[String]) -> Result<Vec<Option<u64>>> {
        let sql = format!(
            "SELECT name, max(position) FROM {} WHERE has(?, name) GROUP BY name",
            self.backend.names.cursors
        );
        let saved: std::collections::HashMap<String, u64> = self
            .backend
            .client
            .query(&sql)
            .bind(names)
            .fetch_all::<(String, u64)>()
            .await
            .map_err(backend)?
            .into_iter()
            .collect();
        Ok(names.iter().map(|n| saved.get(n).copied()).collect())
    }

    async fn save_cursor(&mut self, name: &str, position: u64) -> Result<()> {
        self.backend.set_cursor(name, position).await
    }

    async fn held(&mut self, ids: &[EntryId]) -> Result<Vec<(EntryId, String, u64)>> {
        if ids.is_empty() {
            // `has([], id)` would not type-check: an empty literal has no element type.
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let sql = format!(
            "SELECT DISTINCT id, stream, version FROM {} WHERE has(?, id)",
            self.backend.names.entries
        );
        let held: Vec<(i64, String, u64)> = self
            .backend
            .client
            .query(&sql)
            .bind(ids)
            .fetch_all()
            .await
            .map_err(backend)?;
        Ok(held
            .into_iter()
            .map(|(id, stream, version)| (EntryId::new(id), stream, version))
            .collect())
    }

    async fn insert(&mut self, entries: &[Entry]) -> Result<()> {
        let payloads: Vec<String> = entries
            .iter()
            .map(|e| serde_json::to_string(&e.payload))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| ledger_core::Error::InvalidArgument(format!("payload: {e}")))?;
        let rows: Vec<NewRow<'_>> = entries
            .iter()
            .zip(&payloads)
            .map(|(entry, payload)| NewRow::of(entry, payload, 0))
            .collect();
        self.backend.insert(&rows).await?;
        if let Some(highest) = entries.iter().map(|e| e.id.get()).max() {
            self.backend.writers.saw_id(highest);
        }
        let mut streams: Vec<&str> = entries.iter().map(|e| e.stream.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        for stream in streams {
            self.backend.forget(stream).await;
        }
        self.backend.signal.committed();
        Ok(())
    }

    async fn raise_version(&mut self, stream: &str, version: u64) -> Result<()> {
        self.backend.keep_version(stream, version).await?;
        self.backend.forget(stream).await;
        Ok(())
    }

    async fn set_tags(
        &mut self,
        stream: &str,
        id: EntryId,
        tags: &BTreeSet<String>,
        updated_at: DateTime<Utc>,
    ) -> Result<bool> {
        self.backend
            .revise(stream, id, Some(updated_at), |entry| {
                let changed = entry.tags != *tags || entry.updated_at != Some(updated_at);
                entry.tags = tags.clone();
                changed
            })
            .await
    }

    async fn set_annotations(
        &mut self,
        stream: &str,
        id: EntryId,
        annotations: &BTreeMap<String, String>,
        updated_at: DateTime<Utc>,
    ) -> Result<bool> {
        self.backend
            .revise(stream, id, Some(updated_at), |entry| {
                let changed =
                    entry.annotations != *annotations || entry.updated_at != Some(updated_at);
                entry.annotations = annotations.clone();
                changed
            })
            .await
    }

    async fn trim(&mut self, stream: &str, up_to: EntryId) -> Result<u64> {
        self.backend.delete_up_to(stream, up_to).await
    }

    async fn rename(&mut self, _: &str, _: &str) -> Result<bool> {
        Err(rename_not_supported())
    }

    async fn record(&mut self, _: &str, _: &Mutation) -> Result<()> {
        // No change feed of its own.
        Ok(())
    }
}
