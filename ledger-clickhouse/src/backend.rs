//! The [`Backend`] over ClickHouse tables.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clickhouse::Client;
use serde::Serialize;

use ledger_core::backend::append::{dedup_keys, merge_annotations, now, plan_append};
use ledger_core::backend::replica::apply_records;
use ledger_core::backend::{
    Backend, ChangeFeedBackend, CommitSignal, CursorBackend, HealthBackend, ReplicaBackend,
    SearchBackend,
};
use ledger_core::{
    AppendInput, AppendResult, BackendErrorKind, Capabilities, Conditions, Direction, Entry,
    EntryId, Error, ExpectedVersion, FeedRecord, Lane, ListOptions, RawPayload, ReadOptions,
    Replication, Result, SearchModes, SearchQuery, StreamStat, TimestampPrecision,
};

use crate::error::backend;
use crate::replica::Target;
use crate::row::{self, COLUMNS, NewRow, StoredRow};
use crate::schema::{Dialect, Names};
use crate::writer::{Keys, MAX_STREAM_KEYS, StreamGuard, StreamState, Tip, Writers};

/// How long a trim waits for its mutation before it reports a timeout.
const MUTATION_LIMIT: Duration = Duration::from_secs(60);

/// A store: its tables on one server, and the handle's writer state.
pub struct ClickHouseBackend {
    pub name: String,
    pub client: Client,
    pub dialect: Dialect,
    pub names: Names,
    pub writers: Writers,
    pub signal: Arc<CommitSignal>,
}

/// A value bound to a `?` of a query (the client quotes it).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum Bound {
    Text(String),
    Texts(Vec<String>),
    Signed(i64),
    Unsigned(u64),
}

/// A query's text and the values of its `?`s, in order.
#[derive(Debug, Default)]
struct Sql {
    text: String,
    binds: Vec<Bound>,
}

impl Sql {
    fn push(&mut self, text: &str, bound: impl IntoIterator<Item = Bound>) {
        self.text.push_str(text);
        self.binds.extend(bound);
    }
}

/// `conditions` joined by `AND` (`1` for none).
fn all_of(conditions: &[&str]) -> String {
    if conditions.is_empty() {
        "1".to_owned()
    } else {
        conditions.join(" AND ")
    }
}

impl ClickHouseBackend {
    fn query(&self, sql: &Sql) -> clickhouse::query::Query {
        sql.binds
            .iter()
            .fold(self.client.query(&sql.text), |q, b| q.bind(b))
    }

    /// The page `options` selects, of `stream` (of every stream with `None`), with entries
    /// whose search text contains `text` if given.
    fn select(&self, stream: Option<&str>, options: &ReadOptions, text: Option<&str>) -> Sql {
        // Conditions on the key and on what never changes between an entry's revisions go
        // inside FINAL; the rest outside, on the latest revision only.
        let mut keys: Vec<&str> = Vec::new();
        let mut key_binds = Vec::new();
        if let Some(stream) = stream {
            keys.push("stream = ?");
            key_binds.push(Bound::Text(stream.to_owned()));
        }
        let descending = options.direction == Direction::Descending;
        if let Some(after) = options.after {
            keys.push(if descending { "id < ?" } else { "id > ?" });
            key_binds.push(Bound::Signed(after.get()));
        }
        if let Some(after) = options.after_version {
            keys.push(if descending {
                "version < ?"
            } else {
                "version > ?"
            });
            key_binds.push(Bound::Unsigned(after));
        }
        let filter = &options.filter;
        let mut rest: Vec<&str> = Vec::new();
        let mut rest_binds = Vec::new();
        if let Some(key) = &filter.order_key {
            rest.push("order_key = ?");
            rest_binds.push(Bound::Text(key.clone()));
        }
        if let Some(tag) = &filter.tag {
            rest.push("has(tags, ?)");
            rest_binds.push(Bound::Text(tag.clone()));
        }
        if !filter.all_tags.is_empty() {
            rest.push("hasAll(tags, ?)");
            rest_binds.push(Bound::Texts(filter.all_tags.clone()));
        }
        for (key, value) in &filter.metadata {
            rest.push("has(metadata_keys, ?) AND metadata_values[indexOf(metadata_keys, ?)] = ?");
            rest_binds.extend([key, key, value].map(|s| Bound::Text(s.clone())));
        }
        for (key, value) in &filter.annotations {
            rest.push(
                "has(annotation_keys, ?) AND annotation_values[indexOf(annotation_keys, ?)] = ?",
            );
            rest_binds.extend([key, key, value].map(|s| Bound::Text(s.clone())));
        }
        if let Some(from) = filter.created_from {
            rest.push("created_at >= ?");
            rest_binds.push(Bound::Signed(row::micros(from)));
        }
        if let Some(before) = filter.created_before {
            rest.push("created_at < ?");
            rest_binds.push(Bound::Signed(row::micros(before)));
        }
        if let Some(text) = text {
            // ASCII case only, as the contract says (`positionCaseInsensitiveUTF8` would fold
            // more).
            rest.push("positionCaseInsensitive(search, ?) > 0");
            rest_binds.push(Bound::Text(text.to_owned()));
        }
        let columns = if text.is_some() {
            format!("{COLUMNS}, search")
        } else {
            COLUMNS.to_owned()
        };
        let mut sql = Sql::default();
        let from = format!("{} FINAL WHERE {}", self.names.entries, all_of(&keys));
        if rest.is_empty() {
            // Nothing to check on the latest revision: one level, which the server can read in
            // key order and stop at the limit.
            sql.push(&format!("SELECT {COLUMNS} FROM {from}"), key_binds);
        } else {
            sql.push(
                &format!("SELECT {COLUMNS} FROM (SELECT {columns} FROM {from}) WHERE "),
                key_binds,
            );
            sql.push(&all_of(&rest), rest_binds);
        }
        sql.push(
            &format!(
                " ORDER BY id {} LIMIT {}",
                if descending { "DESC" } else { "ASC" },
                options.limit
            ),
            [],
        );
        sql
    }

    async fn rows(&self, sql: &Sql) -> Result<Vec<Entry<String>>> {
        let rows: Vec<StoredRow> = self.query(sql).fetch_all().await.map_err(backend)?;
        rows.into_iter().map(StoredRow::into_entry).collect()
    }

    /// The stream's version and highest id, as the database has them: the version survives
    /// in `T_streams` where a trim removed the entries.
    async fn read_tip(&self, stream: &str) -> Result<Tip> {
        let sql = format!(
            "SELECT max(v), max(i) FROM (
                SELECT version AS v, id AS i FROM {} WHERE stream = ?
                UNION ALL SELECT version AS v, toInt64(0) AS i FROM {} WHERE stream = ?)",
            self.names.entries, self.names.streams
        );
        let (version, last_id): (u64, i64) = self
            .client
            .query(&sql)
            .bind(stream)
            .bind(stream)
            .fetch_one()
            .await
            .map_err(backend)?;
        Ok(Tip { version, last_id })
    }

    /// What the lock holds of the stream, its tip read first if it holds nothing.
    async fn state<'g>(
        &self,
        guard: &'g mut StreamGuard,
        stream: &str,
    ) -> Result<&'g mut StreamState> {
        if guard.is_none() {
            let tip = self.read_tip(stream).await?;
            **guard = Some(StreamState {
                tip,
                keys: Keys::Unread,
            });
        }
        Ok(guard.as_mut().expect("just filled"))
    }

    /// Which of `keys` the stream holds, with their entries' ids: from the keys the handle keeps,
    /// read whole on the stream's first append with keys while they are few enough, else looked
    /// up.
    async fn stored_keys(
        &self,
        state: &mut StreamState,
        stream: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, EntryId>> {
        if matches!(state.keys, Keys::Unread) {
            let sql = format!(
                "SELECT DISTINCT assumeNotNull(dedup_key), id FROM {} WHERE stream = ? \
                 AND isNotNull(dedup_key) LIMIT {}",
                self.names.entries,
                MAX_STREAM_KEYS + 1
            );
            let all: Vec<(String, i64)> = self
                .client
                .query(&sql)
                .bind(stream)
                .fetch_all()
                .await
                .map_err(backend)?;
            let mut set = self.writers.key_set();
            let all = all
                .into_iter()
                .map(|(k, id)| (k, EntryId::new(id)))
                .collect();
            state.keys = if set.extend(all) {
                Keys::Kept(set)
            } else {
                Keys::LookedUp
            };
        }
        if let Keys::Kept(set) = &state.keys {
            return Ok(keys
                .iter()
                .filter_map(|k| set.get(k).map(|id| ((*k).to_owned(), id)))
                .collect());
        }
        let sql = format!(
            "SELECT assumeNotNull(dedup_key), id FROM {} WHERE stream = ? \
             AND isNotNull(dedup_key) AND has(?, assumeNotNull(dedup_key))",
            self.names.entries
        );
        let found: Vec<(String, i64)> = self
            .client
            .query(&sql)
            .bind(stream)
            .bind(keys)
            .fetch_all()
            .await
            .map_err(backend)?;
        Ok(found
            .into_iter()
            .map(|(key, id)| (key, EntryId::new(id)))
            .collect())
    }

    /// Writes `rows` in one insert.
    pub async fn insert(&self, rows: &[NewRow<'_>]) -> Result<()> {
        // The name quoted (a table may be called `table`), and the whole batch one block, so
        // one part: readers see all of it or none.
        let mut insert = self
            .client
            .insert_unescaped::<NewRow<'static>>(&self.names.entries)
            .await
            .map_err(backend)?
            .with_setting(
                "max_insert_block_size",
                rows.len().max(1_048_576).to_string(),
            );
        for row in rows {
            insert.write(row).await.map_err(backend)?;
        }
        insert.end().await.map_err(backend)
    }

    /// The latest revision of entry `id` of `stream`.
    async fn current(&self, stream: &str, id: EntryId) -> Result<Option<StoredRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} FINAL WHERE stream = ? AND id = ?",
            self.names.entries
        );
        self.client
            .query(&sql)
            .bind(stream)
            .bind(id.get())
            .fetch_optional()
            .await
            .map_err(backend)
    }

    /// Applies `change` to entry `id` under its stream's lock and writes the next revision if
    /// it changed anything, with `updated_at` (now if `None`); `false` if the entry is not here.
    pub async fn revise(
        &self,
        stream: &str,
        id: EntryId,
        updated_at: Option<DateTime<Utc>>,
        change: impl FnOnce(&mut Entry) -> bool + Send,
    ) -> Result<bool> {
        let _guard = self.writers.lock(stream).await;
        // Taken once the lock is held, so later changes never carry earlier times.
        let updated_at = updated_at.unwrap_or_else(now);
        let Some(current) = self.current(stream, id).await? else {
            return Ok(false);
        };
        let revision = current.revision + 1;
        let text = current.payload.clone();
        let mut entry = row::parsed(current.into_entry()?)?;
        if change(&mut entry) {
            entry.updated_at = Some(updated_at);
            self.insert(&[NewRow::of(&entry, &text, revision)]).await?;
            self.signal.committed();
        }
        Ok(true)
    }

    /// Raises the version `T_streams` keeps for `stream` to `version`.
    pub async fn keep_version(&self, stream: &str, version: u64) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (stream, version) VALUES (?, ?)",
            self.names.streams
        );
        self.client
            .query(&sql)
            .bind(stream)
            .bind(version)
            .execute()
            .await
            .map_err(backend)
    }

    /// Deletes the entries of `stream` with id `<= up_to`, and returns once no read can see
    /// them; how many there were.
    pub async fn delete_up_to(&self, stream: &str, up_to: EntryId) -> Result<u64> {
        let mut guard = self.writers.lock(stream).await;
        let tip = self.state(&mut guard, stream).await?.tip;
        // Until the delete is done, nobody knows which keys it freed: read the stream again
        // then, unless it finishes here.
        let mut state = guard.take().expect("the state was read");
        let count_sql = format!(
            "SELECT count() FROM {} FINAL WHERE stream = ? AND id <= ?",
            self.names.entries
        );
        let count: u64 = self
            .client
            .query(&count_sql)
            .bind(stream)
            .bind(up_to.get())
            .fetch_one()
            .await
            .map_err(backend)?;
        if count == 0 {
            *guard = Some(state);
            return Ok(0);
        }
        // The version first: once the entries are gone, only T_streams knows it.
        self.keep_version(stream, tip.version).await?;
        let delete = format!(
            "ALTER TABLE {} DELETE WHERE stream = ? AND id <= ?",
            self.names.entries
        );
        let query = self.client.query(&delete).bind(stream).bind(up_to.get());
        match self.dialect {
            Dialect::Current => query
                .with_setting("mutations_sync", "2")
                .execute()
                .await
                .map_err(backend)?,
            Dialect::Legacy => {
                let before = self.mutations().await?;
                query.execute().await.map_err(backend)?;
                self.await_mutations(&before).await?;
            }
        }
        if let Keys::Kept(set) = &mut state.keys {
            set.trim(up_to);
        }
        *guard = Some(state);
        self.signal.committed();
        Ok(count)
    }

    /// The ids of the entries table's mutations so far.
    async fn mutations(&self) -> Result<Vec<String>> {
        let ids: Vec<String> = self
            .client
            .query(
                "SELECT mutation_id FROM system.mutations \
                 WHERE database = currentDatabase() AND table = ?",
            )
            .bind(&self.names.bare)
            .fetch_all()
            .await
            .map_err(backend)?;
        // Never empty: `has([], …)` does not type-check, and no mutation is called "".
        Ok(ids.into_iter().chain([String::new()]).collect())
    }

    /// Waits until every mutation of the entries table but those in `before` is done (servers
    /// without `mutations_sync`): the trim's own, and any that started with it.
    async fn await_mutations(&self, before: &[String]) -> Result<()> {
        let started = Instant::now();
        loop {
            let pending: u64 = self
                .client
                .query(
                    "SELECT count() FROM system.mutations WHERE database = currentDatabase() \
                     AND table = ? AND is_done = 0 AND NOT has(?, mutation_id)",
                )
                .bind(&self.names.bare)
                .bind(before)
                .fetch_one()
                .await
                .map_err(backend)?;
            if pending == 0 {
                return Ok(());
            }
            if started.elapsed() > MUTATION_LIMIT {
                return Err(Error::backend(
                    BackendErrorKind::Timeout,
                    format!(
                        "the trim's delete on {} is not done after {MUTATION_LIMIT:?}",
                        self.names.entries
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Forgets what the handle knows of `stream` (written by a replication, not an append).
    pub async fn forget(&self, stream: &str) {
        *self.writers.lock(stream).await = None;
    }
}

#[async_trait]
impl Backend for ClickHouseBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "clickhouse"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .expected_version(true)
            .dedup(true)
            .conditions(Conditions::Handle)
            .atomic_append(true)
            .tags(true)
            .annotations(true)
            .trim(true)
            .search(SearchModes::SUBSTRING)
            .timestamp_precision(TimestampPrecision::Microseconds)
            .cursor_store(true)
            .health(true)
            .replication(Some(Replication::Idempotent))
    }

    async fn append(
        &self,
        stream: &str,
        inputs: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        let mut guard = self.writers.lock(stream).await;
        let state = self.state(&mut guard, stream).await?;
        let tip = state.tip;
        let keys = dedup_keys(&inputs);
        let stored = if keys.is_empty() {
            HashMap::new()
        } else {
            self.stored_keys(state, stream, &keys).await?
        };
        let plan = plan_append(stream, &inputs, tip.version, &stored, expected)?;
        if plan.is_empty() {
            return Ok(plan.result(&[]));
        }
        let count = plan.rows.len() as u64;
        let first = self.writers.take_ids(count, tip.last_id);
        let ids: Vec<EntryId> = (0..count as i64).map(|i| EntryId::new(first + i)).collect();
        let created_at = row::micros(now());
        let payloads: Vec<String> = plan
            .rows
            .iter()
            .map(|&(index, _)| serde_json::to_string(&inputs[index].payload))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::InvalidArgument(format!("payload does not serialize: {e}")))?;
        let rows: Vec<NewRow<'_>> = plan
            .rows
            .iter()
            .zip(&ids)
            .zip(&payloads)
            .map(|((&(index, version), id), payload)| {
                NewRow::appended(stream, *id, version, &inputs[index], payload, created_at)
            })
            .collect();
        // Until the insert answers, nobody knows whether it wrote: read the stream again then.
        let mut state = guard.take().expect("the state was read");
        self.insert(&rows).await?;
        state.tip = Tip {
            version: plan.new_version,
            last_id: first + count as i64 - 1,
        };
        if let Keys::Kept(set) = &mut state.keys {
            let new: Vec<(String, EntryId)> = rows
                .iter()
                .filter_map(|r| Some((r.dedup_key?.to_owned(), EntryId::new(r.id))))
                .collect();
            if !set.extend(new) {
                state.keys = Keys::LookedUp;
            }
        }
        *guard = Some(state);
        drop(guard);
        self.signal.committed();
        Ok(plan.result(&ids))
    }

    async fn read(&self, stream: &str, options: &ReadOptions) -> Result<Vec<Entry>> {
        let rows = self.rows(&self.select(Some(stream), options, None)).await?;
        rows.into_iter().map(row::parsed).collect()
    }

    async fn read_json(
        &self,
        stream: &str,
        options: &ReadOptions,
    ) -> Result<Vec<Entry<RawPayload>>> {
        let rows = self.rows(&self.select(Some(stream), options, None)).await?;
        rows.into_iter().map(row::raw).collect()
    }

    async fn count(&self, stream: &str) -> Result<u64> {
        let sql = format!(
            "SELECT count() FROM {} FINAL WHERE stream = ?",
            self.names.entries
        );
        self.client
            .query(&sql)
            .bind(stream)
            .fetch_one()
            .await
            .map_err(backend)
    }

    async fn stat(&self, stream: &str) -> Result<StreamStat> {
        let sql = format!(
            "SELECT count(), min(id), max(id) FROM {} FINAL WHERE stream = ?",
            self.names.entries
        );
        let (count, first, last): (u64, i64, i64) = self
            .client
            .query(&sql)
            .bind(stream)
            .fetch_one()
            .await
            .map_err(backend)?;
        let tip = self.read_tip(stream).await?;
        let present = count > 0;
        Ok(StreamStat {
            stream: stream.to_owned(),
            count,
            first_id: present.then_some(EntryId::new(first)),
            last_id: present.then_some(EntryId::new(last)),
            last_version: tip.version,
        })
    }

    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        let mut sql = Sql::default();
        sql.push(
            &format!("SELECT DISTINCT stream FROM {} WHERE ", self.names.entries),
            [],
        );
        match &options.after {
            Some(after) => sql.push("stream > ?", [Bound::Text(after.clone())]),
            None => sql.push("1", []),
        }
        sql.push(&format!(" ORDER BY stream LIMIT {}", options.limit), []);
        self.query(&sql).fetch_all().await.map_err(backend)
    }

    async fn set_tags(&self, stream: &str, id: EntryId, tags: BTreeSet<String>) -> Result<()> {
        let found = self
            .revise(stream, id, None, |entry| {
                let changed = entry.tags != tags;
                entry.tags = tags;
                changed
            })
            .await?;
        found
            .then_some(())
            .ok_or_else(|| Error::entry_not_found(stream, id))
    }

    async fn set_annotations(
        &self,
        stream: &str,
        id: EntryId,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let found = self
            .revise(stream, id, None, |entry| {
                let before = entry.annotations.clone();
                merge_annotations(&mut entry.annotations, &changes);
                entry.annotations != before
            })
            .await?;
        found
            .then_some(())
            .ok_or_else(|| Error::entry_not_found(stream, id))
    }

    async fn trim(&self, stream: &str, up_to: EntryId) -> Result<u64> {
        self.delete_up_to(stream, up_to).await
    }

    async fn rename_stream(&self, _: &str, _: &str) -> Result<()> {
        Err(rename_not_supported())
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
        None
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

/// Why a ClickHouse store cannot rename.
pub fn rename_not_supported() -> Error {
    Error::NotSupported(
        "rename_stream on ClickHouse: moving a stream's rows is an insert and a delete that \
         readers would see apart"
            .into(),
    )
}

#[async_trait]
impl SearchBackend for ClickHouseBackend {
    async fn search(
        &self,
        stream: Option<&str>,
        query: &SearchQuery,
        options: &ReadOptions,
    ) -> Result<Vec<Entry>> {
        let rows = self
            .rows(&self.select(stream, options, Some(&query.text)))
            .await?;
        rows.into_iter().map(row::parsed).collect()
    }
}

#[async_trait]
impl CursorBackend for ClickHouseBackend {
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>> {
        let sql = format!(
            "SELECT max(position), count() FROM {} WHERE name = ?",
            self.names.cursors
        );
        let (position, rows): (u64, u64) = self
            .client
            .query(&sql)
            .bind(name)
            .fetch_one()
            .await
            .map_err(backend)?;
        Ok((rows > 0).then_some(position))
    }

    async fn set_cursor(&self, name: &str, position: u64) -> Result<()> {
        // Every save is a row; the highest is the cursor, so it never moves back.
        let sql = format!(
            "INSERT INTO {} (name, position) VALUES (?, ?)",
            self.names.cursors
        );
        self.client
            .query(&sql)
            .bind(name)
            .bind(position)
            .execute()
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl HealthBackend for ClickHouseBackend {
    async fn health(&self) -> Result<()> {
        let _: u8 = self
            .client
            .query("SELECT toUInt8(1)")
            .fetch_one()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl ReplicaBackend for ClickHouseBackend {
    async fn apply(&self, cursor: &str, lane: Option<Lane>, records: &[FeedRecord]) -> Result<u64> {
        apply_records(&mut Target { backend: self }, cursor, lane, records).await
    }
}
