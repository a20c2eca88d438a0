//! A CI build-event service on the ledger: Probo-DB's job (a Kafka consumer of build
//! snapshots, a `build` table, a REST API of builds, projects and disk usage) without its
//! races.
//!
//! - **The ledger first.** Every message becomes a ledger entry before anything else: an event
//!   goes to its build's stream `build-<id>`, a malformed message to
//!   [`DEAD_LETTER_STREAM`] with its reason and coordinates. The dedup key comes from where
//!   it was read (topic, partition and offset), so a redelivered message is a duplicate, not a
//!   second event. Kafka offsets are committed only after the batch is stored.
//! - **Projections from the ledger.** The `build` read model and the DB plugins follow the
//!   change feed in order, each with its own checkpoint; the read model commits its rows and
//!   checkpoint together. A crash anywhere loses nothing and doubles nothing.
//! - **No rollbacks.** A row is replaced only by a snapshot with a later `updatedAt` (or the
//!   same `updatedAt` and a later ledger version), so replays, redeliveries and old snapshots
//!   arriving late never roll a build back.
//! - **Probo-DB's API** ([`http`]), with its mistakes corrected there and in [`Build`].
//!
//! Sources: Kafka ([`KafkaSource`]), a stream of the service's own ledger
//! ([`BuildService::run_ledger_source`], no broker), and JSON lines ([`BuildService::replay`]).
//!
//! ```
//! use ledger_builds::{BuildService, BuildServiceOptions, Message, Origin, Outcome};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ledger_builds::Result<()> {
//! let service = BuildService::open("sqlite::memory:", BuildServiceOptions::default()).await?;
//! let id = "edae5055-db9e-4ae4-8863-7561cb6e0aa2";
//! let message = serde_json::json!({"version": "1", "data": {"event": "ready", "data": {},
//!     "build": {"id": id, "projectId": "c01f0f8c-9774-43e7-b717-5ca78bd44c01",
//!               "updatedAt": "2026-01-01T00:00:00Z", "diskSpace": {"realBytes": 1001}}}});
//! let origin = Origin::Kafka { topic: "build_events".into(), partition: 0, offset: 7 };
//! let value = Some(serde_json::to_vec(&message).unwrap());
//! let first = service.ingest(vec![Message { origin: origin.clone(), value: value.clone() }]).await?;
//! // The same record delivered again is a duplicate.
//! let again = service.ingest(vec![Message { origin, value }]).await?;
//! assert_eq!((first[0].clone(), again[0].clone()), (Outcome::Stored, Outcome::Duplicate));
//! service.catch_up().await?;
//! assert_eq!(service.build(id).await?.unwrap().build.bytes_real, 1001);
//! # Ok(())
//! # }
//! ```
//!
//! The binary `ledger-builds` serves it all (`ledger-builds --help`). This crate has no
//! optional features.
#![deny(missing_docs)]

pub mod config;
mod error;
mod event;
pub mod http;
mod ingest;
mod kafka;
mod pipeline;
mod readmodel;
mod service;

pub use error::{Error, Result};
pub use event::{
    BUILD_STATUSES, Build, BuildEvent, Rejection, SUBMITTED_STATUSES, iso, parse_uuid,
};
pub use ingest::{
    DEAD_LETTER_MESSAGE_BYTES, DEAD_LETTER_STREAM, DeadLetter, Message, Origin, Outcome, emit, wire,
};
pub use kafka::KafkaSource;
pub use pipeline::{DbPlugin, PluginContext, PluginError, Retry};
pub use readmodel::{BUILD_STREAM_PREFIX, BuildRow, StoredEvent, build_stream, stored_events};
pub use service::{BuildService, BuildServiceOptions, DEFAULT_LEDGER_TABLE, MAX_PAGE};
