//! Reads: filters to SQL (values always bound) and rows to entries.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row};

use ledger_core::{Direction, Entry, EntryId, Error, ReadOptions, Result};

use crate::backend_err;

/// ASCII case folding that no collation or locale changes (`lower` and `ILIKE` follow the
/// database's, which may fold more letters, or fold `I` to `ı`).
const FOLD_ASCII: &str = "'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'";

/// Appends the search condition: a string value of the payload, at any depth, contains `text`
/// ignoring ASCII case ([`ledger_core::payload_contains`]).
pub fn push_search(q: &mut QueryBuilder<'_, Postgres>, text: &str) {
    let pattern = ledger_sql::like_contains_pattern(&text.to_ascii_lowercase());
    if ledger_sql::json_renders_verbatim(text) {
        // Cheap first: such text inside a string appears as is in the JSONB's text.
        q.push(format_args!(
            " AND translate(payload::text, {FOLD_ASCII}) LIKE "
        ))
        .push_bind(pattern.clone())
        .push(r" ESCAPE '\'");
    }
    q.push(format_args!(
        " AND EXISTS (SELECT 1 FROM jsonb_path_query(payload, 'strict $.**') AS s(v) \
         WHERE jsonb_typeof(s.v) = 'string' AND translate(s.v #>> '{{}}', {FOLD_ASCII}) LIKE "
    ))
    .push_bind(pattern)
    .push(r" ESCAPE '\')");
}

/// Appends the conditions of `options` (cursor and filters), the order and the limit.
pub fn push_conditions(q: &mut QueryBuilder<'_, Postgres>, options: &ReadOptions) {
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
    let tags: Vec<&String> = f.tag.iter().chain(&f.all_tags).collect();
    if !tags.is_empty() {
        q.push(" AND tags @> ").push_bind(Json(tags_json(&tags)));
    }
    for (column, pairs) in [("metadata", &f.metadata), ("annotations", &f.annotations)] {
        for (key, value) in pairs {
            q.push(format_args!(" AND {column} @> jsonb_build_object("))
                .push_bind(key.clone())
                .push("::text, ")
                .push_bind(value.clone())
                .push("::text)");
        }
    }
    if let Some(from) = f.created_from {
        q.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(before) = f.created_before {
        q.push(" AND created_at < ").push_bind(before);
    }
    q.push(match options.direction {
        Direction::Ascending => " ORDER BY id ASC LIMIT ",
        Direction::Descending => " ORDER BY id DESC LIMIT ",
    });
    q.push_bind(i64::from(options.limit));
}

fn tags_json(tags: &[&String]) -> serde_json::Value {
    serde_json::Value::Array(tags.iter().map(|t| (*t).clone().into()).collect())
}

/// The JSON column `i` of `row`, or the empty value for NULL (as `Statements::read_columns`
/// selects empty maps and sets, which spares encoding and parsing them).
fn json_or_empty<T: serde::de::DeserializeOwned + Default>(row: &PgRow, i: usize) -> Result<T> {
    let value: Option<Json<T>> = row.try_get(i).map_err(backend_err)?;
    Ok(value.map(|v| v.0).unwrap_or_default())
}

/// Decodes a row selected with `Statements::read_columns`, the payload as `P` (a `Value`, or
/// its text as a `RawPayload`).
pub fn entry_from_row<P: serde::de::DeserializeOwned>(row: &PgRow) -> Result<Entry<P>> {
    let version: i64 = row.try_get(2).map_err(backend_err)?;
    let schema_version: i64 = row.try_get(6).map_err(backend_err)?;
    let exact: Option<&str> = row.try_get(12).map_err(backend_err)?;
    let payload = match exact {
        // Stored beside the JSONB because JSONB could not hold it exactly.
        Some(text) => {
            serde_json::from_str(text).map_err(|e| Error::corrupt(format_args!("payload: {e}")))?
        }
        None => row.try_get::<Json<P>, _>(3).map_err(backend_err)?.0,
    };
    let metadata: BTreeMap<String, String> = json_or_empty(row, 7)?;
    let tags: BTreeSet<String> = json_or_empty(row, 8)?;
    let annotations: BTreeMap<String, String> = json_or_empty(row, 9)?;
    let id: i64 = row.try_get(0).map_err(backend_err)?;
    Ok(Entry {
        id: EntryId::new(id),
        stream: row.try_get(1).map_err(backend_err)?,
        version: version as u64,
        payload,
        order_key: row.try_get(4).map_err(backend_err)?,
        dedup_key: row.try_get(5).map_err(backend_err)?,
        schema_version: schema_version as u32,
        metadata,
        tags,
        annotations,
        created_at: row.try_get(10).map_err(backend_err)?,
        updated_at: row.try_get(11).map_err(backend_err)?,
    })
}
