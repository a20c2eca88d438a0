//! What stops a bridge.

use ledger_core::{Error, MutationKind};

/// Why a bridge could not be built, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// An option is out of range, or the stores cannot be bridged as configured.
    #[error("invalid bridge configuration: {0}")]
    Config(String),
    /// The source's change feed could not be read, and retrying would not help (transient
    /// errors are retried).
    #[error("reading the change feed of source store {store:?} failed: {source}")]
    Source {
        /// The source store.
        store: String,
        /// What the store answered.
        #[source]
        source: Error,
    },
    /// The sink refused a record for good (retried, and applied alone, it still failed). The
    /// bridge stops at it, never past it: every record before it is applied, none after.
    #[error(
        "sink store {store:?} rejected record {position} ({kind} on stream {stream:?}): {source}"
    )]
    Rejected {
        /// The sink store.
        store: String,
        /// The record's position in the source's feed.
        position: u64,
        /// The stream it touches.
        stream: String,
        /// What it does.
        kind: MutationKind,
        /// What the sink answered.
        #[source]
        source: Error,
    },
    /// The sink failed outside a record: loading or saving the bridge's cursor.
    #[error("sink store {store:?} failed: {source}")]
    Sink {
        /// The sink store.
        store: String,
        /// What the store answered.
        #[source]
        source: Error,
    },
    /// [`crate::Bridge::start`] was called on a bridge that is running.
    #[error("bridge {0:?} is already running")]
    AlreadyRunning(String),
}

impl BridgeError {
    /// The store error behind this one, if any.
    pub fn store_error(&self) -> Option<&Error> {
        match self {
            BridgeError::Source { source, .. }
            | BridgeError::Rejected { source, .. }
            | BridgeError::Sink { source, .. } => Some(source),
            BridgeError::Config(_) | BridgeError::AlreadyRunning(_) => None,
        }
    }
}
