//! Applying replicated feed records, in one transaction with the cursor.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, doc};

use ledger_core::backend::replica::ReplicaTarget;
use ledger_core::{Entry, EntryId, Error, Mutation, Result};

use crate::backend::{IDS, MongoBackend, save_cursor};
use crate::doc::{self as stored, field};
use crate::error::backend;
use crate::txn::{Tx, on};

/// A store's collections inside the transaction that applies a batch of records.
pub struct Target<'a, 'b> {
    pub backend: &'a MongoBackend,
    pub session: &'a mut Tx<'b>,
}

#[async_trait]
impl ReplicaTarget for Target<'_, '_> {
    async fn cursor(&mut self, name: &str) -> Result<Option<u64>> {
        let found = on!(
            self.session,
            self.backend.cursors.find_one(doc! {"_id": name})
        )
        .map_err(backend)?;
        found
            .map(|d| stored::int(&d, "position").map(|p| p as u64))
            .transpose()
    }

    async fn cursors(&mut self, names: &[String]) -> Result<Vec<Option<u64>>> {
        let docs = self
            .backend
            .find_all(
                self.session,
                &self.backend.cursors,
                doc! {"_id": {"$in": names}},
                None,
            )
            .await?;
        let mut saved = std::collections::HashMap::with_capacity(docs.len());
        for d in &docs {
            let name = d
                .get_str("_id")
                .map_err(|e| Error::corrupt(format_args!("cursor: {e}")))?;
            saved.insert(name.to_owned(), stored::int(d, "position")? as u64);
        }
        Ok(names.iter().map(|n| saved.get(n).copied()).collect())
    }

    async fn save_cursor(&mut self, name: &str, position: u64) -> Result<()> {
        save_cursor(self.backend, self.session, name, position).await
    }

    async fn held(&mut self, ids: &[EntryId]) -> Result<Vec<(EntryId, String, u64)>> {
        let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let docs = self
            .backend
            .find_all(
                self.session,
                &self.backend.entries,
                doc! {field::ID: {"$in": ids}},
                Some(doc! {field::STREAM: 1, field::VERSION: 1}),
            )
            .await?;
        docs.iter()
            .map(|d| {
                let id = EntryId::new(stored::int(d, field::ID)?);
                let stream = match d.get(field::STREAM) {
                    Some(Bson::String(s)) => s.clone(),
                    _ => return Err(Error::corrupt(format_args!("entry {id} has no stream"))),
                };
                Ok((id, stream, stored::int(d, field::VERSION)? as u64))
            })
            .collect()
    }

    async fn insert(&mut self, entries: &[Entry]) -> Result<()> {
        let docs = entries
            .iter()
            .map(stored::replicated_doc)
            .collect::<Result<Vec<_>>>()?;
        on!(self.session, self.backend.entries.insert_many(docs)).map_err(backend)?;
        let Some(last) = entries.iter().map(|e| e.id.get()).max() else {
            return Ok(());
        };
        // Ids this store takes for appends of its own come after the replicated ones.
        self.backend.raise_counter(self.session, IDS, last).await?;
        let mut highest: BTreeMap<&str, i64> = BTreeMap::new();
        for e in entries {
            let id = highest.entry(e.stream.as_str()).or_default();
            *id = (*id).max(e.id.get());
        }
        for (stream, last_id) in highest {
            let action = self
                .backend
                .streams
                .update_one(doc! {"_id": stream}, doc! {"$max": {"last_id": last_id}});
            on!(self.session, action.upsert(true)).map_err(backend)?;
        }
        Ok(())
    }

    async fn raise_version(&mut self, stream: &str, version: u64) -> Result<()> {
        let action = self.backend.streams.update_one(
            doc! {"_id": stream},
            doc! {"$max": {"version": version as i64}},
        );
        on!(self.session, action.upsert(true)).map_err(backend)?;
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
            .write_tags(self.session, stream, id, tags, updated_at)
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
            .write_annotations(self.session, stream, id, annotations, updated_at)
            .await
    }

    async fn trim(&mut self, stream: &str, up_to: EntryId) -> Result<u64> {
        self.backend.delete_up_to(self.session, stream, up_to).await
    }

    async fn rename(&mut self, from: &str, to: &str) -> Result<bool> {
        self.backend.move_stream(self.session, from, to).await
    }

    async fn record(&mut self, stream: &str, mutation: &Mutation) -> Result<()> {
        self.backend.record(self.session, stream, mutation).await
    }
}
