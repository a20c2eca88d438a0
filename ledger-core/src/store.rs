//! [`Store`]: the handle users hold, in front of any backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};

use crate::backend::Backend;
use crate::capabilities::Capabilities;
use crate::entry::{
    AppendInput, AppendResult, Entry, EntryId, ExpectedVersion, RawPayload, StreamStat,
};
use crate::error::{Error, Result};
use crate::feed::{FeedRecord, Lane, Mutation};
use crate::name::{validate_cursor_name, validate_replication_cursor, validate_stream_id};
use crate::read::{ListOptions, ReadOptions, SearchQuery};
use crate::subscribe::{SubscribeOptions, subscribe_feed, subscribe_stream};
use crate::validate::{validate_annotations, validate_append, validate_tags};

/// A store of entries (one table or collection, many streams) on any backend. Clones are
/// cheap and share the backend.
///
/// Every call is checked here before it reaches the backend, the same for all of them: a closed
/// store refuses it ([`Error::StoreClosed`]), bad arguments are [`Error::InvalidName`] or
/// [`Error::InvalidArgument`] naming the value, a capability the backend lacks is
/// [`Error::NotSupported`], and database errors name the store.
///
/// ```
/// use ledger_core::{AppendInput, ExpectedVersion, MemoryStore, ReadOptions, Store};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ledger_core::Result<()> {
/// let store: Store = MemoryStore::new().into();
/// let input = AppendInput::new(serde_json::json!({"n": 1})).dedup_key("k");
/// store.append("s", vec![input.clone()], ExpectedVersion::NoStream).await?;
/// let retry = store.append("s", vec![input], ExpectedVersion::NoStream).await?;
/// assert!(!retry.outcomes[0].is_appended()); // an idempotent retry succeeds and writes nothing
/// assert_eq!(store.read("s", &ReadOptions::new()).await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    backend: Arc<dyn Backend>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name())
            .field("backend", &self.backend_kind())
            .finish_non_exhaustive()
    }
}

/// One page of entries from a store (for [`Store::read_all`] and its kin).
type ReadPage<P> =
    for<'a> fn(&'a Store, &'a str, &'a ReadOptions) -> BoxFuture<'a, Result<Vec<Entry<P>>>>;

impl Store {
    /// A store in front of `backend` (for backend authors; users open stores through a backend
    /// crate or `ledger::open`).
    pub fn new(backend: impl Backend) -> Self {
        Self::from_backend(Arc::new(backend))
    }

    /// A store in front of a shared backend.
    pub fn from_backend(backend: Arc<dyn Backend>) -> Self {
        Store {
            shared: Arc::new(Shared {
                backend,
                closed: AtomicBool::new(false),
            }),
        }
    }

    fn backend(&self) -> &dyn Backend {
        self.shared.backend.as_ref()
    }

    /// [`Error::StoreClosed`] once [`Store::close`] was called.
    pub fn check_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(Error::StoreClosed)
        } else {
            Ok(())
        }
    }

    /// Names the store in a backend error.
    fn named<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| e.in_store(self.name()))
    }

    /// The store's name: its table or collection.
    pub fn name(&self) -> &str {
        self.backend().name()
    }

    /// The backend's name (`"sqlite"`, `"postgres"`, `"memory"`, …).
    pub fn backend_kind(&self) -> &'static str {
        self.backend().kind()
    }

    /// What this store offers.
    pub fn capabilities(&self) -> Capabilities {
        self.backend().capabilities()
    }

    /// Appends `entries` to `stream` if its version satisfies `expected`.
    ///
    /// Returns one outcome per input, in input order, and the stream's version afterwards.
    /// Inputs whose dedup key is already in the stream, or earlier in the batch, are reported as
    /// duplicates and not written. A batch made only of duplicates succeeds whatever `expected`
    /// says, so an idempotent retry never fails. An empty batch writes nothing.
    pub async fn append(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        let backend = self.backend();
        let run = async |entries| backend.append(stream, entries, expected).await;
        self.append_with(stream, entries, expected, run).await
    }

    /// For backend crates: an append made by `run` (a backend's own path, such as an append
    /// inside a caller's transaction) after every check [`Store::append`] makes; `run` receives
    /// a non-empty, valid batch.
    pub async fn append_with(
        &self,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
        run: impl AsyncFnOnce(Vec<AppendInput>) -> Result<AppendResult>,
    ) -> Result<AppendResult> {
        self.check_open()?;
        validate_append(stream, &entries)?;
        let caps = self.capabilities();
        if !caps.expected_version && expected != ExpectedVersion::Any {
            return Err(Error::NotSupported(format!(
                "this store cannot enforce {expected}; append with ExpectedVersion::Any"
            )));
        }
        if !caps.dedup && entries.iter().any(|e| e.dedup_key.is_some()) {
            return Err(Error::NotSupported(
                "this store does not enforce dedup keys".into(),
            ));
        }
        if entries.is_empty() {
            let version = self.stat(stream).await?.last_version;
            return Ok(AppendResult {
                outcomes: Vec::new(),
                version,
            });
        }
        let result = run(entries).await;
        self.named(result)
    }

    /// Appends one entry; see [`Store::append`].
    pub async fn append_one(
        &self,
        stream: &str,
        entry: AppendInput,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        self.append(stream, vec![entry], expected).await
    }

    /// Reads one page of `stream`, ordered by id (within a stream, the order of versions). A
    /// stream that does not exist reads as empty.
    pub async fn read(&self, stream: &str, options: &ReadOptions) -> Result<Vec<Entry>> {
        self.check_read(stream, options)?;
        let result = self.backend().read(stream, options).await;
        self.named(result)
    }

    /// [`Store::read`] with each payload as its JSON text, unparsed ([`RawPayload`]): for
    /// decoding straight into a type without building a [`serde_json::Value`] first (what
    /// [`crate::Stream`] does), or for passing payloads on (an HTTP response, say) as they are.
    pub async fn read_json(
        &self,
        stream: &str,
        options: &ReadOptions,
    ) -> Result<Vec<Entry<RawPayload>>> {
        self.check_read(stream, options)?;
        let result = self.backend().read_json(stream, options).await;
        self.named(result)
    }

    /// What [`Store::read`] and [`Store::read_json`] check before the backend sees the call.
    fn check_read(&self, stream: &str, options: &ReadOptions) -> Result<()> {
        self.check_open()?;
        validate_stream_id(stream)?;
        options.validate()?;
        self.check_annotation_filter(options)
    }

    fn check_annotation_filter(&self, options: &ReadOptions) -> Result<()> {
        if !options.filter.annotations.is_empty() && !self.capabilities().annotations {
            return Err(Error::NotSupported(
                "this store has no annotations to filter on".into(),
            ));
        }
        Ok(())
    }

    /// Every entry of `stream` that `options` selects, as a stream that reads page after page
    /// (of `options.limit` entries) as it is consumed: rebuilding state from a whole stream
    /// without holding it in memory. The first error ends it.
    pub fn read_all(
        &self,
        stream: &str,
        options: ReadOptions,
    ) -> BoxStream<'static, Result<Entry>> {
        self.pages(stream, options, |store, stream, options| {
            Box::pin(store.read(stream, options))
        })
    }

    /// [`Store::read_all`] with each payload as its JSON text ([`Store::read_json`]).
    pub fn read_all_json(
        &self,
        stream: &str,
        options: ReadOptions,
    ) -> BoxStream<'static, Result<Entry<RawPayload>>> {
        self.pages(stream, options, |store, stream, options| {
            Box::pin(store.read_json(stream, options))
        })
    }

    /// The entries of page after page that `read` returns, each page after the last id of the
    /// one before, until a short page or the first error.
    fn pages<P: Send + 'static>(
        &self,
        stream: &str,
        options: ReadOptions,
        read: ReadPage<P>,
    ) -> BoxStream<'static, Result<Entry<P>>> {
        struct Pages<P> {
            store: Store,
            stream: String,
            options: ReadOptions,
            read: ReadPage<P>,
            done: bool,
        }
        let pages = Pages {
            store: self.clone(),
            stream: stream.to_owned(),
            options,
            read,
            done: false,
        };
        stream::unfold(pages, |mut pages| async move {
            if pages.done {
                return None;
            }
            match (pages.read)(&pages.store, &pages.stream, &pages.options).await {
                Err(e) => {
                    pages.done = true;
                    Some((vec![Err(e)], pages))
                }
                Ok(page) => {
                    pages.done = page.len() < pages.options.limit as usize;
                    if let Some(last) = page.last() {
                        pages.options.after = Some(last.id);
                    }
                    Some((page.into_iter().map(Ok).collect(), pages))
                }
            }
        })
        .flat_map(stream::iter)
        .boxed()
    }

    /// Number of entries the stream holds.
    pub async fn count(&self, stream: &str) -> Result<u64> {
        self.check_open()?;
        validate_stream_id(stream)?;
        let result = self.backend().count(stream).await;
        self.named(result)
    }

    /// Count, first and last id, and last version of the stream.
    pub async fn stat(&self, stream: &str) -> Result<StreamStat> {
        self.check_open()?;
        validate_stream_id(stream)?;
        let result = self.backend().stat(stream).await;
        self.named(result)
    }

    /// Stream ids holding at least one entry, ascending (bytewise). A stream trimmed to empty is
    /// not listed, though it still exists for [`ExpectedVersion`] checks: its version survives
    /// the trim, so versions are never reused.
    pub async fn list_streams(&self, options: &ListOptions) -> Result<Vec<String>> {
        self.check_open()?;
        options.validate()?;
        if let Some(after) = &options.after {
            validate_stream_id(after)?;
        }
        let result = self.backend().list_streams(options).await;
        self.named(result)
    }

    /// Replaces the tags of one entry. Setting the tags it already has changes nothing: no
    /// `updated_at`, no change-feed record. An unknown entry is [`Error::EntryNotFound`].
    pub async fn set_tags(&self, stream: &str, id: EntryId, tags: BTreeSet<String>) -> Result<()> {
        self.check_open()?;
        self.require(self.capabilities().tags, "tags")?;
        validate_stream_id(stream)?;
        validate_tags(&tags)?;
        let result = self.backend().set_tags(stream, id, tags).await;
        self.named(result)
    }

    /// Merges annotation changes into one entry: `Some` sets a key, `None` deletes it.
    /// Atomic under concurrent callers: no change is lost. Changes that leave the annotations as
    /// they were (none at all, a key set to its value, a missing key deleted) change nothing: no
    /// `updated_at`, no change-feed record. An unknown entry is [`Error::EntryNotFound`] either
    /// way.
    pub async fn set_annotations(
        &self,
        stream: &str,
        id: EntryId,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.check_open()?;
        self.require(self.capabilities().annotations, "annotations")?;
        validate_stream_id(stream)?;
        validate_annotations(&changes)?;
        let result = self.backend().set_annotations(stream, id, changes).await;
        self.named(result)
    }

    /// Deletes the stream's entries with id `<= up_to` and returns how many were deleted.
    /// The stream's version is kept, so later appends continue after it.
    pub async fn trim(&self, stream: &str, up_to: EntryId) -> Result<u64> {
        self.check_open()?;
        self.require(self.capabilities().trim, "trim")?;
        validate_stream_id(stream)?;
        let result = self.backend().trim(stream, up_to).await;
        self.named(result)
    }

    /// Moves every entry of `from` (ids and versions unchanged) and its version to `to`.
    /// `from` must exist and `to` must not ([`Error::StreamNotFound`],
    /// [`Error::StreamExists`]); a stream trimmed to empty still exists.
    pub async fn rename_stream(&self, from: &str, to: &str) -> Result<()> {
        self.check_open()?;
        self.require(self.capabilities().rename, "rename_stream")?;
        validate_stream_id(from)?;
        validate_stream_id(to)?;
        let result = self.backend().rename_stream(from, to).await;
        self.named(result)
    }

    /// Closes the store: every later call, through any clone, fails with
    /// [`Error::StoreClosed`]; the backend releases its connections.
    pub async fn close(&self) -> Result<()> {
        self.shared.closed.store(true, Ordering::Release);
        let result = self.backend().close().await;
        self.named(result)
    }

    /// Wakes subscriptions: the value changes after commits this store makes or learns of.
    /// `None` means subscribers rely on polling alone.
    pub fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.backend().commits()
    }

    fn require(&self, offered: bool, what: &str) -> Result<()> {
        if offered {
            Ok(())
        } else {
            Err(Error::NotSupported(format!(
                "{} store {:?} does not offer {what}",
                self.backend_kind(),
                self.name()
            )))
        }
    }

    /// Entries of `stream` (with `None`, of every stream of the store) whose payload matches
    /// `query`; cursor, direction, limit and every filter of `options` apply as in
    /// [`Store::read`].
    ///
    /// A plain text searches in [`crate::SearchMode::Substring`]: entries with a string value in
    /// their payload, at any depth, that contains the text ignoring ASCII case
    /// ([`crate::payload_contains`], kept alike by every backend). Object keys, numbers,
    /// booleans and JSON punctuation are not searched. [`crate::SearchQuery::full_text`] uses
    /// the backend's text search, where [`Capabilities::search`] offers it. The text must not be
    /// empty or contain NUL ([`Error::InvalidArgument`]).
    pub async fn search(
        &self,
        stream: Option<&str>,
        query: impl Into<SearchQuery>,
        options: &ReadOptions,
    ) -> Result<Vec<Entry>> {
        let query = query.into();
        self.check_open()?;
        if let Some(s) = stream {
            validate_stream_id(s)?;
        }
        query.validate()?;
        options.validate()?;
        self.check_annotation_filter(options)?;
        let search = self
            .backend()
            .as_search()
            .filter(|_| self.capabilities().search.offers(query.mode));
        let Some(search) = search else {
            return self
                .require(false, &format!("{:?} search", query.mode))
                .map(|()| Vec::new());
        };
        let result = search.search(stream, &query, options).await;
        self.named(result)
    }

    /// Up to `limit` change-feed records with position greater than `after` (from the start
    /// with `None`), ascending. Never returns a record while an earlier position may still
    /// commit. [`Error::NotSupported`] without a change feed.
    pub async fn read_feed(&self, after: Option<u64>, limit: u32) -> Result<Vec<FeedRecord>> {
        self.check_open()?;
        ListOptions::new().limit(limit).validate()?;
        let Some(feed) = self.backend().as_change_feed() else {
            return self.require(false, "a change feed").map(|()| Vec::new());
        };
        let result = feed.read_feed(after, limit).await;
        self.named(result)
    }

    /// The highest position [`Store::read_feed`] can return now (`None` while the feed is
    /// empty): how far a reader at position `p` is behind is at most `head - p` records
    /// (positions may skip numbers, never records). [`Error::NotSupported`] without a change
    /// feed.
    pub async fn feed_head(&self) -> Result<Option<u64>> {
        self.check_open()?;
        let Some(feed) = self.backend().as_change_feed() else {
            return self.require(false, "a change feed").map(|()| None);
        };
        let result = feed.feed_head().await;
        self.named(result)
    }

    /// The position saved under cursor `name`, if any. Names are 1 to 256 bytes without NUL.
    pub async fn get_cursor(&self, name: &str) -> Result<Option<u64>> {
        self.check_open()?;
        validate_cursor_name(name)?;
        let Some(cursors) = self.backend().as_cursor_store() else {
            return self.require(false, "cursors").map(|()| None);
        };
        let result = cursors.get_cursor(name).await;
        self.named(result)
    }

    /// Saves `position` under cursor `name` unless a greater one is saved: cursors never move
    /// back.
    pub async fn set_cursor(&self, name: &str, position: u64) -> Result<()> {
        self.check_open()?;
        validate_cursor_name(name)?;
        let Some(cursors) = self.backend().as_cursor_store() else {
            return self.require(false, "cursors");
        };
        let result = cursors.set_cursor(name, position).await;
        self.named(result)
    }

    /// `Ok` if the store's database answers.
    pub async fn health(&self) -> Result<()> {
        self.check_open()?;
        let Some(health) = self.backend().as_health() else {
            return self.require(false, "health checks");
        };
        let result = health.health().await;
        self.named(result)
    }

    /// Applies change-feed records of another store (the bridge's job), keeping their ids,
    /// versions and timestamps, so this store converges to the source.
    ///
    /// `records` must have strictly ascending positions. Records at or below the position saved
    /// under cursor `cursor` are skipped, and so are those at or below the cursor of their
    /// stream's [`Lane`] (saved by [`Store::apply_replicated_lane`]), so replaying any prefix of
    /// a feed changes nothing and never fails; the cursor is then saved at the last record's
    /// position, in the same transaction where the store has transactions
    /// ([`crate::Replication`]). Returns how many records were above the saved cursors, and so
    /// applied. A store that replicates should take no appends of its own: an id of the source
    /// that this store already holds for another entry is an error, never an overwrite.
    ///
    /// Replication cursor names are at most 248 bytes, leaving room for the lanes' cursors
    /// ([`Error::InvalidName`]).
    pub async fn apply_replicated(&self, cursor: &str, records: &[FeedRecord]) -> Result<u64> {
        self.replicate(cursor, None, records).await
    }

    /// [`Store::apply_replicated`] for records of one [`Lane`] only, which a bridge applies
    /// beside other lanes' at once: records at or below the lane's cursor or cursor `cursor`
    /// are skipped, and the lane's cursor is saved at the last record's position (`cursor`
    /// itself is left to the bridge, once every lane has applied its part of a page). Renames
    /// move a stream between lanes, so they are refused here ([`Error::InvalidArgument`]):
    /// apply them with [`Store::apply_replicated`], after every record before them.
    pub async fn apply_replicated_lane(
        &self,
        cursor: &str,
        lane: Lane,
        records: &[FeedRecord],
    ) -> Result<u64> {
        if let Some(r) = records.iter().find(|r| Lane::of(&r.stream) != lane) {
            return Err(Error::InvalidArgument(format!(
                "record {} is of stream {:?}, in {}, not {lane}",
                r.position,
                r.stream,
                Lane::of(&r.stream)
            )));
        }
        if let Some(r) = records
            .iter()
            .find(|r| matches!(r.mutation, Mutation::Rename { .. }))
        {
            return Err(Error::InvalidArgument(format!(
                "record {} renames stream {:?}: a rename moves a stream between lanes, so it is \
                 applied with every lane (Store::apply_replicated)",
                r.position, r.stream
            )));
        }
        self.replicate(cursor, Some(lane), records).await
    }

    async fn replicate(
        &self,
        cursor: &str,
        lane: Option<Lane>,
        records: &[FeedRecord],
    ) -> Result<u64> {
        self.check_open()?;
        validate_replication_cursor(cursor)?;
        if let Some(pair) = records.windows(2).find(|p| p[0].position >= p[1].position) {
            return Err(Error::InvalidArgument(format!(
                "replicated records must have ascending positions, but {} is followed by {}",
                pair[0].position, pair[1].position
            )));
        }
        let Some(replica) = self.backend().as_replica() else {
            return self.require(false, "replication").map(|()| 0);
        };
        if records.is_empty() {
            return Ok(0);
        }
        let result = replica.apply(cursor, lane, records).await;
        self.named(result)
    }

    /// Entries of `stream` with version greater than `after_version` (0: from the start), then
    /// live entries as they are appended, with nothing lost or repeated; see
    /// [`crate::subscribe_stream`].
    pub fn subscribe(
        &self,
        stream: &str,
        after_version: u64,
        options: SubscribeOptions,
    ) -> BoxStream<'static, Result<Entry>> {
        subscribe_stream(self.clone(), stream.to_owned(), after_version, options)
    }

    /// Change-feed records after position `after`, then live ones; see
    /// [`crate::subscribe_feed`].
    pub fn subscribe_feed(
        &self,
        after: Option<u64>,
        options: SubscribeOptions,
    ) -> BoxStream<'static, Result<FeedRecord>> {
        subscribe_feed(self.clone(), after, options)
    }
}
