//! Reads: filters to SQL (values always bound) and rows to entries.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use ledger_core::{Direction, Entry, EntryId, Error, ReadOptions, Result};

/// Appends the search condition: a string value of the payload, at any depth, contains `text`
/// ignoring ASCII case ([`ledger_core::payload_contains`]; SQLite's `LIKE` folds ASCII only).
pub fn push_search(q: &mut QueryBuilder<'_, Sqlite>, text: &str) {
    let pattern = ledger_sql::like_contains_pattern(text);
    if ledger_sql::json_renders_verbatim(text) {
        // Cheap first: such text inside a string appears as is in the stored JSON.
        q.push(r" AND payload LIKE ")
            .push_bind(pattern.clone())
            .push(r" ESCAPE '\'");
    }
    q.push(r" AND EXISTS (SELECT 1 FROM json_tree(payload) WHERE type = 'text' AND atom LIKE ")
        .push_bind(pattern)
        .push(r" ESCAPE '\')");
}

/// Appends the conditions of `options` (cursor and filters), the order and the limit.
pub fn push_conditions(q: &mut QueryBuilder<'_, Sqlite>, options: &ReadOptions) {
    let f = &options.filter;
    let past = match options.direction {
        Direction::Ascending => ">",
        Direction::Descending => "<",
    };
    if let Some(after) = options.after {
        q.push(format_args!(" AND id {past} "))
            .push_bind(after.get());
    }
    if let Some(version) = options.after_version {
        q.push(format_args!(" AND version {past} "))
            .push_bind(ledger_sql::stored_version(version));
    }
    if let Some(key) = &f.order_key {
        q.push(" AND order_key = ").push_bind(key.clone());
    }
    for tag in f.tag.iter().chain(&f.all_tags) {
        q.push(" AND EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ")
            .push_bind(tag.clone())
            .push(")");
    }
    // json_each instead of a JSON path: keys may contain dots or quotes.
    for (column, pairs) in [("metadata", &f.metadata), ("annotations", &f.annotations)] {
        for (key, value) in pairs {
            q.push(format_args!(
                " AND EXISTS (SELECT 1 FROM json_each({column}) WHERE key = "
            ))
            .push_bind(key.clone())
            .push(" AND value = ")
            .push_bind(value.clone())
            .push(")");
        }
    }
    if let Some(from) = f.created_from {
        q.push(" AND created_at >= ")
            .push_bind(from.timestamp_micros());
    }
    if let Some(before) = f.created_before {
        q.push(" AND created_at < ")
            .push_bind(before.timestamp_micros());
    }
    q.push(match options.direction {
        Direction::Ascending => " ORDER BY id ASC LIMIT ",
        Direction::Descending => " ORDER BY id DESC LIMIT ",
    });
    q.push_bind(i64::from(options.limit));
}

pub fn micros_to_time(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::corrupt(format!("timestamp {micros} is out of range")))
}

fn json<T: DeserializeOwned>(text: &str, column: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::corrupt(format!("{column}: {e}")))
}

/// The columns of an entry besides id, version, payload and created_at, selected by
/// `Statements::read_columns` as one JSON array: stream, order key, dedup key, schema
/// version, metadata, tags, annotations, updated_at. sqlx copies every SQLite value it reads
/// into an allocation of its own and frees it on another thread, which made each column cost
/// as much as parsing a small JSON array; one column for eight halves the cost of a row.
#[derive(Deserialize)]
struct Rest(
    String,
    Option<String>,
    Option<String>,
    u32,
    BTreeMap<String, String>,
    BTreeSet<String>,
    BTreeMap<String, String>,
    Option<i64>,
);

/// Decodes a row selected with `Statements::read_columns`, the payload as `P` (a `Value`, or
/// its text as a `RawPayload`).
pub fn entry_from_row<P: DeserializeOwned>(row: &SqliteRow) -> Result<Entry<P>> {
    let get = |i: usize| -> Result<&str> { row.try_get(i).map_err(crate::backend_err) };
    let id: i64 = row.try_get(0).map_err(crate::backend_err)?;
    let version: i64 = row.try_get(1).map_err(crate::backend_err)?;
    let rest: Option<&str> = row.try_get(4).map_err(crate::backend_err)?;
    let Rest(stream, order_key, dedup_key, schema_version, metadata, tags, annotations, updated) =
        serde_json::from_str(rest.unwrap_or("null"))
            .map_err(|e| Error::corrupt(format_args!("columns of entry {id}: {e}")))?;
    Ok(Entry {
        id: EntryId::new(id),
        stream,
        version: version as u64,
        payload: json(get(2)?, "payload")?,
        order_key,
        dedup_key,
        schema_version,
        metadata,
        tags,
        annotations,
        created_at: micros_to_time(row.try_get(3).map_err(crate::backend_err)?)?,
        updated_at: updated.map(micros_to_time).transpose()?,
    })
}
