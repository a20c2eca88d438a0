//! The one error type of the SDK.

use crate::entry::ExpectedVersion;

/// Result alias used throughout the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a ledger operation.
///
/// Variants name the bad value where there is one, so a message alone says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table, collection or stream name failed validation.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What was being named: `"table"` or `"stream"`.
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An argument is outside its allowed range (a limit, a cursor, an empty value).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The stream's version did not match what the caller expected; nothing was written.
    #[error(
        "version conflict on stream {stream:?}: expected {expected}, stream is at version {actual}"
    )]
    Conflict {
        /// The stream appended to.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's current version (0 for a stream that was never written).
        actual: u64,
    },
    /// No entry with this id exists in this stream.
    #[error("entry {id} not found in stream {stream:?}")]
    EntryNotFound {
        /// The stream searched.
        stream: String,
        /// The id that was not found.
        id: crate::EntryId,
    },
    /// The stream does not exist (it was never written).
    #[error("stream {0:?} not found")]
    StreamNotFound(String),
    /// The stream already exists (rename target).
    #[error("stream {0:?} already exists")]
    StreamExists(String),
    /// This store or backend does not offer the operation.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// An entry is older than the stream's schema version and no upcaster covers a step.
    #[error("no upcaster from schema version {from} to {to}")]
    NoUpcaster {
        /// The version the missing step starts at.
        from: u32,
        /// The version the missing step would produce.
        to: u32,
    },
    /// An upcaster failed on an entry's payload.
    #[error("upcasting from schema version {from}: {reason}")]
    Upcast {
        /// The version the failing step starts at.
        from: u32,
        /// What went wrong.
        reason: String,
    },
    /// A payload could not be encoded by the stream's codec.
    #[error("cannot encode payload: {0}")]
    Encode(#[source] CodecError),
    /// A stored payload could not be decoded into the requested type.
    #[error("cannot decode payload of entry {id}: {source}")]
    Decode {
        /// The entry whose payload failed.
        id: crate::EntryId,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// The store was closed; no further calls are served.
    #[error("store is closed")]
    StoreClosed,
    /// The store's schema was migrated by a newer release of its backend, which this release
    /// cannot read or write safely; nothing was changed.
    #[error(
        "store {store:?} has schema version {found}, newer than the {known} this release knows: \
         upgrade the backend crate before opening it"
    )]
    IncompatibleSchema {
        /// The store (table or collection).
        store: String,
        /// The schema version recorded in the database.
        found: i64,
        /// The newest schema version this release knows.
        known: i64,
    },
    /// The database or driver failed; `kind` says how, and whether a retry may succeed.
    #[error("backend error ({kind}){}: {source}", in_store(store))]
    Backend {
        /// What kind of failure it is.
        kind: BackendErrorKind,
        /// The store (table or collection) it came from, where known.
        store: Option<String>,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// The error of a [`crate::Codec`], whatever serializer it uses.
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

fn in_store(store: &Option<String>) -> String {
    store
        .as_ref()
        .map(|s| format!(" in store {s:?}"))
        .unwrap_or_default()
}

/// What kind of failure an [`Error::Backend`] is, so a caller can decide what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The connection failed or was lost (a restarting server, a dropped network). Transient.
    Connection,
    /// A wait ran out: for a pooled connection, or for a lock another writer holds (SQLite's
    /// busy timeout). Transient.
    Timeout,
    /// The database aborted the transaction to keep concurrent transactions serializable, or to
    /// break a deadlock (PostgreSQL SQLSTATE 40001, 40P01). Nothing of it was written: retry the
    /// whole transaction. Transient, and a conflict ([`Error::is_conflict`]).
    Serialization,
    /// A constraint the database enforces refused the write.
    Constraint,
    /// Stored data cannot be read back: a row or record that does not decode.
    Corrupt,
    /// Anything else the database or driver reported.
    Other,
}

impl std::fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendErrorKind::Connection => "connection",
            BackendErrorKind::Timeout => "timeout",
            BackendErrorKind::Serialization => "serialization failure",
            BackendErrorKind::Constraint => "constraint",
            BackendErrorKind::Corrupt => "corrupt data",
            BackendErrorKind::Other => "other",
        })
    }
}

impl Error {
    /// Wraps a driver error of the given kind.
    pub fn backend(
        kind: BackendErrorKind,
        err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Backend {
            kind,
            store: None,
            source: err.into(),
        }
    }

    /// The same error, naming `name` as the store of an [`Error::Backend`] that names none.
    pub fn in_store(self, name: &str) -> Self {
        match self {
            Error::Backend {
                kind,
                store: None,
                source,
            } => Error::Backend {
                kind,
                store: Some(name.to_owned()),
                source,
            },
            other => other,
        }
    }

    /// [`Error::Backend`] of kind [`BackendErrorKind::Corrupt`] for stored data that cannot be
    /// read back (`what` says which and why).
    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Error::backend(
            BackendErrorKind::Corrupt,
            format!("stored data is invalid: {what}"),
        )
    }

    /// The kind of an [`Error::Backend`]; `None` for every other error.
    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            Error::Backend { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// [`Error::EntryNotFound`] for `id` in `stream`.
    pub fn entry_not_found(stream: &str, id: crate::EntryId) -> Self {
        Error::EntryNotFound {
            stream: stream.to_owned(),
            id,
        }
    }

    /// True for [`Error::Conflict`] and for serialization failures
    /// ([`BackendErrorKind::Serialization`]): another writer won a race, nothing was written, and
    /// the operation can be retried after re-reading the stream.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Error::Conflict { .. }
                | Error::Backend {
                    kind: BackendErrorKind::Serialization,
                    ..
                }
        )
    }

    /// True for errors that may go away if the same call is made again: lost connections,
    /// timeouts and serialization failures. Corrupt data, bad input and conflicts on a version
    /// are not transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.backend_kind(),
            Some(
                BackendErrorKind::Connection
                    | BackendErrorKind::Timeout
                    | BackendErrorKind::Serialization
            )
        )
    }

    /// True for [`Error::EntryNotFound`] and [`Error::StreamNotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::EntryNotFound { .. } | Error::StreamNotFound(_))
    }
}
