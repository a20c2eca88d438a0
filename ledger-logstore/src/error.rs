//! The log store's errors: bad input names its field; storage failures keep the ledger's error.

/// A log-store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input: a filter, a log or an option; `field` names it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field (a JSON name or query parameter).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No log has this id.
    #[error("log not found: {0:?}")]
    NotFound(String),
    /// A log with this id was already accepted ([`crate::LogStore::create`]).
    #[error("a log with id {0:?} already exists")]
    Duplicate(String),
    /// The writer was shut down, or the store closed.
    #[error("the log store is closed")]
    Closed,
    /// The ledger or the read model's database failed.
    #[error(transparent)]
    Store(#[from] ledger_core::Error),
}

impl Error {
    /// An [`Error::Invalid`] naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<Error> for ledger_core::Error {
    /// For handlers the ledger calls (a feed consumer's): storage errors pass through, so
    /// their kind (transient or not) is kept.
    fn from(e: Error) -> ledger_core::Error {
        match e {
            Error::Store(e) => e,
            other => ledger_core::Error::InvalidArgument(other.to_string()),
        }
    }
}

/// A log-store result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
