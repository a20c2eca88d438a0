//! `ledger`: typed, append-only event streams for Rust, over pluggable stores.
//!
//! A store is one entity type (a table or collection), a stream one instance inside it
//! (`order-7`, `customer-42`) that exists from its first append. Every entry gets a per-stream
//! version, so an append can say which version it expects and exactly one of two racing writers
//! wins; dedup keys make retries idempotent; a change feed records every mutation in commit
//! order, and subscriptions deliver streams and the feed from any point, then live.
//!
//! This crate is the front door: it re-exports [`ledger_core`] (the [`Store`] every backend is,
//! the typed [`Stream`], subscriptions, the [`FeedConsumer`], [`Layer`]s) and opens any compiled
//! backend from a URL with [`open`], so a program chooses its store at run time:
//!
//! ```
//! use ledger::{ExpectedVersion, ReadOptions, Stream};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Deposited { cents: u64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ledger::Result<()> {
//! // `sqlite://ledger.db?table=accounts&change_feed=true`, `postgres://…` alike.
//! let store = ledger::open("sqlite::memory:?table=accounts").await?;
//! let account = Stream::<Deposited>::new(&store, "account-1")?;
//! let first = account.append_one(Deposited { cents: 500 }, ExpectedVersion::NoStream).await?;
//! assert!(first.is_appended());
//! let balance: u64 = account.read(&ReadOptions::new()).await?.iter().map(|e| e.payload.cents).sum();
//! assert_eq!(balance, 500);
//! # Ok(())
//! # }
//! ```
//!
//! # URLs
//!
//! | scheme | backend | feature |
//! |---|---|---|
//! | `sqlite:PATH`, `sqlite://PATH`, `sqlite::memory:` | [`sqlite`] (file, created if missing; or in memory) | `sqlite` (default) |
//! | `postgres://…`, `postgresql://…` | [`postgres`] | `postgres` |
//! | `mongodb://…`, `mongodb+srv://…` | [`mongo`] (`table` is the collection) | `mongodb` |
//! | `clickhouse://[user:password@]host:port[/?database=name]` (HTTP) | [`clickhouse`] (no change feed) | `clickhouse` |
//!
//! Two query parameters are the store's own and are taken off before the URL reaches the
//! driver: `table` (the store's table, default `ledger_entries`) and `change_feed` (`true` or
//! `false`, default `false`). [`open_with`] takes them as [`OpenOptions`] instead.
//!
//! # Features
//!
//! - `sqlite` (default): the embedded SQLite backend, [`sqlite`].
//! - `postgres`: the PostgreSQL backend, [`postgres`].
//! - `mongodb`: the MongoDB backend, [`mongo`].
//! - `clickhouse`: the ClickHouse backend, [`clickhouse`].
//!
//! Each backend crate compiles only its own driver.
#![deny(missing_docs)]

pub use ledger_core::*;

/// The SQLite backend (`ledger-sqlite`).
#[cfg(feature = "sqlite")]
pub use ledger_sqlite as sqlite;

/// The PostgreSQL backend (`ledger-postgres`).
#[cfg(feature = "postgres")]
pub use ledger_postgres as postgres;

/// The MongoDB backend (`ledger-mongo`).
#[cfg(feature = "mongodb")]
pub use ledger_mongo as mongo;

/// The ClickHouse backend (`ledger-clickhouse`).
#[cfg(feature = "clickhouse")]
pub use ledger_clickhouse as clickhouse;

/// The table a store uses unless the URL or the options name one.
pub const DEFAULT_TABLE: &str = "ledger_entries";

/// How [`open_with`] opens a store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// The store's table (or collection).
    pub table: String,
    /// Whether every mutation is recorded in the change feed.
    pub change_feed: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            table: DEFAULT_TABLE.to_owned(),
            change_feed: false,
        }
    }
}

impl OpenOptions {
    /// Table `ledger_entries`, no change feed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the table.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Turns the change feed on or off.
    pub fn change_feed(mut self, on: bool) -> Self {
        self.change_feed = on;
        self
    }
}

/// Opens the store `url` names (see [the URL table](crate#urls)), with the table and change
/// feed its query parameters give.
pub async fn open(url: &str) -> Result<Store> {
    open_with(url, OpenOptions::new()).await
}

/// Opens the store `url` names, starting from `options`; `table` and `change_feed` in the URL
/// override them.
pub async fn open_with(url: &str, options: OpenOptions) -> Result<Store> {
    let target = Target::parse(url, options)?;
    match target.backend {
        Backend::Sqlite { path } => open_sqlite(path, &target.options).await,
        Backend::Postgres { url } => open_postgres(&url, &target.options).await,
        Backend::Mongo { url } => open_mongo(&url, &target.options).await,
        Backend::ClickHouse { url } => open_clickhouse(&url, &target.options).await,
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(path: Option<String>, options: &OpenOptions) -> Result<Store> {
    let builder = ledger_sqlite::SqliteStore::builder()
        .table(&options.table)
        .change_feed(options.change_feed);
    let store = match path {
        Some(path) => builder.open(path).await?,
        None => builder.open_in_memory().await?,
    };
    Ok(store.into())
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_: Option<String>, _: &OpenOptions) -> Result<Store> {
    Err(not_compiled("sqlite"))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, options: &OpenOptions) -> Result<Store> {
    let store = ledger_postgres::PostgresStore::builder()
        .table(&options.table)
        .change_feed(options.change_feed)
        .connect(url)
        .await?;
    Ok(store.into())
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str, _: &OpenOptions) -> Result<Store> {
    Err(not_compiled("postgres"))
}

#[cfg(feature = "mongodb")]
async fn open_mongo(url: &str, options: &OpenOptions) -> Result<Store> {
    let store = ledger_mongo::MongoStore::builder()
        .collection(&options.table)
        .change_feed(options.change_feed)
        .connect(url)
        .await?;
    Ok(store.into())
}

#[cfg(not(feature = "mongodb"))]
async fn open_mongo(_: &str, _: &OpenOptions) -> Result<Store> {
    Err(not_compiled("mongodb"))
}

#[cfg(feature = "clickhouse")]
async fn open_clickhouse(url: &str, options: &OpenOptions) -> Result<Store> {
    if options.change_feed {
        return Err(Error::NotSupported(
            "ClickHouse stores have no change feed (see ledger_clickhouse)".into(),
        ));
    }
    let store = ledger_clickhouse::ClickHouseStore::builder()
        .table(&options.table)
        .connect(url)
        .await?;
    Ok(store.into())
}

#[cfg(not(feature = "clickhouse"))]
async fn open_clickhouse(_: &str, _: &OpenOptions) -> Result<Store> {
    Err(not_compiled("clickhouse"))
}

#[allow(dead_code)] // unused when every backend is compiled
fn not_compiled(feature: &str) -> Error {
    Error::NotSupported(format!(
        "the {feature} backend is not compiled in: enable the `{feature}` feature of ledger"
    ))
}

/// A parsed URL: which backend, where, and the store's options.
#[derive(Debug, PartialEq)]
struct Target {
    backend: Backend,
    options: OpenOptions,
}

#[derive(Debug, PartialEq)]
enum Backend {
    /// `None`: in memory.
    Sqlite { path: Option<String> },
    /// The URL without the store's own parameters.
    Postgres { url: String },
    /// The URL without the store's own parameters.
    Mongo { url: String },
    /// The HTTP URL, with the database parameter if given.
    ClickHouse { url: String },
}

impl Target {
    fn parse(url: &str, mut options: OpenOptions) -> Result<Target> {
        let bad = |why: &str| Error::InvalidArgument(format!("store URL {url:?}: {why}"));
        let (scheme, rest) = url.split_once(':').ok_or_else(|| {
            bad("no scheme (expected sqlite:, postgres://, mongodb:// or clickhouse://)")
        })?;
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (rest, None),
        };
        // The store's own parameters; the rest are the driver's.
        let mut driver = Vec::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("table", table)) => options.table = table.to_owned(),
                Some(("change_feed", "true")) => options.change_feed = true,
                Some(("change_feed", "false")) => options.change_feed = false,
                Some(("change_feed", other)) => {
                    return Err(bad(&format!(
                        "change_feed must be true or false, not {other:?}"
                    )));
                }
                _ => driver.push(pair),
            }
        }
        let backend = match scheme {
            "sqlite" => {
                if !driver.is_empty() {
                    return Err(bad(&format!("unknown parameters {driver:?}")));
                }
                let path = location.strip_prefix("//").unwrap_or(location);
                match path {
                    "" => return Err(bad("no database file (use sqlite::memory: for memory)")),
                    ":memory:" => Backend::Sqlite { path: None },
                    path => Backend::Sqlite {
                        path: Some(path.to_owned()),
                    },
                }
            }
            "postgres" | "postgresql" | "mongodb" | "mongodb+srv" => {
                let query = if driver.is_empty() {
                    String::new()
                } else {
                    format!("?{}", driver.join("&"))
                };
                let url = format!("{scheme}:{location}{query}");
                if scheme.starts_with("mongodb") {
                    Backend::Mongo { url }
                } else {
                    Backend::Postgres { url }
                }
            }
            "clickhouse" => {
                let query = if driver.is_empty() {
                    String::new()
                } else {
                    format!("/?{}", driver.join("&"))
                };
                let location = location.trim_end_matches('/');
                Backend::ClickHouse {
                    url: format!("http:{location}{query}"),
                }
            }
            other => {
                return Err(bad(&format!(
                    "unknown scheme {other:?} (known: sqlite, postgres, mongodb, clickhouse)"
                )));
            }
        };
        Ok(Target { backend, options })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target> {
        Target::parse(url, OpenOptions::new())
    }

    #[test]
    fn mongodb_urls_keep_their_driver_options_and_lose_the_stores() {
        let target =
            parse("mongodb://h:27017/shop?replicaSet=rs0&table=orders&change_feed=true").unwrap();
        assert_eq!(
            target.backend,
            Backend::Mongo {
                url: "mongodb://h:27017/shop?replicaSet=rs0".into()
            }
        );
        assert_eq!(
            (target.options.table.as_str(), target.options.change_feed),
            ("orders", true)
        );
        assert!(matches!(
            parse("mongodb+srv://cluster.example/db").unwrap().backend,
            Backend::Mongo { .. }
        ));
    }

    #[test]
    fn clickhouse_urls_become_http_urls_without_the_stores_parameters() {
        let target = parse("clickhouse://u:p@h:8123/?database=logs&table=requests").unwrap();
        assert_eq!(
            target.backend,
            Backend::ClickHouse {
                url: "http://u:p@h:8123/?database=logs".into()
            }
        );
        assert_eq!(target.options.table, "requests");
        assert_eq!(
            parse("clickhouse://h:8123").unwrap().backend,
            Backend::ClickHouse {
                url: "http://h:8123".into()
            }
        );
    }

    #[test]
    fn sqlite_urls_name_a_file_or_memory() {
        let file = |p: &str| Backend::Sqlite {
            path: Some(p.to_owned()),
        };
        assert_eq!(
            parse("sqlite:ledger.db").unwrap().backend,
            file("ledger.db")
        );
        assert_eq!(
            parse("sqlite://ledger.db").unwrap().backend,
            file("ledger.db")
        );
        assert_eq!(
            parse("sqlite:///var/lib/l.db").unwrap().backend,
            file("/var/lib/l.db")
        );
        assert_eq!(
            parse("sqlite::memory:").unwrap().backend,
            Backend::Sqlite { path: None }
        );
        assert_eq!(
            parse("sqlite://:memory:").unwrap().backend,
            Backend::Sqlite { path: None }
        );
    }

    #[test]
    fn the_stores_own_parameters_are_taken_off_the_url() {
        let target =
            parse("postgres://u@h:5432/db?table=orders&sslmode=disable&change_feed=true").unwrap();
        assert_eq!(
            target.backend,
            Backend::Postgres {
                url: "postgres://u@h:5432/db?sslmode=disable".into()
            }
        );
        assert_eq!(
            target.options,
            OpenOptions::new().table("orders").change_feed(true)
        );
        let plain = parse("postgresql://h/db?table=t").unwrap();
        assert_eq!(
            plain.backend,
            Backend::Postgres {
                url: "postgresql://h/db".into()
            }
        );
    }

    #[test]
    fn bad_urls_are_invalid_arguments_naming_the_url() {
        for url in [
            "ledger.db",
            "mysql://h/db",
            "sqlite:",
            "sqlite:x.db?cache=shared",
            "sqlite:x.db?change_feed=yes",
        ] {
            match parse(url) {
                Err(Error::InvalidArgument(message)) => {
                    assert!(message.contains(url), "{message} names {url}")
                }
                other => panic!("{url}: expected InvalidArgument, got {other:?}"),
            }
        }
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
