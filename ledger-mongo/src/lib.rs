//! MongoDB backend for `ledger`: entries as BSON documents, expected versions and dedup decided
//! by unique indexes, a commit-ordered change feed, and subscriptions woken by change streams.
//!
//! [`MongoStore`] is a [`ledger_core::Store`] (it dereferences to one). On a replica set (or a
//! sharded cluster) it keeps the whole contract with every capability: atomic batches in
//! multi-document transactions, tags, annotations, trim, rename, substring search (and full-text
//! search once [`MongoStore::ensure_search_index`] built its index, where the server has text
//! indexes), a change feed, durable cursors, health checks, replication, and appends inside the
//! application's own transaction ([`MongoStore::append_in`]). On a standalone server, which
//! has no transactions, it promises less and says so in [`ledger_core::Capabilities`] (see
//! below).
//!
//! ```no_run
//! use ledger_core::{AppendInput, ExpectedVersion, ReadOptions};
//! use ledger_mongo::MongoStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ledger_core::Result<()> {
//! let store = MongoStore::builder()
//!     .collection("orders")
//!     .change_feed(true)
//!     .connect("mongodb://127.0.0.1:27017/shop?replicaSet=rs0")
//!     .await?;
//! let input = AppendInput::new(serde_json::json!({"sku": "A-1"})).dedup_key("request-1");
//! store.append("customer-7", vec![input], ExpectedVersion::NoStream).await?;
//! let entries = store.read("customer-7", &ReadOptions::new()).await?;
//! assert_eq!(entries[0].version, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Decisions
//!
//! - **Storage.** A store is a collection `N` of entries (in the URL's database, `ledger` if it
//!   names none) with `N_streams` (each stream's version), `N_feed`, `N_cursors` and `N_meta`
//!   (counters and the schema version) beside it. An entry is `{_id, stream, version, payload,
//!   order_key, dedup_key, schema_version, metadata, tags, annotations, created_at,
//!   updated_at}` plus `search` (its payload's string values, lowercased, for substring
//!   search), so MongoDB's own tools can query and index payloads.
//! - **Ids** are 64-bit integers, like every backend's ([`ledger_core::EntryId`]), from a
//!   counter document in `N_meta`, taken after the append read its stream's version: within
//!   a stream, ascending ids are ascending versions. The counter is updated outside the
//!   append's transaction, so appends to different streams never conflict on it; ids of an
//!   append that lost a race are skipped, never reused.
//! - **Expected versions and dedup** are decided by the database: unique indexes on `(stream,
//!   version)` and `(stream, dedup_key)`, and (with transactions) the stream's document,
//!   updated on the condition that its version is still the one read. Of two appenders
//!   expecting one version, from any process, exactly one wins; the other's transaction is
//!   aborted and decided again, and then reports the conflict (or, for an idempotent retry,
//!   the duplicates).
//! - **Payloads** convert between JSON and BSON exactly, for everything JSON holds: integers
//!   are `Int64`, a `u64` above `i64::MAX` is `{"%u64": "<digits>"}`, floats are `Double` (and
//!   read back as floats, `-0.0` included), strings may hold U+0000. Object keys MongoDB
//!   treats specially are percent-escaped: `%` → `%25`, `.` → `%2E`, U+0000 → `%00`, a
//!   leading `$` → `%24`, the empty key → `%`; all other keys are stored as they are. Metadata
//!   and annotation keys are escaped the same way. A payload nested more than 90 levels deep
//!   is stored as its JSON text (`payload_json`), since MongoDB refuses documents nested more
//!   than 100 levels.
//! - **Timestamps** are BSON dates: milliseconds
//!   ([`ledger_core::TimestampPrecision::Milliseconds`]).
//! - **Change feed** (off by default, [`MongoStoreBuilder::change_feed`]; needs
//!   transactions): every mutation writes its record in its own transaction, at a position
//!   taken from a counter document inside that transaction. Two transactions taking a position
//!   conflict on the counter until the first commits, so positions are handed out in commit
//!   order ([`ledger_core::FeedOrder::CommitOrdered`]): a reader never finds a new record below
//!   one it has read. MongoDB's own commit order (cluster time, change streams) is not used
//!   for positions: it lives in the oplog, which is capped, so a reader starting from position
//!   0 a month later would find it gone. The cost is that feed writers commit one at a time
//!   (they retry the conflict with a short randomized pause).
//! - **Subscriptions** wake from a change stream on the feed (or, without it, on the entries),
//!   which sees commits of every process; where the deployment has no change streams they
//!   poll. A broken change stream is reopened, and subscriptions read from their own
//!   positions, so a dropped connection loses nothing.
//! - **Search**: `Substring` matches string values of the payload at any depth, ignoring ASCII
//!   case, exactly as every backend does ([`ledger_core::payload_contains`]): the server narrows
//!   the entries down with a regular expression over the `search` strings (the longest run of
//!   letters, digits and spaces in the text, which every MongoDB-wire server matches alike),
//!   and each candidate is checked exactly. `FullText` is `$text` over the `search` strings,
//!   after [`MongoStore::ensure_search_index`] built the text index.
//! - **Tags and annotations** change in one update of the entry's document. An annotation
//!   merge reads the entry and writes the merged map inside a transaction (without
//!   transactions: under the stream's write lease), so concurrent merges lose nothing.
//! - **Names**: collection names follow the core rule for table names (it keeps them valid
//!   collection names too); the database name must be a valid MongoDB database name. Both are
//!   checked on open and refused as [`ledger_core::Error::InvalidName`].
//! - **Bad input** is refused before anything is written: an entry over MongoDB's 16 MiB
//!   document limit is [`ledger_core::Error::InvalidArgument`] naming its index in the batch,
//!   and anything else the server refuses comes back as a typed error.
//!
//! ## Without transactions (a standalone server)
//!
//! [`MongoStore::capabilities`](ledger_core::Store::capabilities) then reports
//! `atomic_append`, `rename`, `transactions`, `replication` and the change feed as not offered
//! (asking for the feed fails on open with [`ledger_core::Error::NotSupported`]). Appends to
//! one stream take turns under a write lease in the stream's document, so expected versions
//! and dedup keys are enforced as with transactions and a batch is never interleaved with
//! another writer's; but a batch is written document by document, so an append that dies
//! midway (a crash, a lost connection) can leave the first part of its batch written. A writer
//! that dies holding the lease blocks that stream's appends until the lease expires (30 s).
//! Tags, annotations and trims keep their guarantees (a trim that dies midway has deleted part
//! of its range, and finishes when run again).
//!
//! # Testing against MongoDB
//!
//! The tests run against the servers `cargo xtask services up` starts (`LEDGER_MONGODB_URL`: a
//! single-node replica set; `LEDGER_MONGODB_STANDALONE_URL`: a standalone server). Point
//! either at a real MongoDB to run the same suite there, e.g.
//! `LEDGER_MONGODB_URL=mongodb://127.0.0.1:27017/?replicaSet=rs0 cargo test -p ledger-mongo`.
//!
//! # Features
//!
//! This crate has no optional features.
#![deny(missing_docs)]

mod append;
mod backend;
mod doc;
mod encode;
mod error;
mod lease;
mod replica;
mod txn;
mod wake;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, ClientSession, IndexModel};

use ledger_core::backend::CommitSignal;
use ledger_core::{
    AppendInput, AppendResult, Error, ExpectedVersion, Result, Store, TimestampPrecision,
};

use crate::backend::MongoBackend;
use crate::doc::{Names, field};
use crate::error::backend as backend_err;

/// The collection a store uses unless told otherwise.
pub const DEFAULT_COLLECTION: &str = "ledger_entries";
/// The database a store uses when its URL names none.
pub const DEFAULT_DATABASE: &str = "ledger";
/// The schema version this release writes (kept in `N_meta`).
pub const SCHEMA_VERSION: i64 = 1;

/// The name of the text index that serves full-text search.
const TEXT_INDEX: &str = "search_text";

/// Options for opening a [`MongoStore`].
#[derive(Debug, Clone)]
pub struct MongoStoreBuilder {
    collection: String,
    database: Option<String>,
    change_feed: bool,
}

impl MongoStoreBuilder {
    /// The collection (store name) to use; validated on open. Default [`DEFAULT_COLLECTION`].
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }

    /// The database to use, instead of the one the URL names (or [`DEFAULT_DATABASE`]).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// Records every mutation in the change feed (default off). Needs a deployment with
    /// transactions: on a standalone server, opening fails with
    /// [`ledger_core::Error::NotSupported`].
    pub fn change_feed(mut self, enabled: bool) -> Self {
        self.change_feed = enabled;
        self
    }

    /// Connects to `url` (`mongodb://host:port/database?options`).
    pub async fn connect(self, url: &str) -> Result<MongoStore> {
        ledger_core::validate_table_name(&self.collection)?;
        let options = ClientOptions::parse(url).await.map_err(|e| {
            Error::InvalidArgument(format!("{url:?} is not a MongoDB connection string: {e}"))
        })?;
        let database = self
            .database
            .clone()
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        validate_database_name(&database)?;
        let client = Client::with_options(options).map_err(backend_err)?;
        self.open(client, &database).await
    }

    /// Opens the store on an existing client (to append inside the application's own
    /// transactions, or to share connections among stores) in database `database`.
    pub async fn open(self, client: Client, database: &str) -> Result<MongoStore> {
        ledger_core::validate_table_name(&self.collection)?;
        validate_database_name(database)?;
        let db = client.database(database);
        let transactions = has_transactions(&client).await?;
        if self.change_feed && !transactions {
            return Err(Error::NotSupported(
                "the change feed needs multi-document transactions, which this MongoDB \
                 deployment (a standalone server) does not have: use a replica set"
                    .into(),
            ));
        }
        let names = Names::new(&self.collection);
        let collection = |name: &str| db.collection::<Document>(name);
        let backend = MongoBackend {
            name: self.collection.clone(),
            entries: collection(&names.entries),
            streams: collection(&names.streams),
            feed: collection(&names.feed),
            cursors: collection(&names.cursors),
            meta: collection(&names.meta),
            client,
            transactions,
            feed_on: self.change_feed,
            full_text: AtomicBool::new(false),
            precision: TimestampPrecision::Milliseconds,
            signal: Arc::new(CommitSignal::new()),
            watcher: None,
        };
        let mut backend = backend;
        let full_text = migrate(&backend)
            .await
            .map_err(|e| e.in_store(&self.collection))?;
        backend.full_text.store(full_text, Ordering::Relaxed);
        backend.precision = date_precision(&backend.meta).await?;
        if transactions {
            // Replica sets have change streams.
            let watched = if backend.feed_on {
                backend.feed.clone()
            } else {
                backend.entries.clone()
            };
            backend.watcher = Some(wake::spawn(watched, &backend.signal));
        }
        let backend = Arc::new(backend);
        Ok(MongoStore {
            store: Store::from_backend(backend.clone()),
            backend,
        })
    }
}

/// Whether the deployment runs multi-document transactions: a replica set member or a
/// `mongos`, as its `hello` answer says.
async fn has_transactions(client: &Client) -> Result<bool> {
    let hello = client
        .database("admin")
        .run_command(doc! {"hello": 1})
        .await
        .map_err(backend_err)?;
    let replica_set = matches!(hello.get("setName"), Some(Bson::String(_)));
    let router = matches!(hello.get("msg"), Some(Bson::String(m)) if m == "isdbgrid");
    Ok(replica_set || router)
}

/// How precisely the server compares dates, found by asking it: a date 1 ms after a stored
/// one must compare greater. (nx-27017 compares whole seconds.)
async fn date_precision(meta: &mongodb::Collection<Document>) -> Result<TimestampPrecision> {
    let stored = mongodb::bson::DateTime::from_millis(1_000_000_000_000);
    let later = mongodb::bson::DateTime::from_millis(1_000_000_000_001);
    meta.replace_one(doc! {"_id": "date-probe"}, doc! {"at": stored})
        .upsert(true)
        .await
        .map_err(backend_err)?;
    let ordered = meta
        .find_one(doc! {"_id": "date-probe", "at": {"$lt": later}})
        .await
        .map_err(backend_err)?;
    Ok(if ordered.is_some() {
        TimestampPrecision::Milliseconds
    } else {
        TimestampPrecision::Seconds
    })
}

/// Creates the indexes and records the schema version; refuses a store a newer release
/// migrated. Returns whether the text index exists.
async fn migrate(backend: &MongoBackend) -> Result<bool> {
    let meta = &backend.meta;
    let schema = meta
        .find_one(doc! {"_id": "schema"})
        .await
        .map_err(backend_err)?;
    if let Some(schema) = schema {
        let found = doc::int(&schema, "version")?;
        if found > SCHEMA_VERSION {
            return Err(Error::IncompatibleSchema {
                store: backend.name.clone(),
                found,
                known: SCHEMA_VERSION,
            });
        }
    }
    let unique = |keys: Document, partial: Option<Document>| {
        let options = IndexOptions::builder()
            .unique(true)
            .partial_filter_expression(partial)
            .build();
        IndexModel::builder().keys(keys).options(options).build()
    };
    let indexes = vec![
        unique(doc! {field::STREAM: 1, field::VERSION: 1}, None),
        unique(
            doc! {field::STREAM: 1, field::DEDUP_KEY: 1},
            Some(doc! {field::DEDUP_KEY: {"$exists": true}}),
        ),
    ];
    backend
        .entries
        .create_indexes(indexes)
        .await
        .map_err(|e| error::refused(e, || format!("the indexes of {}", backend.name)))?;
    // The counters exist before any writer takes from them: concurrent upserts of a missing
    // document are not answered alike by every server.
    for counter in [backend::IDS, backend::FEED] {
        meta.update_one(doc! {"_id": counter}, doc! {"$inc": {"n": 0i64}})
            .upsert(true)
            .await
            .map_err(backend_err)?;
    }
    meta.update_one(
        doc! {"_id": "schema"},
        doc! {"$max": {"version": SCHEMA_VERSION}},
    )
    .upsert(true)
    .await
    .map_err(backend_err)?;
    let indexes = backend
        .entries
        .list_index_names()
        .await
        .map_err(backend_err)?;
    Ok(indexes.iter().any(|n| n == TEXT_INDEX))
}

/// MongoDB's rules for database names: 1 to 63 bytes, none of `/\. "$*<>:|?` or NUL.
fn validate_database_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            kind: "database",
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("must not be empty");
    }
    if name.len() > 63 {
        return invalid("must be at most 63 bytes long");
    }
    if name.contains([
        '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
    ]) {
        return invalid("must not contain any of /\\. \"$*<>:|? or NUL");
    }
    Ok(())
}

/// A store on MongoDB. Clones share the client; it dereferences to the [`Store`] it is.
#[derive(Clone)]
pub struct MongoStore {
    store: Store,
    backend: Arc<MongoBackend>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("collection", &self.backend.name)
            .field("transactions", &self.backend.transactions)
            .field("change_feed", &self.backend.feed_on)
            .finish()
    }
}

impl MongoStore {
    /// Options, starting from the defaults.
    pub fn builder() -> MongoStoreBuilder {
        MongoStoreBuilder {
            collection: DEFAULT_COLLECTION.to_owned(),
            database: None,
            change_feed: false,
        }
    }

    /// Connects to `url` with the default collection and options.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    /// The store's collection name.
    pub fn collection(&self) -> &str {
        &self.backend.name
    }

    /// The collection of entries, for MongoDB's own queries and indexes over payloads (read
    /// it; writes that bypass the store break its guarantees).
    pub fn entries(&self) -> mongodb::Collection<Document> {
        self.backend.entries.clone()
    }

    /// The client (to start sessions for [`MongoStore::append_in`]).
    pub fn client(&self) -> &Client {
        &self.backend.client
    }

    /// Appends inside the caller's transaction (`session` with a transaction started), so that
    /// an application's own writes and its ledger entries commit or abort together. Same
    /// semantics and checks as [`Store::append`], without its retries: an append that loses a
    /// race fails with a conflict ([`ledger_core::Error::is_conflict`]), and the caller runs
    /// its transaction again. Needs transactions (`Capabilities::transactions`).
    pub async fn append_in(
        &self,
        session: &mut ClientSession,
        stream: &str,
        entries: Vec<AppendInput>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        if !self.backend.transactions {
            return Err(Error::NotSupported(
                "append_in needs multi-document transactions, which this MongoDB deployment \
                 (a standalone server) does not have"
                    .into(),
            ));
        }
        let backend = &self.backend;
        let run = async |entries: Vec<AppendInput>| {
            append::append_in(backend, session, stream, &entries, expected).await
        };
        let result = self
            .store
            .append_with(stream, entries, expected, run)
            .await?;
        // Committed by the caller: the change stream wakes subscribers then, and this wake-up
        // makes in-process ones look as soon as they can.
        backend.signal.committed();
        Ok(result)
    }

    /// Builds the text index that serves [`ledger_core::SearchMode::FullText`] (idempotent).
    /// A server without text indexes refuses with [`ledger_core::Error::NotSupported`].
    pub async fn ensure_search_index(&self) -> Result<()> {
        self.store.check_open()?;
        let index = IndexModel::builder()
            .keys(doc! {field::SEARCH: "text"})
            .options(IndexOptions::builder().name(TEXT_INDEX.to_owned()).build())
            .build();
        match self.backend.entries.create_index(index).await {
            Ok(_) => {
                self.backend.full_text.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if error::code(&e) == Some(67) => Err(Error::NotSupported(
                "this MongoDB server cannot build text indexes, so it offers no full-text search"
                    .into(),
            )),
            Err(e) => Err(backend_err(e).in_store(&self.backend.name)),
        }
    }
}

impl Drop for MongoBackend {
    fn drop(&mut self) {
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
    }
}

impl std::ops::Deref for MongoStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl AsRef<Store> for MongoStore {
    fn as_ref(&self) -> &Store {
        &self.store
    }
}

impl From<MongoStore> for Store {
    fn from(mongo: MongoStore) -> Store {
        mongo.store
    }
}
