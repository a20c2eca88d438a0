//! Driver errors as `ledger_core` errors, with their kind.

use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, WriteFailure};

use ledger_core::{BackendErrorKind, Error};

/// MongoDB's duplicate-key error.
pub const DUPLICATE_KEY: i32 = 11000;
/// A write conflicted with a concurrent transaction.
const WRITE_CONFLICT: i32 = 112;
/// Server codes that mean the server refused the input itself.
const BAD_INPUT: [i32; 6] = [
    2,     // BadValue
    10334, // BSONObjectTooLarge
    17280, // KeyTooLong
    15,    // Overflow
    73,    // InvalidNamespace
    67,    // CannotCreateIndex
];

/// The server error code of `e`, if it has one.
pub fn code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|w| w.code),
        _ => None,
    }
}

/// Whether `e` is a duplicate key (a unique index refused the write).
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    code(e) == Some(DUPLICATE_KEY)
}

/// Whether retrying the whole transaction may succeed.
pub fn is_transient(e: &mongodb::error::Error) -> bool {
    e.contains_label(TRANSIENT_TRANSACTION_ERROR) || code(e) == Some(WRITE_CONFLICT)
}

/// `e` as a [`Error::Backend`] of the kind it is.
pub fn backend(e: mongodb::error::Error) -> Error {
    let kind = if is_transient(&e) {
        BackendErrorKind::Serialization
    } else if is_duplicate_key(&e) {
        BackendErrorKind::Constraint
    } else {
        match e.kind.as_ref() {
            ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
                BackendErrorKind::Connection
            }
            ErrorKind::ServerSelection { .. } => BackendErrorKind::Connection,
            ErrorKind::BsonDeserialization(_) => BackendErrorKind::Corrupt,
            _ => BackendErrorKind::Other,
        }
    };
    Error::backend(kind, e)
}

/// `e` as the error for input the server refused: [`Error::InvalidArgument`] naming `what`
/// where the server says the input is bad, else as [`backend`] does.
pub fn refused(e: mongodb::error::Error, what: impl FnOnce() -> String) -> Error {
    let bad_input = matches!(e.kind.as_ref(), ErrorKind::InvalidArgument { .. })
        || code(&e).is_some_and(|c| BAD_INPUT.contains(&c));
    if bad_input {
        Error::InvalidArgument(format!("{}: the server refused it: {e}", what()))
    } else {
        backend(e)
    }
}
