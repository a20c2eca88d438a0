//! `MemoryStore`: the complete reference implementation of the contract, in memory.
//!
//! Every operation takes one mutex, so each is atomic and they are totally ordered; change-feed
//! positions are therefore commit-ordered. Ids are from 1, never reused, like the SQL backends,
//! so the model test can compare them directly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backend::append::{dedup_keys, merge_annotations, now, plan_append};
use crate::backend::feed::{StoredChange, StoredRecord, appended_ids, join_entries};
use crate::backend::replica::{ReplicaTarget, apply_records};
use crate::backend::{
    Backend, ChangeFeedBackend, CommitSignal, CursorBackend, HealthBackend, ReplicaBackend,
    SearchBackend,
};
use crate::capabilities::{
    Capabilities, Conditions, FeedOrder, Replication, SearchModes, TimestampPrecision,
};
use crate::entry::{AppendInput, AppendResult, Entry, EntryId, ExpectedVersion, StreamStat};
use crate::error::{Error, Result};
use crate::feed::{FeedRecord, Lane, Mutation};
use crate::read::{Direction, ListOptions, ReadOptions, SearchQuery, payload_contains};
use crate::store::Store;

#[derive(Default, Clone)]
struct StreamData {
    version: u64,
    entries: BTreeMap<EntryId, Entry>,
}

#[derive(Default, Clone)]
struct State {
    last_id: i64,
    streams: BTreeMap<String, StreamData>,
    feed: Vec<StoredRecord>,
    cursors: HashMap<String, u64>,
}

impl State {
    fn record(&mut self, stream: &str, mutation: Mutation) {
        let position = self.feed.len() as u64 + 1;
        self.feed.push(StoredRecord {
            position,
            stream: stream.to_owned(),
            change: StoredChange::of(&mutation),
        });
    }

    fn entry_mut(&mut self, stream: &str, id: EntryId) -> Option<&mut Entry> {
        self.streams
            .get_mut(stream)
            .and_then(|s| s.entries.get_mut(&id))
    }

    /// The stored entry with this id, in whatever stream.
    fn find(&self, id: EntryId) -> Option<&Entry> {
        self.streams.values().find_map(|s| s.entries.get(&id))
    }

    fn set_tags(&mut self, stream: &str, id: EntryId, tags: BTreeSet<String>) -> Result<()> {
        let updated_at = now();
        let entry = self
            .entry_mut(stream, id)
            .ok_or_else(|| Error::entry_not_found(stream, id))?;
        if entry.tags == tags {
            return Ok(()); // nothing changes: no updated_at, no feed record
        }
        entry.tags = tags.clone();
        entry.updated_at = Some(updated_at);
        let version = entry.version;
        let mutation = Mutation::SetTags {
            id,
            version,
            tags,
            updated_at,
        };
        self.record(stream, mutation);
        Ok(())
    }

    fn set_annotations(
        &mut self,
        stream: &str,
        id: EntryId,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let updated_at = now();
        let entry = self
            .entry_mut(stream, id)
            .ok_or_else(|| Error::entry_not_found(stream, id))?;
        let mut merged = entry.annotations.clone();
        merge_annotations(&mut merged, &changes);
        if merged == entry.annotations {
            return Ok(()); // nothing changes: no updated_at, no feed record
        }
        entry.annotations = merged.clone();
        entry.updated_at = Some(updated_at);
        let version = entry.version;
        let mutation = Mutation::SetAnnotations {
            id,
            version,
            changes,
            annotations: merged,
            updated_at,
        };
        self.record(stream, mutation);
        Ok(())
    }

    /// Deletes the stream's entries with id `<= up_to`; how many.
    fn delete_up_to(&mut self, stream: &str, up_to: EntryId) -> u64 {
        let Some(data) = self.streams.get_mut(stream) else {
            return 0;
        };
        let kept = data
            .entries
            .split_off(&EntryId::new(up_to.get().saturating_add(1)));
        std::mem::replace(&mut data.entries, kept).len() as u64
    }

    fn trim_stream(&mut self, stream: &str, up_to: EntryId) -> u64 {
        let deleted = self.delete_up_to(stream, up_to);
        if deleted > 0 {
            self.record(stream, Mutation::Trim { up_to, deleted });
        }
        deleted
    }

    fn move_stream(&mut self, from: &str, to: &str) {
        if let Some(mut data) = self.streams.remove(from) {
            for entry in data.entries.values_mut() {
                entry.stream = to.to_owned();
            }
            self.streams.insert(to.to_owned(), data);
        }
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        if !self.streams.contains_key(from) {
            return Err(Error::StreamNotFound(from.to_owned()));
        }
        if self.streams.contains_key(to) {
            return Err(Error::StreamExists(to.to_owned()));
        }
        self.move_stream(from, to);
        self.record(from, Mutation::Rename { to: to.to_owned() });
        Ok(())
    }
}

/// The reference store's state as a replication target (inside its lock).
#[async_trait]
impl ReplicaTarget for State {
    async fn cursor(&mut self, name: &str) -> Result<Option<u64>> {
        Ok(self.cursors.get(name).copied())
    }

    async fn save_cursor(&mut self, name: &str, position: u64) -> Result<()> {
        let saved = self.cursors.entry(name.to_owned()).or_insert(position);
        *saved = (*saved).max(position);
        Ok(())
    }

    async fn held(&mut self, ids: &[EntryId]) -> Result<Vec<(EntryId, String, u64)>> {
        Ok(ids
            .iter()
            .filter_map(|id| self.find(*id).map(|e| (e.id, e.stream.clone(), e.version)))
            .collect())
    }

    async fn insert(&mut self, entries: &[Entry]) -> Result<()> {
        for entry in entries {
            self.last_id = self.last_id.max(entry.id.get());
            let data = self.streams.entry(entry.stream.clone()).or_default();
            data.entries.insert(entry.id, entry.clone());
        }
        Ok(())
    }

    async fn raise_version(&mut self, stream: &str, version: u64) -> Result<()> {
        let data = self.streams.entry(stream.to_owned()).or_default();
        data.version = data.version.max(version);
        Ok(())
    }

    async fn set_tags(
        &mut self,
        stream: &str,
        id: EntryId,
        tags: &BTreeSet<String>,
        updated_at: DateTime<Utc>,
    ) -> Result<bool> {
        Ok(self
            .entry_mut(stream, id)
            .map(|entry| {
                entry.tags = tags.clone();
                entry.updated_at = Some(updated_at);
            })
            .is_some())
    }

    async fn set_annotations(
        &mut self,
        stream: &str,
        id: EntryId,
        annotations: &BTreeMap<String, String>,
        updated_at: DateTime<Utc>,
    ) -> Result<bool> {
        Ok(self
            .entry_mut(stream, id)
            .map(|entry| {
                entry.annotations = annotations.clone();
                entry.updated_at = Some(updated_at);
            })
            .is_some())
    }

    async fn trim(&mut self, stream: &str, up_to: EntryId) -> Result<u64> {
        Ok(self.delete_up_to(stream, up_to))
    }

    async fn rename(&mut self, from: &str, to: &str) -> Result<bool> {
        let movable = self.streams.contains_key(from) && !self.streams.contains_key(to);
        if movable {
            self.move_stream(from, to);
        }
        Ok(movable)
    }

    async fn record(&mut self, stream: &str, mutation: &Mutation) -> Result<()> {
        State::record(self, stream, mutation.clone());
        Ok(())
    }
}

/// The reference backend; users hold it as a [`MemoryStore`].
struct MemoryBackend {
    name: String,
    state: Mutex<State>,
    signal: CommitSignal,
}

impl MemoryBackend {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied mutation: every mutation
        // validates first and changes state last, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a mutation and wakes subscribers.
    fn mutate<T>(&self, work: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let result = work(&mut self.state());
        self.signal.committed();
        result
    }

    fn select(
        entries: impl DoubleEndedIterator<Item = Entry>,
        options: &ReadOptions,
        extra: impl Fn(&Entry) -> bool,
    ) -> Vec<Entry> {
        let keep = |e: &Entry| options.is_past_cursors(e) && options.filter.matches(e) && extra(e);
        let limit = options.limit as usize;
        match options.direction {
            Direction::Ascending => entries.filter(keep).take(limit).collect(),
            Direction::Descending => entries.rev().filter(keep).take(limit).collect(),
        }
    }
}

/// An in-memory store with every capability. Clones share the same data; it dereferences to the
/// [`Store`] it is.
///
/// ```
/// use ledger_core::{AppendInput, ExpectedVersion, MemoryStore, ReadOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ledger_core::Result<()> {
/// let store = MemoryStore::new();
/// let input = AppendInput::new(serde_json::json!({"n": 1})).dedup_key("k");
/// store.append("s", vec![input.clone()], ExpectedVersion::NoStream).await?;
/// let retry = store.append("s", vec![input], ExpectedVersion::NoStream).await?;
/// assert!(!retry.outcomes[0].is_appended()); // an idempotent retry succeeds and writes nothing
/// assert_eq!(store.read("s", &ReadOptions::new()).await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    store: Store,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store named `memory`.
    pub fn new() -> Self {
        Self::named("memory")
    }

    /// An empty store with this name (as a table would have).
    pub fn named(name: impl Into<String>) -> Self {
        let backend = MemoryBackend {
            name: name.into(),
            state: Mutex::new(State::default()),
            signal: CommitSignal::new(),
        };
        MemoryStore {
            store: Store::new(backend),
        }
    }
}

impl std::ops::Deref for MemoryStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl AsRef<Store> for MemoryStore {
    fn as_ref(&self) -> &Store {
        &self.store
    }
}

impl From<MemoryStore> for Store {
    fn from(memory: MemoryStore) -> Store {
        memory.store
    }
}

/// Every capability, commit-ordered feed, microsecond timestamps.
const CAPABILITIES: Capabilities = Capabilities::none()
    .expected_version(true)
    .dedup(true)
    .conditions(Conditions::Database)
    .atomic_append(true)
    .tags(true)
    .annotations(true)
    .trim(true)
    .rename(true)
    .search(SearchModes::SUBSTRING)
    .change_feed(Some(FeedOrder::CommitOrdered))
    .timestamp_precision(TimestampPrecision::Microseconds)
    .cursor_store(true)
    .health(true)
    .replication(Some(Replication::Transactional));

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        let mut state = self.state();
        let data = state.streams.get(stream);
        let current = data.map_or(0, |d| d.version);
        let keys = dedup_keys(&entries);
        let stored: HashMap<String, EntryId> = data
            .map(|d| {
                d.entries
                    .values()
                    .filter_map(|e| Some((e.dedup_key.clone()?, e.id)))
                    .filter(|(k, _)| keys.contains(&k.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let plan = plan_append(stream, &entries, current, &stored, expected)?;
        if plan.is_empty() {
            return Ok(plan.result(&[]));
        }
        let ids: Vec<EntryId> = (1..=plan.rows.len() as i64)
            .map(|k| EntryId::new(state.last_id + k))
            .collect();
        let written = plan.entries(stream, &entries, &ids, now());
        state.last_id += ids.len() as i64;
        let data = state.streams.entry(stream.to_owned()).or_default();
        data.version = plan.new_version;
        data.entries
            .extend(written.iter().map(|e| (e.id, e.clone())));
        let version = plan.new_version;
        state.record(
            stream,
            Mutation::Append {
                entries: written,
                version,
            },
        );
        drop(state);
        self.signal.committed();
        Ok(plan.result(&ids))
    }

    async fn read(&self, stream: &str, options: &ReadOptions) -> Result<Vec<Entry>> {
        let state = self.state();
        let Some(data) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        Ok(Self::select(
            data.entries.values().cloned(),
            options,
            |_| true,
        ))
    }

    async fn count(&self, stream: &str) -> Result<u64> {
        let state = self.state();
        Ok(state
            .streams
            .get(stream)
            .map_or(0, |d| d.entries.len() as u64))
    }

    async fn stat(&self, stream: &str) -> Result<StreamStat> {
        let state = self.state();
        let data = state.streams.get(stream);
        Ok(StreamStat {
            stream: stream.to_owned(),
            count: data.map_or(0, |d| d.entries.len() as u64),
            first_id: data.and_then(|d| d.entries.keys().next().copied()),
            last_id: data.and_then(|d| d.entries.keys().next_back().copied()),
            last_version: data.map_or(0, |d| d.version),
        })
    }

    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        let state = self.state();
        Ok(state
            .streams
            .iter()
            .filter(|(name, d)| {
                !d.entries.is_empty() && options.after.as_ref().is_none_or(|a| *name > a)
            })
            .map(|(name, _)| name.clone())
            .take(options.limit as usize)
            .collect())
    }

    async fn set_tags(&self, stream: &str, id: EntryId, tags: BTreeSet<String>) -> Result<()> {
        self.mutate(|state| state.set_tags(stream, id, tags))
    }

    async fn set_annotations(
        &self,
        stream: &str,
        id: EntryId,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.mutate(|state| state.set_annotations(stream, id, changes))
    }

    async fn trim(&self, stream: &str, up_to: EntryId) -> Result<u64> {
        self.mutate(|state| Ok(state.trim_stream(stream, up_to)))
    }

    async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        self.mutate(|state| state.rename(from, to))
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.signal.subscribe())
    }

    fn as_search(&self) -> Option<&dyn SearchBackend> {
        Some(self)
    }

    fn as_change_feed(&self) -> Option<&dyn ChangeFeedBackend> {
        Some(self)
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
impl SearchBackend for MemoryBackend {
    async fn search(
        &self,
        stream: Option<&str>,
        query: &SearchQuery,
        options: &ReadOptions,
    ) -> Result<Vec<Entry>> {
        let state = self.state();
        // Entries of all matching streams, in id order.
        let mut all: Vec<Entry> = state
            .streams
            .iter()
            .filter(|(name, _)| stream.is_none_or(|s| s == name.as_str()))
            .flat_map(|(_, d)| d.entries.values().cloned())
            .collect();
        all.sort_by_key(|e| e.id);
        Ok(Self::select(all.into_iter(), options, |e| {
            payload_contains(&e.payload, &query.text)
        }))
    }
}

#[async_trait]
impl ChangeFeedBackend for MemoryBackend {
    async fn feed_head(&self) -> Result<Option<u64>> {
        Ok(self.state().feed.last().map(|r| r.position))
    }

    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord>> {
        let state = self.state();
        let start = after.unwrap_or(0).min(state.feed.len() as u64) as usize;
        let records: Vec<StoredRecord> = state.feed[start..]
            .iter()
            .take(limit as usize)
            .cloned()
            .collect();
        let entries = appended_ids(&records)
            .into_iter()
            .filter_map(|id| state.find(id).cloned())
            .collect();
        Ok(join_entries(records, entries))
    }
}

#[async_trait]
impl CursorBackend for MemoryBackend {
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.state().cursors.get(name).copied())
    }

    async fn set_cursor(&self, name: &str, position: u64) -> Result<()> {
        let mut state = self.state();
        let saved = state.cursors.entry(name.to_owned()).or_insert(position);
        *saved = (*saved).max(position);
        Ok(())
    }
}

#[async_trait]
impl HealthBackend for MemoryBackend {
    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl ReplicaBackend for MemoryBackend {
    async fn apply(&self, cursor: &str, lane: Option<Lane>, records: &[FeedRecord]) -> Result<u64> {
        use futures::FutureExt;
        self.mutate(|state| {
            // All or nothing, like a transaction: apply to a copy, keep it if every record
            // applied. The in-memory steps never wait, so this runs to its end under the lock.
            let mut next = state.clone();
            let applied = apply_records(&mut next, cursor, lane, records)
                .now_or_never()
                .expect("the in-memory replica target never waits")?;
            *state = next;
            Ok(applied)
        })
    }
}
