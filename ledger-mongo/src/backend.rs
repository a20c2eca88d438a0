//! The `Backend` implementation: reads, tags, annotations, trims, renames, the feed, cursors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{ClientSession, Collection};

use ledger_core::backend::append::merge_annotations;
use ledger_core::backend::feed::{
    StoredChange, StoredRecord, appended_ids, expand_runs, id_runs, join_entries,
};
use ledger_core::backend::{
    Backend, ChangeFeedBackend, CommitSignal, CursorBackend, HealthBackend, ReplicaBackend,
    SearchBackend,
};
use ledger_core::{
    AppendInput, AppendResult, Capabilities, Conditions, Direction, Entry, EntryId, Error,
    ExpectedVersion, FeedOrder, FeedRecord, Lane, ListOptions, Mutation, ReadOptions, Replication,
    Result, SearchMode, SearchModes, SearchQuery, StreamStat, TimestampPrecision, payload_contains,
};

use crate::doc::{self as stored, field};
use crate::encode;
use crate::error::backend;
use crate::lease::Lease;
use crate::txn::{Tx, on, raced, transact};

/// The collections of one store, and what the deployment offers.
pub struct MongoBackend {
    pub name: String,
    pub client: mongodb::Client,
    pub entries: Collection<Document>,
    pub streams: Collection<Document>,
    pub feed: Collection<Document>,
    pub cursors: Collection<Document>,
    pub meta: Collection<Document>,
    /// The deployment runs multi-document transactions (a replica set or sharded cluster).
    pub transactions: bool,
    /// Mutations are recorded in `N_feed`.
    pub feed_on: bool,
    /// The text index that `$text` needs exists.
    pub full_text: AtomicBool,
    /// How precisely the server compares dates: timestamps are stored at that precision, so
    /// created-at filters hold exactly.
    pub precision: TimestampPrecision,
    pub signal: Arc<CommitSignal>,
    /// Turns change-stream events into commit signals (where the deployment has them).
    pub watcher: Option<tokio::task::JoinHandle<()>>,
}

/// How many entries a trim deletes per command.
const TRIM_CHUNK: i64 = 1000;

/// A counter of `N_meta`.
pub const IDS: &str = "ids";
/// The counter of feed positions.
pub const FEED: &str = "feed";

impl MongoBackend {
    /// A transaction, or `None` where the deployment has none.
    pub async fn begin(&self) -> Result<Option<ClientSession>> {
        if self.transactions {
            crate::txn::begin(&self.client).await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// Takes the next `count` values of counter `name`; returns the last.
    pub async fn take(&self, session: &mut Tx<'_>, name: &str, count: u64) -> Result<i64> {
        let action = self
            .meta
            .find_one_and_update(doc! {"_id": name}, doc! {"$inc": {"n": count as i64}})
            .upsert(true)
            .return_document(ReturnDocument::After);
        let counter = on!(session, action).map_err(backend)?;
        let counter = counter.ok_or_else(|| raced(format!("counter {name} was being created")))?;
        stored::int(&counter, "n")
    }

    /// Raises counter `name` to at least `value` (ids replicated from elsewhere).
    pub async fn raise_counter(&self, session: &mut Tx<'_>, name: &str, value: i64) -> Result<()> {
        let action = self
            .meta
            .update_one(doc! {"_id": name}, doc! {"$max": {"n": value}})
            .upsert(true);
        on!(session, action).map_err(backend)?;
        Ok(())
    }

    /// Records `mutation` of `stream` in the change feed (nothing without it), in `session`.
    pub async fn record(
        &self,
        session: &mut Tx<'_>,
        stream: &str,
        mutation: &Mutation,
    ) -> Result<()> {
        self.record_change(session, stream, StoredChange::of(mutation))
            .await
    }

    /// Records a change as stored (an append's ids, or a whole mutation).
    pub async fn record_change(
        &self,
        session: &mut Tx<'_>,
        stream: &str,
        change: StoredChange,
    ) -> Result<()> {
        if !self.feed_on {
            return Ok(());
        }
        // Taken inside the transaction: a concurrent writer's increment conflicts until this
        // one commits, so positions are handed out in commit order.
        let position = self.take(session, FEED, 1).await?;
        let mut record = doc! {"_id": position, "stream": stream};
        match change {
            StoredChange::Append { ids, version } => {
                let runs: Vec<Bson> = id_runs(&ids)
                    .into_iter()
                    .map(|[first, last]| Bson::Array(vec![first.into(), last.into()]))
                    .collect();
                record.insert("ids", runs);
                record.insert("version", version as i64);
            }
            StoredChange::Whole(mutation) => {
                let text = serde_json::to_string(&mutation).map_err(|e| {
                    Error::InvalidArgument(format!("mutation cannot be recorded: {e}"))
                })?;
                record.insert("mutation", text);
            }
        }
        on!(session, self.feed.insert_one(record)).map_err(backend)?;
        Ok(())
    }

    /// Documents of `collection` matching `filter`, in `session` if there is one.
    pub async fn find_all(
        &self,
        session: &mut Tx<'_>,
        collection: &Collection<Document>,
        filter: Document,
        projection: Option<Document>,
    ) -> Result<Vec<Document>> {
        let action = collection
            .find(filter)
            .projection(projection.unwrap_or_default())
            .sort(doc! {"_id": 1});
        collect(session, action).await
    }

    /// The entry `id` of `stream` as stored, read in `session`.
    async fn find_entry(
        &self,
        session: &mut Tx<'_>,
        stream: &str,
        id: EntryId,
    ) -> Result<Document> {
        let action = self
            .entries
            .find_one(doc! {field::ID: id.get(), field::STREAM: stream})
            .projection(doc! {field::VERSION: 1, field::TAGS: 1, field::ANNOTATIONS: 1});
        on!(session, action)
            .map_err(backend)?
            .ok_or_else(|| Error::entry_not_found(stream, id))
    }

    /// The stream's document, read in `session`.
    pub async fn stream_doc(&self, session: &mut Tx<'_>, stream: &str) -> Result<Option<Document>> {
        on!(session, self.streams.find_one(doc! {"_id": stream})).map_err(backend)
    }

    /// Deletes the entries of `stream` with id `<= up_to` and notes the bound; how many.
    pub async fn delete_up_to(
        &self,
        session: &mut Tx<'_>,
        stream: &str,
        up_to: EntryId,
    ) -> Result<u64> {
        let range = doc! {field::STREAM: stream, field::ID: {"$lte": up_to.get()}};
        // By id, in chunks: a range delete is not answered alike by every MongoDB-wire server
        // (nx-27017 compares the bound as text), an id lookup is.
        let mut deleted = 0;
        let mut trimmed_to = None;
        loop {
            let action = self
                .entries
                .find(range.clone())
                .projection(doc! {field::ID: 1})
                .limit(TRIM_CHUNK);
            let found = collect(session, action).await?;
            let ids = found
                .iter()
                .map(|d| stored::int(d, field::ID))
                .collect::<Result<Vec<i64>>>()?;
            let Some(&highest) = ids.iter().max() else {
                break;
            };
            trimmed_to = trimmed_to.max(Some(highest));
            let action = self.entries.delete_many(doc! {field::ID: {"$in": ids}});
            deleted += on!(session, action).map_err(backend)?.deleted_count;
        }
        // The highest id deleted, not `up_to`: ids taken later may be below `up_to`.
        let Some(trimmed_to) = trimmed_to else {
            return Ok(0);
        };
        let action = self.streams.update_one(
            doc! {"_id": stream},
            doc! {"$max": {"trimmed_to": trimmed_to}},
        );
        on!(session, action).map_err(backend)?;
        Ok(deleted)
    }

    /// Moves stream `from` to `to`, if `from` exists and `to` does not; `false` otherwise.
    pub async fn move_stream(&self, session: &mut Tx<'_>, from: &str, to: &str) -> Result<bool> {
        let Some(mut moved) = self.stream_doc(session, from).await? else {
            return Ok(false);
        };
        if self.stream_doc(session, to).await?.is_some() {
            return Ok(false);
        }
        moved.insert("_id", to);
        on!(session, self.streams.insert_one(moved)).map_err(backend)?;
        on!(session, self.streams.delete_one(doc! {"_id": from})).map_err(backend)?;
        let action = self.entries.update_many(
            doc! {field::STREAM: from},
            doc! {"$set": {field::STREAM: to}},
        );
        on!(session, action).map_err(backend)?;
        Ok(true)
    }

    /// Sets an entry's tags as given, in `session`; `false` if it is not here.
    pub async fn write_tags(
        &self,
        session: &mut Tx<'_>,
        stream: &str,
        id: EntryId,
        tags: &BTreeSet<String>,
        updated_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool> {
        let action = self.entries.update_one(
            doc! {field::ID: id.get(), field::STREAM: stream},
            doc! {"$set": {
                field::TAGS: stored::tags_array(tags),
                field::UPDATED_AT: stored::to_datetime(updated_at),
            }},
        );
        Ok(on!(session, action).map_err(backend)?.matched_count > 0)
    }

    /// Sets an entry's annotations as given, in `session`; `false` if it is not here.
    pub async fn write_annotations(
        &self,
        session: &mut Tx<'_>,
        stream: &str,
        id: EntryId,
        annotations: &BTreeMap<String, String>,
        updated_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool> {
        let action = self.entries.update_one(
            doc! {field::ID: id.get(), field::STREAM: stream},
            doc! {"$set": {
                field::ANNOTATIONS: stored::annotations_doc(annotations),
                field::UPDATED_AT: stored::to_datetime(updated_at),
            }},
        );
        Ok(on!(session, action).map_err(backend)?.matched_count > 0)
    }

    /// The query of a read: `stream` (every stream with `None`), past the cursors, filtered.
    fn query(&self, stream: Option<&str>, options: &ReadOptions) -> Document {
        let mut query = Document::new();
        if let Some(stream) = stream {
            query.insert(field::STREAM, stream);
        }
        let past = match options.direction {
            Direction::Ascending => "$gt",
            Direction::Descending => "$lt",
        };
        if let Some(after) = options.after {
            query.insert(field::ID, doc! {past: after.get()});
        }
        if let Some(version) = options.after_version {
            query.insert(field::VERSION, doc! {past: version as i64});
        }
        let filter = &options.filter;
        if let Some(key) = &filter.order_key {
            query.insert(field::ORDER_KEY, key.as_str());
        }
        let tags: Vec<&String> = filter.tag.iter().chain(&filter.all_tags).collect();
        if !tags.is_empty() {
            query.insert(field::TAGS, doc! {"$all": tags});
        }
        for (map, pairs) in [
            (field::METADATA, &filter.metadata),
            (field::ANNOTATIONS, &filter.annotations),
        ] {
            let mut conditions = Vec::new();
            for (key, value) in pairs {
                let path = format!("{map}.{}", encode::escape_key(key));
                conditions.push(doc! {path: value.as_str()});
            }
            if !conditions.is_empty() {
                query
                    .entry("$and".to_owned())
                    .or_insert_with(|| Bson::Array(Vec::new()))
                    .as_array_mut()
                    .expect("$and is an array")
                    .extend(conditions.into_iter().map(Bson::Document));
            }
        }
        let mut created = Document::new();
        // Stored dates are at the store's precision: `d >= from` holds exactly when `d` is at
        // least `from` rounded up to that precision, and likewise for `d < before`.
        if let Some(from) = filter.created_from {
            created.insert("$gte", round_up(from, self.precision));
        }
        if let Some(before) = filter.created_before {
            created.insert("$lt", round_up(before, self.precision));
        }
        if !created.is_empty() {
            query.insert(field::CREATED_AT, created);
        }
        query
    }

    /// The entries `query` finds, in id order. Within a stream that is version order, which
    /// the `(stream, version)` index serves (so no other index on ids is needed).
    async fn select(
        &self,
        query: Document,
        options: &ReadOptions,
        one_stream: bool,
    ) -> Result<Vec<Entry>> {
        self.select_where(query, options, one_stream, None::<fn(&Entry) -> bool>)
            .await
    }

    /// Like [`MongoBackend::select`], keeping only the entries `keep` accepts (up to the limit).
    async fn select_where(
        &self,
        query: Document,
        options: &ReadOptions,
        one_stream: bool,
        keep: Option<impl Fn(&Entry) -> bool + Send>,
    ) -> Result<Vec<Entry>> {
        let order = match options.direction {
            Direction::Ascending => 1,
            Direction::Descending => -1,
        };
        let key = if one_stream {
            field::VERSION
        } else {
            field::ID
        };
        let mut cursor = self
            .entries
            .find(query)
            .sort(doc! {key: order})
            // Without a filter of its own, the server stops at the limit.
            .limit(if keep.is_none() {
                i64::from(options.limit)
            } else {
                0
            })
            .batch_size(options.limit)
            .projection(stored::entry_projection())
            .await
            .map_err(backend)?;
        let limit = options.limit as usize;
        let mut entries = Vec::with_capacity(limit.min(1024));
        while entries.len() < limit {
            let Some(doc) = cursor.try_next().await.map_err(backend)? else {
                break;
            };
            let entry = stored::entry_of(&doc)?;
            if keep.as_ref().is_none_or(|keep| keep(&entry)) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    fn capabilities_now(&self) -> Capabilities {
        let tx = self.transactions;
        let search = if self.full_text.load(Ordering::Relaxed) {
            SearchModes::ALL
        } else {
            SearchModes::SUBSTRING
        };
        Capabilities::none()
            .expected_version(true)
            .dedup(true)
            .conditions(Conditions::Database)
            .atomic_append(tx)
            .tags(true)
            .annotations(true)
            .trim(true)
            .rename(tx)
            .search(search)
            .change_feed(self.feed_on.then_some(FeedOrder::CommitOrdered))
            .timestamp_precision(self.precision)
            .transactions(tx)
            .cursor_store(true)
            .health(true)
            .replication(tx.then_some(Replication::Transactional))
    }
}

/// Every document `find` returns, in `session` if there is one (a cursor of a session is read
/// through the session).
async fn collect(
    session: &mut Tx<'_>,
    find: mongodb::action::Find<'_, Document>,
) -> Result<Vec<Document>> {
    match session.as_mut() {
        Some(session) => {
            let mut cursor = find.session(&mut **session).await.map_err(backend)?;
            cursor.stream(session).try_collect().await.map_err(backend)
        }
        None => find
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend),
    }
}

/// `time` as a BSON date, rounded up to `precision`.
fn round_up(
    time: chrono::DateTime<chrono::Utc>,
    precision: TimestampPrecision,
) -> mongodb::bson::DateTime {
    let unit: i64 = match precision {
        TimestampPrecision::Seconds => 1_000_000,
        _ => 1000,
    };
    let micros = time.timestamp_micros();
    let rounded = (micros.div_euclid(unit) + i64::from(micros.rem_euclid(unit) != 0)) * unit;
    mongodb::bson::DateTime::from_millis(rounded / 1000)
}

#[async_trait]
impl Backend for MongoBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mongodb"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities_now()
    }

    async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        let result = crate::append::append(self, stream, &entries, expected).await?;
        self.signal.committed();
        Ok(result)
    }

    async fn read(&self, stream: &str, options: &ReadOptions) -> Result<Vec<Entry>> {
        self.select(self.query(Some(stream), options), options, true)
            .await
    }

    async fn count(&self, stream: &str) -> Result<u64> {
        self.entries
            .count_documents(doc! {field::STREAM: stream})
            .await
            .map_err(backend)
    }

    async fn stat(&self, stream: &str) -> Result<StreamStat> {
        let edge = async |order: i32| -> Result<Option<EntryId>> {
            let found = self
                .entries
                .find_one(doc! {field::STREAM: stream})
                .sort(doc! {field::VERSION: order})
                .projection(doc! {field::ID: 1})
                .await
                .map_err(backend)?;
            found
                .map(|d| stored::int(&d, field::ID).map(EntryId::new))
                .transpose()
        };
        let version = match self.stream_doc(&mut None, stream).await? {
            Some(doc) => stored::int_or_zero(&doc, "version")? as u64,
            None => 0,
        };
        Ok(StreamStat {
            stream: stream.to_owned(),
            count: self.count(stream).await?,
            first_id: edge(1).await?,
            last_id: edge(-1).await?,
            last_version: version,
        })
    }

    async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        let filter = match &options.after {
            Some(after) => doc! {"_id": {"$gt": after.as_str()}},
            None => doc! {},
        };
        let mut cursor = self
            .streams
            .find(filter)
            .sort(doc! {"_id": 1})
            .batch_size(options.limit.saturating_add(8))
            .await
            .map_err(backend)?;
        let mut names = Vec::new();
        while names.len() < options.limit as usize {
            let Some(doc) = cursor.try_next().await.map_err(backend)? else {
                break;
            };
            // A stream whose entries were all trimmed is not listed.
            if stored::int_or_zero(&doc, "last_id")? > stored::int_or_zero(&doc, "trimmed_to")? {
                match doc.get("_id") {
                    Some(Bson::String(name)) => names.push(name.clone()),
                    other => {
                        return Err(Error::corrupt(format_args!(
                            "a stream document's _id is {other:?}"
                        )));
                    }
                }
            }
        }
        Ok(names)
    }

    async fn set_tags(&self, stream: &str, id: EntryId, tags: BTreeSet<String>) -> Result<()> {
        let changed = transact!(self, |session| {
            let doc = self.find_entry(&mut session, stream, id).await?;
            if stored::entry_tags(&doc)? == tags {
                return Ok(false); // nothing changes: no updated_at, no feed record
            }
            let updated_at = self.now();
            self.write_tags(&mut session, stream, id, &tags, updated_at)
                .await?;
            let version = stored::int(&doc, field::VERSION)? as u64;
            let mutation = Mutation::SetTags {
                id,
                version,
                tags: tags.clone(),
                updated_at,
            };
            self.record(&mut session, stream, &mutation).await?;
            Ok(true)
        })?;
        if changed {
            self.signal.committed();
        }
        Ok(())
    }

    async fn set_annotations(
        &self,
        stream: &str,
        id: EntryId,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let mut lease = match self.transactions {
            true => None,
            false => Some(Lease::acquire(self, stream).await?),
        };
        let changed = transact!(self, |session| {
            let doc = self.find_entry(&mut session, stream, id).await?;
            let before = stored::entry_annotations(&doc)?;
            let mut merged = before.clone();
            merge_annotations(&mut merged, &changes);
            if merged == before {
                return Ok(false); // nothing changes: no updated_at, no feed record
            }
            let updated_at = self.now();
            // The whole map in one update: the transaction (or the lease) keeps a concurrent
            // merge from being overwritten, and no key has to be spelled as a field path.
            self.write_annotations(&mut session, stream, id, &merged, updated_at)
                .await?;
            let mutation = Mutation::SetAnnotations {
                id,
                version: stored::int(&doc, field::VERSION)? as u64,
                changes: changes.clone(),
                annotations: merged,
                updated_at,
            };
            self.record(&mut session, stream, &mutation).await?;
            Ok(true)
        });
        if let Some(lease) = lease.as_mut() {
            lease.release().await;
        }
        if changed? {
            self.signal.committed();
        }
        Ok(())
    }

    async fn trim(&self, stream: &str, up_to: EntryId) -> Result<u64> {
        let deleted = transact!(self, |session| {
            let deleted = self.delete_up_to(&mut session, stream, up_to).await?;
            if deleted > 0 {
                let mutation = Mutation::Trim { up_to, deleted };
                self.record(&mut session, stream, &mutation).await?;
            }
            Ok(deleted)
        })?;
        if deleted > 0 {
            self.signal.committed();
        }
        Ok(deleted)
    }

    async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        if !self.transactions {
            return Err(Error::NotSupported(
                "rename_stream needs multi-document transactions, which this MongoDB deployment \
                 (a standalone server) does not have"
                    .into(),
            ));
        }
        transact!(self, |session| {
            if self.stream_doc(&mut session, from).await?.is_none() {
                return Err(Error::StreamNotFound(from.to_owned()));
            }
            if self.stream_doc(&mut session, to).await?.is_some() {
                return Err(Error::StreamExists(to.to_owned()));
            }
            self.move_stream(&mut session, from, to).await?;
            let mutation = Mutation::Rename { to: to.to_owned() };
            self.record(&mut session, from, &mutation).await
        })?;
        self.signal.committed();
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
        // The client's connections close when its last handle (this store's) is dropped; a
        // shutdown here would also end the client for stores sharing it.
        Ok(())
    }

    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.signal.subscribe())
    }

    fn as_search(&self) -> Option<&dyn SearchBackend> {
        Some(self)
    }

    fn as_change_feed(&self) -> Option<&dyn ChangeFeedBackend> {
        self.feed_on.then_some(self as &dyn ChangeFeedBackend)
    }

    fn as_cursor_store(&self) -> Option<&dyn CursorBackend> {
        Some(self)
    }

    fn as_health(&self) -> Option<&dyn HealthBackend> {
        Some(self)
    }

    fn as_replica(&self) -> Option<&dyn ReplicaBackend> {
        self.transactions.then_some(self as &dyn ReplicaBackend)
    }
}

impl MongoBackend {
    /// The current time at the store's precision, so what an append returns and its feed
    /// record carry equals what reads return.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.precision.truncate(chrono::Utc::now())
    }
}

#[async_trait]
impl SearchBackend for MongoBackend {
    async fn search(
        &self,
        stream: Option<&str>,
        query: &SearchQuery,
        options: &ReadOptions,
    ) -> Result<Vec<Entry>> {
        let mut filter = self.query(stream, options);
        match query.mode {
            SearchMode::FullText => {
                if !self.full_text.load(Ordering::Relaxed) {
                    return Err(Error::NotSupported(
                        "full-text search needs the text index: call ensure_search_index".into(),
                    ));
                }
                filter.insert("$text", doc! {"$search": query.text.as_str()});
            }
            _ => {
                // The server narrows the entries down with a part of the text every server
                // matches alike; each candidate is then checked exactly, as every backend does.
                if let Some(part) = encode::search_prefilter(&query.text) {
                    filter.insert(field::SEARCH, doc! {"$regex": part});
                }
                let text = query.text.as_str();
                return self
                    .select_where(
                        filter,
                        options,
                        stream.is_some(),
                        Some(|entry: &Entry| payload_contains(&entry.payload, text)),
                    )
                    .await;
            }
        }
        self.select(filter, options, stream.is_some()).await
    }
}

#[async_trait]
impl ChangeFeedBackend for MongoBackend {
    async fn feed_head(&self) -> Result<Option<u64>> {
        // Positions are taken from a counter inside each mutation's transaction, so they
        // commit in order: the highest visible one has none missing below it.
        let last = self
            .feed
            .find_one(doc! {})
            .sort(doc! {"_id": -1})
            .projection(doc! {"_id": 1})
            .await
            .map_err(backend)?;
        last.map(|d| stored::int(&d, "_id").map(|p| p as u64))
            .transpose()
    }

    async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord>> {
        let after = ledger_core::backend::stored_position(after.unwrap_or(0))?;
        let docs: Vec<Document> = self
            .feed
            .find(doc! {"_id": {"$gt": after}})
            .sort(doc! {"_id": 1})
            .limit(i64::from(limit))
            .batch_size(limit)
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        let records = docs.iter().map(stored_record).collect::<Result<Vec<_>>>()?;
        let ids: Vec<i64> = appended_ids(&records).iter().map(|id| id.get()).collect();
        let entries = if ids.is_empty() {
            Vec::new()
        } else {
            self.find_all(
                &mut None,
                &self.entries,
                doc! {field::ID: {"$in": ids}},
                Some(stored::entry_projection()),
            )
            .await?
            .iter()
            .map(stored::entry_of)
            .collect::<Result<Vec<_>>>()?
        };
        Ok(join_entries(records, entries))
    }
}

/// A feed document as a stored record.
fn stored_record(doc: &Document) -> Result<StoredRecord> {
    let position = stored::int(doc, "_id")?;
    let corrupt = |what: &str| Error::corrupt(format_args!("feed record {position}: {what}"));
    let stream = match doc.get("stream") {
        Some(Bson::String(s)) => s.clone(),
        _ => return Err(corrupt("holds no stream")),
    };
    let mutation = match doc.get("mutation") {
        Some(Bson::String(text)) => Some(text.as_str()),
        None => None,
        Some(_) => return Err(corrupt("its mutation is not text")),
    };
    let mut runs = Vec::new();
    if let Some(Bson::Array(items)) = doc.get("ids") {
        for run in items {
            let pair = match run {
                Bson::Array(pair) if pair.len() == 2 => pair,
                _ => return Err(corrupt("an id run is not a pair")),
            };
            let number = |b: &Bson| {
                stored::integer(b).ok_or_else(|| corrupt("an id run holds a non-integer"))
            };
            runs.push([number(&pair[0])?, number(&pair[1])?]);
        }
    }
    let ids = expand_runs(&runs).map_err(|e| corrupt(&e))?;
    let version = doc
        .contains_key("version")
        .then(|| stored::int(doc, "version"))
        .transpose()?;
    Ok(StoredRecord {
        position: position as u64,
        stream,
        change: StoredChange::from_row(position, mutation, ids, version)?,
    })
}

#[async_trait]
impl CursorBackend for MongoBackend {
    async fn get_cursor(&self, name: &str) -> Result<Option<u64>> {
        let doc = self
            .cursors
            .find_one(doc! {"_id": name})
            .await
            .map_err(backend)?;
        doc.map(|d| stored::int(&d, "position").map(|p| p as u64))
            .transpose()
    }

    async fn set_cursor(&self, name: &str, position: u64) -> Result<()> {
        save_cursor(self, &mut None, name, position).await
    }
}

/// Saves `position` under cursor `name` unless a greater one is saved.
pub async fn save_cursor(
    store: &MongoBackend,
    session: &mut Tx<'_>,
    name: &str,
    position: u64,
) -> Result<()> {
    let position = ledger_core::backend::stored_position(position)?;
    let action = store
        .cursors
        .update_one(doc! {"_id": name}, doc! {"$max": {"position": position}})
        .upsert(true);
    on!(session, action).map_err(backend)?;
    Ok(())
}

#[async_trait]
impl HealthBackend for MongoBackend {
    async fn health(&self) -> Result<()> {
        self.client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl ReplicaBackend for MongoBackend {
    async fn apply(&self, cursor: &str, lane: Option<Lane>, records: &[FeedRecord]) -> Result<u64> {
        let applied = transact!(self, |session| {
            let mut target = crate::replica::Target {
                backend: self,
                session: &mut session,
            };
            ledger_core::backend::replica::apply_records(&mut target, cursor, lane, records).await
        })?;
        self.signal.committed();
        Ok(applied)
    }
}
