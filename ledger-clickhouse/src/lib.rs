//! ClickHouse backend for `ledger`: an analytics store and a bridge sink that says what it
//! can promise. Entries go in with one RowBinary insert per batch (the official `clickhouse`
//! crate, over HTTP), replays of the same entry are read once, and what ClickHouse cannot
//! enforce (it has no transactions and no unique constraints) is enforced by the store handle
//! and reported as such in [`ledger_core::Capabilities::conditions`].
//!
//! [`ClickHouseStore`] is a [`ledger_core::Store`] (it dereferences to one).
//!
//! ```no_run
//! use ledger_core::{AppendInput, ExpectedVersion, ReadOptions};
//! use ledger_clickhouse::ClickHouseStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ledger_core::Result<()> {
//! let store = ClickHouseStore::builder()
//!     .table("requests")
//!     .connect("http://127.0.0.1:8123/?database=logs")
//!     .await?;
//! let input = AppendInput::new(serde_json::json!({"model": "gpt-4o"})).dedup_key("req-1");
//! store.append("tenant-7", vec![input], ExpectedVersion::Any).await?;
//! let entries = store.read("tenant-7", &ReadOptions::new()).await?;
//! assert_eq!(entries[0].version, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Decisions
//!
//! - **Servers.** Every ClickHouse from 18.16 on. At open the store asks `SELECT version()`:
//!   from 22.1 the client checks each row against the table's columns
//!   (`RowBinaryWithNamesAndTypes`) and a trim waits with `mutations_sync`; older servers get
//!   plain `RowBinary` and a trim polls `system.mutations`. One schema serves both: the payload
//!   as JSON text, maps as parallel key and value arrays, times as `Int64` microseconds since
//!   the epoch ([`ledger_core::TimestampPrecision::Microseconds`]).
//! - **Storage.** A store is a table `T` (`ReplacingMergeTree(revision)` ordered by `(stream,
//!   id)`) with `T_streams` (versions that outlive trimmed entries), `T_cursors` and
//!   `T_schema` (the migrations applied, so a later release can upgrade the tables) beside it.
//! - **Replays are idempotent.** Writing an entry again (same stream and id) adds a row that
//!   reads do not see twice: they read `FINAL`, which keeps one row per `(stream, id)`, also
//!   before background merges run. A change of tags or annotations writes the entry's next
//!   revision, which `FINAL` prefers, so a replayed append never undoes it. This makes the
//!   store a safe bridge sink ([`ledger_core::Replication::Idempotent`]: the cursor is saved
//!   after the records it covers, and replaying them changes nothing).
//! - **Write conditions are the handle's.** ClickHouse cannot refuse a second row for one
//!   version or dedup key, so the store handle decides: appends to one stream take turns under
//!   the stream's lock in the handle, which reads the stream's version once and then keeps it.
//!   Expected versions, dedup keys, gapless versions and annotation merges hold among all the
//!   tasks sharing the handle (and its clones), which is what
//!   [`ledger_core::Conditions::Handle`] says. Writers through other handles (other processes)
//!   must write other streams: if two handles write one stream, versions and dedup keys may
//!   repeat, and two batches whose ids overlap (taken in the same microsecond with close random
//!   bits) read as one.
//! - **Ids** are 64-bit integers from the clock: microseconds since 2025 in the high bits and
//!   12 random low bits, above every id the handle took and above the highest id among the
//!   stream's entries, so within a stream ascending ids are ascending versions. Handles writing
//!   different streams may take one id in two streams (an entry is keyed by stream and id, so
//!   nothing is overwritten), which makes a search across all streams, ordered by id, page
//!   past both at once.
//! - **Atomic batches.** An append is one insert, sent as one block (`max_insert_block_size`
//!   raised to the batch where it is larger), which ClickHouse writes as one part: readers see
//!   all of it or none.
//! - **Cancellation.** An append whose future is dropped, or whose connection fails, after
//!   the server has its rows may still commit them; the handle forgets the stream's version
//!   and reads it again on the next append, which can miss rows the server is still writing
//!   and give their version again. Retry an append that failed this way with a dedup key.
//! - **Trim** deletes with `ALTER TABLE … DELETE` and returns once the mutation is done, so a
//!   read after a trim never returns a trimmed entry. The stream's version is kept first.
//! - **Rename** is not offered ([`ledger_core::Error::NotSupported`]): moving a stream's rows
//!   is an insert and a delete that readers would see apart. Nor is a change feed: positions
//!   in commit order need a serialization point that ClickHouse does not have. Subscriptions
//!   are woken by this handle's own commits and poll for the rest.
//! - **Search**: `Substring`, over the payload's string values (kept in a `search` column),
//!   ignoring ASCII case, as on every backend ([`ledger_core::payload_contains`]).
//! - **Names**: table and database names follow the core rule for table names (ASCII
//!   letters, digits, `_`), refused as [`ledger_core::Error::InvalidName`]; every value is
//!   bound, quoted by the client.
//! - **Errors**: a URL that is not `http://host:port` is
//!   [`ledger_core::Error::InvalidArgument`] naming it; what the server refuses comes back as
//!   [`ledger_core::Error::Backend`] naming the store, with the server's message and code
//!   (busy-server codes as [`ledger_core::BackendErrorKind::Timeout`], so
//!   `is_transient` tells a caller to retry). ClickHouse sets no size limit on a row: a batch
//!   is as large as the server's memory allows.
//!
//! # Testing against ClickHouse
//!
//! The tests run against the servers `cargo xtask services up` starts:
//! `LEDGER_CLICKHOUSE_URL` (a current engine) and `LEDGER_CLICKHOUSE_LEGACY_URL` (18.16). Point
//! them at any ClickHouse to run the same suite there, e.g.
//! `LEDGER_CLICKHOUSE_URL=http://127.0.0.1:8123 cargo test -p ledger-clickhouse`.
//!
//! # Features
//!
//! This crate has no optional features.
#![deny(missing_docs)]

mod backend;
mod error;
mod replica;
mod row;
mod schema;
mod writer;

use std::sync::Arc;

use clickhouse::Client;

use ledger_core::backend::CommitSignal;
use ledger_core::{Error, Result, Store};

use crate::backend::ClickHouseBackend;
use crate::error::backend as backend_err;
use crate::schema::{Dialect, Names};

pub use crate::schema::SCHEMA_VERSION;

/// The table a store uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "ledger_entries";

/// Options for opening a [`ClickHouseStore`]; start with [`ClickHouseStore::builder`].
#[derive(Debug, Clone)]
pub struct ClickHouseStoreBuilder {
    table: String,
    database: Option<String>,
}

impl ClickHouseStoreBuilder {
    /// The store's table (default [`DEFAULT_TABLE`]).
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// The database (default: the URL's `database` parameter, else the server's default).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// Connects to the server at `url` (`http://[user[:password]@]host:port[/?database=name]`;
    /// plain HTTP: this build of the client has no TLS)
    /// and opens the store, creating or upgrading its tables.
    pub async fn connect(self, url: &str) -> Result<ClickHouseStore> {
        let target = Target::parse(url)?;
        let mut client = http_client().with_url(&target.base);
        if let Some(user) = &target.user {
            client = client.with_user(user);
        }
        if let Some(password) = &target.password {
            client = client.with_password(password);
        }
        let database = self.database.clone().or(target.database);
        if let Some(database) = database {
            validate_database_name(&database)?;
            client = client.with_database(database);
        }
        self.open(client).await
    }

    /// Opens the store on an existing client (its URL, credentials and database).
    pub async fn open(self, client: Client) -> Result<ClickHouseStore> {
        ledger_core::validate_table_name(&self.table)?;
        if let Some(database) = client.database() {
            validate_database_name(database)?;
        }
        let in_store = |e: Error| e.in_store(&self.table);
        let version: String = client
            .clone()
            .with_validation(false)
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(backend_err)
            .map_err(in_store)?;
        let dialect = Dialect::of(&version)?;
        let client = client.with_validation(dialect.validates());
        let names = Names::new(&self.table);
        schema::migrate(&client, &names).await.map_err(in_store)?;
        let backend = Arc::new(ClickHouseBackend {
            name: self.table.clone(),
            client,
            dialect,
            names,
            writers: Default::default(),
            signal: Arc::new(CommitSignal::new()),
        });
        Ok(ClickHouseStore {
            store: Store::from_backend(backend.clone()),
            backend,
            server_version: version,
        })
    }
}

/// A client whose connections have Nagle's algorithm off: an insert's body ends in a small chunk,
/// which Nagle holds back until the server acknowledges the one before, and servers that
/// delay their acknowledgements (18.16 does) then answer one insert in ten 40 ms late.
fn http_client() -> Client {
    use std::time::Duration;

    use hyper_util::client::legacy::{Client as HyperClient, connect::HttpConnector};
    use hyper_util::rt::TokioExecutor;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // The crate's own settings: keep-alive probes, and idle connections closed before the
    // server's 3 s keep-alive timeout closes them under a request.
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::with_http_client(
        HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector),
    )
}

/// A URL taken apart: the crate wants credentials and the database beside the base URL.
#[derive(Debug, PartialEq)]
struct Target {
    base: String,
    user: Option<String>,
    password: Option<String>,
    database: Option<String>,
}

impl Target {
    fn parse(url: &str) -> Result<Target> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!("{url:?} is not a ClickHouse HTTP URL: {why}"))
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http://host:port"))?;
        if scheme != "http" {
            return Err(bad("the scheme must be http (this build has no TLS)"));
        }
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((credentials, host)) => (Some(credentials), host),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let (user, password) = match credentials.map(|c| c.split_once(':')) {
            None => (None, None),
            Some(Some((user, password))) => (Some(user.to_owned()), Some(password.to_owned())),
            Some(None) => (credentials.map(str::to_owned), None),
        };
        let mut database = None;
        if let Some((_, query)) = tail.split_once('?') {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("database", name)) => database = Some(name.to_owned()),
                    _ => return Err(bad(&format!("unknown parameter {pair:?}"))),
                }
            }
        }
        Ok(Target {
            base: format!("{scheme}://{host}"),
            user,
            password,
            database,
        })
    }
}

/// Checks a database name: the core's rule for table names, which keeps it a plain
/// ClickHouse identifier.
fn validate_database_name(name: &str) -> Result<()> {
    ledger_core::validate_table_name(name).map_err(|e| match e {
        Error::InvalidName { name, reason, .. } => Error::InvalidName {
            kind: "database",
            name,
            reason,
        },
        other => other,
    })
}

/// A [`Store`] on ClickHouse: dereferences to the store, and adds what is ClickHouse's own.
#[derive(Clone)]
pub struct ClickHouseStore {
    store: Store,
    backend: Arc<ClickHouseBackend>,
    server_version: String,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("table", &self.backend.name)
            .field("server_version", &self.server_version)
            .finish()
    }
}

impl ClickHouseStore {
    /// Options for opening a store.
    pub fn builder() -> ClickHouseStoreBuilder {
        ClickHouseStoreBuilder {
            table: DEFAULT_TABLE.to_owned(),
            database: None,
        }
    }

    /// Opens the store [`DEFAULT_TABLE`] at `url`.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    /// The store's table.
    pub fn table(&self) -> &str {
        &self.backend.name
    }

    /// The client, to query the tables directly (for analytics).
    pub fn client(&self) -> &Client {
        &self.backend.client
    }

    /// What the server answered to `SELECT version()`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }
}

impl std::ops::Deref for ClickHouseStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl AsRef<Store> for ClickHouseStore {
    fn as_ref(&self) -> &Store {
        &self.store
    }
}

impl From<ClickHouseStore> for Store {
    fn from(store: ClickHouseStore) -> Store {
        store.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_base_credentials_and_database() {
        assert_eq!(
            Target::parse("http://u:p@h:8123/?database=logs").unwrap(),
            Target {
                base: "http://h:8123".into(),
                user: Some("u".into()),
                password: Some("p".into()),
                database: Some("logs".into()),
            }
        );
        assert_eq!(
            Target::parse("http://h:8123").unwrap().base,
            "http://h:8123"
        );
        for bad in ["h:8123", "tcp://h:9000", "http://", "http://h/?table=x"] {
            assert!(
                matches!(Target::parse(bad), Err(Error::InvalidArgument(m)) if m.contains(bad)),
                "{bad}"
            );
        }
    }

    #[test]
    fn database_names_are_identifiers() {
        assert!(validate_database_name("logs_2").is_ok());
        assert!(matches!(
            validate_database_name("a;drop"),
            Err(Error::InvalidName {
                kind: "database",
                ..
            })
        ));
    }
}
