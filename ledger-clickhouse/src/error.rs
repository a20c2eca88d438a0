//! Client errors as `ledger_core` errors, with their kind.

use ledger_core::{BackendErrorKind, Error};

/// Server error codes a retry may get past: the server was busy, not the request wrong.
const TRANSIENT: [u32; 5] = [
    159, // TIMEOUT_EXCEEDED
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    252, // TOO_MANY_PARTS
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
];

/// The code of a server error's text (`Code: 60. DB::Exception: …`).
pub fn code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + "Code: ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// `e` as a [`Error::Backend`] of the kind it is.
pub fn backend(e: clickhouse::error::Error) -> Error {
    use clickhouse::error::Error as E;
    let kind = match &e {
        E::Network(_) => BackendErrorKind::Connection,
        E::TimedOut => BackendErrorKind::Timeout,
        E::BadResponse(text) => match code(text) {
            Some(c) if TRANSIENT.contains(&c) => BackendErrorKind::Timeout,
            _ => BackendErrorKind::Other,
        },
        E::NotEnoughData
        | E::InvalidUtf8Encoding(_)
        | E::InvalidTagEncoding(_)
        | E::SchemaMismatch(_)
        | E::DataFormat(_) => BackendErrorKind::Corrupt,
        _ => BackendErrorKind::Other,
    };
    Error::backend(kind, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_are_read_from_the_message() {
        let text = "Code: 60. DB::Exception: Table default.x doesn't exist. (UNKNOWN_TABLE)";
        assert_eq!(code(text), Some(60));
        assert_eq!(
            code("bad response: Code: 252, e.displayText() = …"),
            Some(252)
        );
        assert_eq!(code("no code here"), None);
    }
}
