//! `ledger-logstore`: an LLM request-log store with the operations and HTTP API of Bifrost's log
//! store, built on the ledger so that nothing accepted is lost.
//!
//! Every accepted write (a log, a change to one, a deletion, a retention sweep) is first an
//! entry of one ledger stream; a query-optimised read model follows the ledger's change feed,
//! committing its checkpoint with each applied batch, so after a crash it catches up with
//! nothing missing or doubled, and a read model rebuilt from the ledger equals the live one.
//! The read model keeps narrow rows for filtering and sorting (content, summaries and search
//! text in a table of their own, read by key), sort indexes with the id as tie-breaker (pages
//! never overlap), and exact hourly roll-ups updated in the same transactions, so stats and
//! histograms read whole hours from the roll-up and only the range's edges from the logs: the
//! total count always agrees with the pages. A [`LogWriter`] in front batches writes by count,
//! bytes and time, with backpressure or counted drops.
//!
//! ```
//! use chrono::Utc;
//! use ledger_logstore::{Log, LogStatus, LogStore, LogStoreOptions, LogUpdate, Pagination, SearchFilters};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ledger_logstore::Result<()> {
//! let store = LogStore::open("sqlite::memory:", LogStoreOptions::default()).await?;
//! let log = Log::new("req-1", Utc::now(), "chat_completion", "openai", "gpt-4o", LogStatus::Processing);
//! store.create(log).await?;
//! // The stream finished: the log gets its outcome.
//! store.update("req-1", LogUpdate::new().status(LogStatus::Success).latency(812.0)).await?;
//!
//! let filters = SearchFilters { providers: vec!["openai".into()], ..SearchFilters::new() };
//! let page = store.search(&filters, &Pagination::default()).await?;
//! assert_eq!(page.pagination.total_count, 1);
//! assert_eq!(page.logs[0].latency, Some(812.0));
//! # Ok(())
//! # }
//! ```
//!
//! Stores are chosen by URL: `sqlite:PATH` (one file, nothing to install; the default of the
//! `ledger-logstore` command) or `postgres://…`. The command serves Bifrost's `/api/logs`
//! endpoints, an ingest endpoint, an OpenAPI document and a small web page (see [`http`]).
//!
//! This crate has no optional features.
#![deny(missing_docs)]

mod aggregate;
mod db;
mod error;
mod filter;
pub mod http;
mod model;
mod query;
mod readmodel;
mod retention;
mod store;
mod writer;

pub use error::{Error, Result};
pub use filter::{
    MAX_FILTER_LIST, MAX_LIMIT, MAX_METADATA_KEY_BYTES, Order, Pagination, SearchFilters, SortBy,
    validate_metadata_key,
};
pub use model::{
    Content, Log, LogStatus, LogUpdate, MAX_COST, MAX_LATENCY_MS, MAX_NAME_BYTES, MAX_TOKENS,
    TokenUsage,
};
pub use query::{
    Bucket, BucketValues, Counts, FILTER_DATA_DAYS, FilterData, Histogram, HistogramKind, KeyPair,
    LatencyStats, MAX_BUCKETS, MAX_FILTER_VALUES, PageInfo, SearchResult, SearchStats, Tokens,
    bucket_for_range,
};
pub use retention::Retention;
pub use store::{DEFAULT_LEDGER_TABLE, LOG_STREAM, LogStore, LogStoreOptions};
pub use writer::{Accepted, LogWriter, Prepared, Receipt, WhenFull, WriterOptions};
