//! The service's errors: bad input names its value; storage failures keep the ledger's error.

/// A build-service error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input (an id, a page size, a setting); `field` names it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// What was given (a path parameter, query parameter or setting).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration could not be loaded.
    #[error("configuration: {0}")]
    Config(String),
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Reading the input failed.
    #[error("input: {0}")]
    Io(#[from] std::io::Error),
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
    /// For handlers the ledger calls: storage errors pass through with their kind.
    fn from(e: Error) -> ledger_core::Error {
        match e {
            Error::Store(e) => e,
            other => ledger_core::Error::InvalidArgument(other.to_string()),
        }
    }
}

/// A build-service result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
