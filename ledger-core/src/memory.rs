//! `MemoryStore`: the complete reference implementation of the contract, in memory.
//!
//! Every operation takes one mutex, so each is atomic and they are totally ordered; change-feed
//! positions are therefore commit-ordered. Ids are `i64` from 1, never reused, like the SQL
//! backends, so the model test can compare them directly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::append::{
    dedup_keys, merge_annotations, now, plan_append, validate_annotations, validate_append,
    validate_tags,
};
use crate::entry::{AppendInput, AppendOutcome, Entry, ExpectedVersion, StreamStat};
use crate::error::{Error, Result};
use crate::feed::{FeedRecord, Mutation};
use crate::lifecycle::Lifecycle;
use crate::name::{validate_cursor_name, validate_stream_id};
use crate::read::{Direction, ListOptions, ReadOptions, payload_contains, validate_search_text};
use crate::store::{Capabilities, ChangeFeed, CursorStore, Health, Search, Store};

#[derive(Default)]
struct StreamData {
    version: u64,
    entries: BTreeMap<i64, Entry<i64>>,
}

#[derive(Default)]
struct State {
    last_id: i64,
    streams: BTreeMap<String, StreamData>,
    feed: Vec<FeedRecord<i64>>,
    cursors: HashMap<String, u64>,
}

impl State {
    fn record(&mut self, stream: &str, mutation: Mutation<i64>) {
        let position = self.feed.len() as u64 + 1;
        self.feed.push(FeedRecord {
            position,
            stream: stream.to_owned(),
            mutation,
        });
    }

    fn entry_mut(&mut self, stream: &str, id: i64) -> Result<&mut Entry<i64>> {
        self.streams
            .get_mut(stream)
            .and_then(|s| s.entries.get_mut(&id))
            .ok_or_else(|| Error::entry_not_found(stream, id))
    }
}

struct Inner {
    state: Mutex<State>,
    lifecycle: Lifecycle,
}

/// An in-memory store with every capability. Clones share the same data.
///
/// ```
/// use ledger_core::{AppendInput, ExpectedVersion, MemoryStore, ReadOptions, Store};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ledger_core::Result<()> {
/// let store = MemoryStore::new();
/// let input = AppendInput::new(serde_json::json!({"n": 1})).dedup_key("k");
/// store.append("s", vec![input.clone()], ExpectedVersion::NoStream).await?;
/// let retry = store.append("s", vec![input], ExpectedVersion::NoStream).await?;
/// assert!(!retry[0].is_appended()); // an idempotent retry succeeds and writes nothing
/// assert_eq!(store.read("s", &ReadOptions::new()).await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                lifecycle: Lifecycle::new(),
            }),
        }
    }

    /// The state, if the store is open.
    fn state(&self) -> Result<MutexGuard<'_, State>> {
        self.inner.lifecycle.check_open()?;
        // A panic while holding the lock cannot leave a half-applied mutation: every mutation
        // validates first and changes state last, so a poisoned lock is still consistent.
        Ok(self.inner.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn committed(&self) {
        self.inner.lifecycle.committed();
    }

    fn select(
        entries: impl DoubleEndedIterator<Item = Entry<i64>>,
        options: &ReadOptions<i64>,
        extra: impl Fn(&Entry<i64>) -> bool,
    ) -> Vec<Entry<i64>> {
        let keep = |e: &Entry<i64>| {
            let past_cursor = match (options.after, options.direction) {
                (None, _) => true,
                (Some(a), Direction::Ascending) => e.id > a,
                (Some(a), Direction::Descending) => e.id < a,
            };
            past_cursor && options.filter.matches(e) && extra(e)
        };
        let limit = options.limit as usize;
        match options.direction {
            Direction::Ascending => entries.filter(keep).take(limit).collect(),
            Direction::Descending => entries.rev().filter(keep).take(limit).collect(),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    type Id = i64;

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<i64>>> {
        let mut state = self.state()?;
        validate_append(stream, &entries)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let data = state.streams.get(stream);
        let current = data.map_or(0, |d| d.version);
        let keys = dedup_keys(&entries);
        let stored: HashMap<String, i64> = data
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
            return Ok(plan.outcomes(&[]));
        }
        let ids: Vec<i64> = (1..=plan.rows.len() as i64)
            .map(|k| state.last_id + k)
            .collect();
        let written = plan.entries(stream, &entries, &ids, now());
        state.last_id = *ids.last().expect("plan is not empty");
        let data = state.streams.entry(stream.to_owned()).or_default();
        data.version = plan.new_version;
        data.entries
            .extend(written.iter().map(|e| (e.id, e.clone())));
        state.record(stream, Mutation::Append { entries: written });
        drop(state);
        self.committed();
        Ok(plan.outcomes(&ids))
    }

    async fn read(&self, stream: &str, options: &ReadOptions<i64>) -> Result<Vec<Entry<i64>>> {
        let state = self.state()?;
        validate_stream_id(stream)?;
        options.validate()?;
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
        let state = self.state()?;
        validate_stream_id(stream)?;
        Ok(state
            .streams
            .get(stream)
            .map_or(0, |d| d.entries.len() as u64))
    }

    async fn stat(&self, stream: &str) -> Result<StreamStat<i64>> {
        let state = self.state()?;
        validate_stream_id(stream)?;
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
        let state = self.state()?;
        options.validate()?;
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

    async fn set_tags(&self, stream: &str, id: &i64, tags: BTreeSet<String>) -> Result<()> {
        let mut state = self.state()?;
        validate_stream_id(stream)?;
        validate_tags(&tags)?;
        let updated_at = now();
        let entry = state.entry_mut(stream, *id)?;
        if entry.tags == tags {
            return Ok(()); // nothing changes: no updated_at, no feed record
        }
        entry.tags = tags.clone();
        entry.updated_at = Some(updated_at);
        let mutation = Mutation::SetTags {
            id: *id,
            tags,
            updated_at,
        };
        state.record(stream, mutation);
        drop(state);
        self.committed();
        Ok(())
    }

    async fn set_annotations(
        &self,
        stream: &str,
        id: &i64,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let mut state = self.state()?;
        validate_stream_id(stream)?;
        validate_annotations(&changes)?;
        let updated_at = now();
        let entry = state.entry_mut(stream, *id)?;
        let mut merged = entry.annotations.clone();
        merge_annotations(&mut merged, &changes);
        if merged == entry.annotations {
            return Ok(()); // nothing changes: no updated_at, no feed record
        }
        entry.annotations = merged;
        entry.updated_at = Some(updated_at);
        let mutation = Mutation::SetAnnotations {
            id: *id,
            changes,
            updated_at,
        };
        state.record(stream, mutation);
        drop(state);
        self.committed();
        Ok(())
    }

    async fn trim(&self, stream: &str, up_to: &i64) -> Result<u64> {
        let mut state = self.state()?;
        validate_stream_id(stream)?;
        let Some(data) = state.streams.get_mut(stream) else {
            return Ok(0);
        };
        let kept = data.entries.split_off(&(up_to.saturating_add(1)));
        let deleted = std::mem::replace(&mut data.entries, kept).len() as u64;
        if deleted > 0 {
            let mutation = Mutation::Trim {
                up_to: *up_to,
                deleted,
            };
            state.record(stream, mutation);
            drop(state);
            self.committed();
        }
        Ok(deleted)
    }

    async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        let mut state = self.state()?;
        validate_stream_id(from)?;
        validate_stream_id(to)?;
        if !state.streams.contains_key(from) {
            return Err(Error::StreamNotFound(from.to_owned()));
        }
        if state.streams.contains_key(to) {
            return Err(Error::StreamExists(to.to_owned()));
        }
        let mut data = state.streams.remove(from).expect("checked above");
        for entry in data.entries.values_mut() {
            entry.stream = to.to_owned();
        }
        state.streams.insert(to.to_owned(), data);
        state.record(from, Mutation::Rename { to: to.to_owned() });
        drop(state);
        self.committed();
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.inner.lifecycle.close();
        Ok(())
    }

    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.inner.lifecycle.commits())
    }

    fn as_search(&self) -> Option<&dyn Search<Id = i64>> {
        Some(self)
    }

    fn as_change_feed(&self) -> Option<&dyn ChangeFeed<Id = i64>> {
        Some(self)
    }

    fn as_cursor_store(&self) -> Option<&dyn CursorStore> {
        Some(self)
    }

    fn as_health(&self) -> Option<&dyn Health> {
        Some(self)
    }
}

#[async_trait]
impl Search for MemoryStore {
    type Id = i64;

    async fn search(
        &self,
        stream: Option<&str>,
        text: &str,
        options: &ReadOptions<i64>,
    ) -> Result<Vec<Entry<i64>>> {
        let state = self.state()?;
        if let Some(s) = stream {
            validate_stream_id(s)?;
        }
        validate_search_text(text)?;
        options.validate()?;
        // Entries of all matching streams, in id order.
        let mut all: Vec<Entry<i64>> = state
            .streams
            .iter()
            .filter(|(name, _)| stream.is_none_or(|s| s == name.as_str()))
            .flat_map(|(_, d)| d.entries.values().cloned())
            .collect();
        all.sort_by_key(|e| e.id);
        Ok(Self::select(all.into_iter(), options, |e| {
            payload_contains(&e.payload, text)
        }))
    }
}

#[async_trait]
impl ChangeFeed for MemoryStore {
    type Id = i64;

    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord<i64>>> {
        let state = self.state()?;
        ListOptions::new().limit(limit).validate()?;
        let start = after.unwrap_or(0).min(state.feed.len() as u64) as usize;
        Ok(state.feed[start..]
            .iter()
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl CursorStore for MemoryStore {
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>> {
        let state = self.state()?;
        validate_cursor_name(name)?;
        Ok(state.cursors.get(name).copied())
    }

    async fn set_cursor(&self, name: &str, position: u64) -> Result<()> {
        let mut state = self.state()?;
        validate_cursor_name(name)?;
        let saved = state.cursors.entry(name.to_owned()).or_insert(position);
        *saved = (*saved).max(position);
        Ok(())
    }
}

#[async_trait]
impl Health for MemoryStore {
    async fn health(&self) -> Result<()> {
        self.state().map(drop)
    }
}
