//! Validation of the names that reach a database: tables and streams.
//!
//! Table names become SQL identifiers, so they are checked once, at construction, against a
//! strict pattern and are never taken from anywhere else. Stream ids are always bound as values.

use crate::error::{Error, Result};

/// Longest stream id, in bytes.
pub const MAX_STREAM_LEN: usize = 256;
/// Longest table or collection name, in bytes.
pub const MAX_TABLE_LEN: usize = 63;

/// Checks a table (or collection) name: `^[A-Za-z_][A-Za-z0-9_]{0,62}$`.
pub fn validate_table_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            kind: "table",
            name: name.to_owned(),
            reason,
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return invalid("must not be empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return invalid("must start with an ASCII letter or '_'");
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return invalid("may contain only ASCII letters, digits and '_'");
    }
    if name.len() > MAX_TABLE_LEN {
        return invalid("must be at most 63 bytes long");
    }
    Ok(())
}

/// Checks a stream id: 1 to 256 bytes of UTF-8 without NUL.
pub fn validate_stream_id(stream: &str) -> Result<()> {
    validate_text_name("stream", stream)
}

/// Checks a cursor name ([`crate::Store::get_cursor`]): 1 to 256 bytes of UTF-8 without NUL, like a
/// stream id.
pub fn validate_cursor_name(name: &str) -> Result<()> {
    validate_text_name("cursor", name)
}

/// The longest replication cursor name: its lanes' cursors ([`crate::Lane::cursor`]) add 8 bytes.
pub const MAX_REPLICATION_CURSOR_LEN: usize = MAX_STREAM_LEN - 8;

/// Checks a replication cursor name ([`crate::Store::apply_replicated`]): a cursor name of at
/// most [`MAX_REPLICATION_CURSOR_LEN`] bytes.
pub fn validate_replication_cursor(name: &str) -> Result<()> {
    validate_cursor_name(name)?;
    if name.len() > MAX_REPLICATION_CURSOR_LEN {
        return Err(Error::InvalidName {
            kind: "replication cursor",
            name: name.to_owned(),
            reason: "must be at most 248 bytes long (its lanes' cursors add 8)",
        });
    }
    Ok(())
}

/// Names stored as bound text values: 1 to [`MAX_STREAM_LEN`] bytes, no NUL (which PostgreSQL
/// and others cannot store).
fn validate_text_name(kind: &'static str, name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("must not be empty");
    }
    if name.len() > MAX_STREAM_LEN {
        return invalid("must be at most 256 bytes long");
    }
    if name.contains('\0') {
        return invalid("must not contain NUL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_identifier_pattern() {
        for ok in ["a", "_", "ledger_entries", "T1", &"x".repeat(63)] {
            assert!(validate_table_name(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "1a",
            "a-b",
            "a b",
            "a;drop table x",
            "a\0",
            "é",
            &"x".repeat(64),
        ] {
            let err = validate_table_name(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidName { kind: "table", .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn stream_ids_are_one_to_256_bytes_without_nul() {
        assert!(validate_stream_id("order-1").is_ok());
        assert!(validate_stream_id("ünïcødé/ストリーム").is_ok());
        assert!(validate_stream_id(&"s".repeat(256)).is_ok());
        for bad in ["", "a\0b", &"s".repeat(257)] {
            assert!(matches!(
                validate_stream_id(bad),
                Err(Error::InvalidName { kind: "stream", .. })
            ));
        }
    }

    #[test]
    fn cursor_names_are_one_to_256_bytes_without_nul() {
        assert!(validate_cursor_name("bridge/orders→archive").is_ok());
        for bad in ["", "a\0b", &"c".repeat(257)] {
            assert!(matches!(
                validate_cursor_name(bad),
                Err(Error::InvalidName { kind: "cursor", .. })
            ));
        }
    }
}
