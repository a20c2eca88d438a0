//! `ledger-bridge`: replicates one ledger store's change feed into another store, so the sink
//! converges to the source (same streams, ids, versions, payloads, metadata, tags, annotations
//! and timestamps), whatever backends the two are.
//!
//! ```
//! use ledger_bridge::{Bridge, BridgeOptions};
//! use ledger_core::{AppendInput, ExpectedVersion, MemoryStore, ReadOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = MemoryStore::new(); // any store with its change feed on
//! let sink = MemoryStore::new();   // any store
//! source.append("orders", vec![AppendInput::new(serde_json::json!({"total": 5}))], ExpectedVersion::Any).await?;
//!
//! let bridge = Bridge::new(&source, &sink, BridgeOptions::new("orders-replica"))?;
//! let stats = bridge.run_once().await?; // a one-shot backfill; `start()` keeps following
//! assert_eq!(stats.applied, 1);
//! assert_eq!(sink.read("orders", &ReadOptions::new()).await?, source.read("orders", &ReadOptions::new()).await?);
//! # Ok(())
//! # }
//! ```
//!
//! # How it stays correct
//!
//! - **Nothing lost, nothing doubled.** Each page is applied with
//!   [`ledger_core::Store::apply_replicated`], which skips records the sink has applied and saves
//!   the bridge's cursor (named after the bridge) with the records, in one transaction where the
//!   sink has transactions ([`ledger_core::Replication::Transactional`]: SQLite, PostgreSQL,
//!   MongoDB, the in-memory store). ClickHouse saves it after the records and replays them
//!   idempotently ([`ledger_core::Replication::Idempotent`]). A bridge killed anywhere resumes
//!   from the cursor; two bridges with one name on one sink share it. The cursor is a number,
//!   saved monotonically; the bridge also keeps its position in memory, so it never re-reads
//!   what it applied while it runs.
//! - **Exact copies.** Sinks keep the source's ids, versions and timestamps; a trim replicates
//!   as "entries up to this id", whether or not the sink ever held the boundary entry; a stream's
//!   version survives trims.
//! - **Parallel, in order.** With [`BridgeOptions::parallel`] above 1, a page is split by
//!   [`ledger_core::Lane`] (all of a stream's records are in its lane) and lanes are applied at
//!   once, each saving its own cursor; renames, which move a stream between lanes, are
//!   barriers. Progress saved either way is understood by the other, so a bridge may be
//!   restarted with any setting.
//! - **Retries, then a clear stop.** Transient errors (lost connections, timeouts,
//!   serialization failures) are retried with exponential backoff ([`backon`]) for as long as
//!   they last. A record the sink refuses for good stops the bridge with
//!   [`BridgeError::Rejected`], naming the record; it is never passed over. Kinds a sink cannot
//!   take are skipped only when [`BridgeOptions::skip`] says so, and counted.
//!
//! # Observability
//!
//! `tracing`: a `ledger.bridge.page` span per page, warnings on retried failures, start and
//! stop at info. OpenTelemetry metrics on the global meter provider (or
//! [`BridgeOptions::meter`]), all with `bridge.name`: `ledger.bridge.polls`,
//! `ledger.bridge.records.applied`, `ledger.bridge.records.skipped` (with `mutation.type`),
//! `ledger.bridge.errors` (with `stage`: `source` or `sink`), `ledger.bridge.lag.records`,
//! `ledger.bridge.lag.seconds` and `ledger.bridge.page.duration`. [`Bridge::stats`] and
//! [`Bridge::progress`] give the same numbers in process, for a long backfill's progress.
//!
//! # Features
//!
//! The library has none: the bridge works on [`ledger_core::Store`]s of any backend crate.
//! `cli` builds the `ledger-bridge` command, a bridge between two stores given by URL
//! (`ledger::open`, every backend compiled in) in a process of its own:
//! `ledger-bridge --source URL --sink URL --name NAME [--parallel N] [--batch N] [--skip
//! rename] [--once]`; it stops after the page in hand on Ctrl-C or SIGTERM.
#![deny(missing_docs)]

mod bridge;
mod error;
mod metrics;
mod options;

pub use bridge::{Bridge, Running, Stats};
pub use error::BridgeError;
pub use options::BridgeOptions;
