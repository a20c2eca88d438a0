//! Entries as ClickHouse rows, in RowBinary: maps as parallel key and value arrays, times as
//! Int64 microseconds since the Unix epoch, the payload as its JSON text.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};

use ledger_core::{AppendInput, Entry, EntryId, Error, Result};

/// The columns a read selects, in [`StoredRow`]'s order.
pub const COLUMNS: &str = "stream, id, version, payload, order_key, dedup_key, schema_version, \
     metadata_keys, metadata_values, tags, annotation_keys, annotation_values, created_at, \
     updated_at, revision";

/// A row as written. `revision` orders the rows of one entry (ReplacingMergeTree keeps the
/// highest): an append writes revision 0, each change of tags or annotations the next one.
#[derive(Debug, Row, Serialize)]
pub struct NewRow<'a> {
    pub stream: &'a str,
    pub id: i64,
    pub version: u64,
    pub payload: &'a str,
    pub order_key: Option<&'a str>,
    pub dedup_key: Option<&'a str>,
    pub schema_version: u32,
    pub metadata_keys: Vec<&'a str>,
    pub metadata_values: Vec<&'a str>,
    pub tags: Vec<&'a str>,
    pub annotation_keys: Vec<&'a str>,
    pub annotation_values: Vec<&'a str>,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub revision: u64,
    /// The payload's string values joined by NUL (which a search text never holds), for
    /// substring search on the server.
    pub search: String,
}

/// A row as read ([`COLUMNS`]).
#[derive(Debug, Clone, Row, Deserialize)]
pub struct StoredRow {
    pub stream: String,
    pub id: i64,
    pub version: u64,
    pub payload: String,
    pub order_key: Option<String>,
    pub dedup_key: Option<String>,
    pub schema_version: u32,
    pub metadata_keys: Vec<String>,
    pub metadata_values: Vec<String>,
    pub tags: Vec<String>,
    pub annotation_keys: Vec<String>,
    pub annotation_values: Vec<String>,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub revision: u64,
}

/// `time` as stored: microseconds since the Unix epoch.
pub fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// A stored time back as a timestamp.
pub fn time(micros: i64, what: impl std::fmt::Display) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::corrupt(format_args!("{what}: {micros} µs is out of range")))
}

/// The text searched for `payload` ([`NewRow::search`]).
pub fn search_text(payload: &serde_json::Value) -> String {
    ledger_core::backend::payload_strings(payload).join("\0")
}

/// Keys and values of `map` as two arrays.
fn split(map: &BTreeMap<String, String>) -> (Vec<&str>, Vec<&str>) {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).unzip()
}

fn join(
    keys: Vec<String>,
    values: Vec<String>,
    what: &str,
    id: i64,
) -> Result<BTreeMap<String, String>> {
    if keys.len() != values.len() {
        return Err(Error::corrupt(format_args!(
            "entry {id}: {} {what} keys but {} values",
            keys.len(),
            values.len()
        )));
    }
    Ok(keys.into_iter().zip(values).collect())
}

impl<'a> NewRow<'a> {
    /// The row of `entry` at `revision`, with `payload` its JSON text.
    pub fn of(entry: &'a Entry, payload: &'a str, revision: u64) -> Self {
        let (metadata_keys, metadata_values) = split(&entry.metadata);
        let (annotation_keys, annotation_values) = split(&entry.annotations);
        NewRow {
            stream: &entry.stream,
            id: entry.id.get(),
            version: entry.version,
            payload,
            order_key: entry.order_key.as_deref(),
            dedup_key: entry.dedup_key.as_deref(),
            schema_version: entry.schema_version,
            metadata_keys,
            metadata_values,
            tags: entry.tags.iter().map(String::as_str).collect(),
            annotation_keys,
            annotation_values,
            created_at: micros(entry.created_at),
            updated_at: entry.updated_at.map(micros),
            revision,
            search: search_text(&entry.payload),
        }
    }
}

impl<'a> NewRow<'a> {
    /// The row an append writes for `input`, with `payload` its JSON text.
    pub fn appended(
        stream: &'a str,
        id: EntryId,
        version: u64,
        input: &'a AppendInput,
        payload: &'a str,
        created_at: i64,
    ) -> Self {
        let (metadata_keys, metadata_values) = split(&input.metadata);
        NewRow {
            stream,
            id: id.get(),
            version,
            payload,
            order_key: input.order_key.as_deref(),
            dedup_key: input.dedup_key.as_deref(),
            schema_version: input.schema_version,
            metadata_keys,
            metadata_values,
            tags: input.tags.iter().map(String::as_str).collect(),
            annotation_keys: Vec::new(),
            annotation_values: Vec::new(),
            created_at,
            updated_at: None,
            revision: 0,
            search: search_text(&input.payload),
        }
    }
}

impl StoredRow {
    /// The entry this row holds, its payload still JSON text.
    pub fn into_entry(self) -> Result<Entry<String>> {
        let id = self.id;
        Ok(Entry {
            id: EntryId::new(id),
            stream: self.stream,
            version: self.version,
            payload: self.payload,
            order_key: self.order_key,
            dedup_key: self.dedup_key,
            schema_version: self.schema_version,
            metadata: join(self.metadata_keys, self.metadata_values, "metadata", id)?,
            tags: self.tags.into_iter().collect::<BTreeSet<_>>(),
            annotations: join(
                self.annotation_keys,
                self.annotation_values,
                "annotation",
                id,
            )?,
            created_at: time(self.created_at, format_args!("created_at of entry {id}"))?,
            updated_at: self
                .updated_at
                .map(|t| time(t, format_args!("updated_at of entry {id}")))
                .transpose()?,
        })
    }
}

/// An entry whose payload is JSON text, with the payload parsed.
pub fn parsed(entry: Entry<String>) -> Result<Entry> {
    let id = entry.id;
    entry.map_payload(|text| {
        serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(format_args!("payload of entry {id}: {e}")))
    })
}

/// An entry whose payload is JSON text, as a raw JSON value (checked, not parsed into values).
pub fn raw(entry: Entry<String>) -> Result<Entry<ledger_core::RawPayload>> {
    let id = entry.id;
    entry.map_payload(|text| {
        serde_json::value::RawValue::from_string(text)
            .map_err(|e| Error::corrupt(format_args!("payload of entry {id}: {e}")))
    })
}
