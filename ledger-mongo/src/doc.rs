//! How entries, streams, feed records and cursors are stored: the collections of a store and
//! their documents.
//!
//! A store named `N` has:
//! - `N`: one document per entry, `_id` its id (see the crate docs for every field);
//! - `N_streams`: one per stream, `_id` its name, with `version`, `last_id` (the highest id it
//!   was given) and `trimmed_to` (the highest bound it was trimmed to): the stream holds entries
//!   exactly while `last_id > trimmed_to`;
//! - `N_feed` (with the change feed): one per record, `_id` its position;
//! - `N_cursors`: one per named cursor, `_id` its name, with `position`;
//! - `N_meta`: counters (`_id: "ids"`, `_id: "feed"`) with the last value taken, `n`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use mongodb::bson::{self, Bson, Document, doc};
use serde_json::Value;

use ledger_core::{AppendInput, Entry, EntryId, Error, Result};

use crate::encode::{self, MAX_BSON_DEPTH};

/// Field names of an entry document.
pub mod field {
    pub const ID: &str = "_id";
    pub const STREAM: &str = "stream";
    pub const VERSION: &str = "version";
    pub const PAYLOAD: &str = "payload";
    pub const PAYLOAD_JSON: &str = "payload_json";
    pub const SEARCH: &str = "search";
    pub const ORDER_KEY: &str = "order_key";
    pub const DEDUP_KEY: &str = "dedup_key";
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const METADATA: &str = "metadata";
    pub const TAGS: &str = "tags";
    pub const ANNOTATIONS: &str = "annotations";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
}

/// The largest document MongoDB stores.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// The collection names of a store.
#[derive(Debug, Clone)]
pub struct Names {
    pub entries: String,
    pub streams: String,
    pub feed: String,
    pub cursors: String,
    pub meta: String,
}

impl Names {
    pub fn new(name: &str) -> Names {
        Names {
            entries: name.to_owned(),
            streams: format!("{name}_streams"),
            feed: format!("{name}_feed"),
            cursors: format!("{name}_cursors"),
            meta: format!("{name}_meta"),
        }
    }
}

pub fn to_datetime(time: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(time.timestamp_millis())
}

fn from_datetime(time: bson::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(time.timestamp_millis())
}

/// A stored integer: servers may hand back `Int32` for what was written as `Int64`.
pub fn int(doc: &Document, key: &str) -> Result<i64> {
    let value = doc.get(key);
    if let Some(n) = value.and_then(integer) {
        return Ok(n);
    }
    match value {
        Some(Bson::Double(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(*f as i64),
        other => Err(Error::corrupt(format_args!(
            "field {key} of {} is {other:?}, not an integer",
            describe(doc)
        ))),
    }
}

/// An integer value, `Int64` or the `Int32` a server may narrow it to.
pub fn integer(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// A stored integer, 0 where the field is missing.
pub fn int_or_zero(doc: &Document, key: &str) -> Result<i64> {
    if doc.contains_key(key) {
        int(doc, key)
    } else {
        Ok(0)
    }
}

fn describe(doc: &Document) -> String {
    match doc.get("_id") {
        Some(id) => format!("document {id}"),
        None => "a document".to_owned(),
    }
}

fn text_map(map: &BTreeMap<String, String>) -> Document {
    map.iter()
        .map(|(k, v)| (encode::escape_key(k), Bson::String(v.clone())))
        .collect()
}

/// Annotations (or metadata) as stored.
pub fn annotations_doc(map: &BTreeMap<String, String>) -> Document {
    text_map(map)
}

/// Tags as stored.
pub fn tags_array(tags: &BTreeSet<String>) -> Bson {
    Bson::Array(tags.iter().cloned().map(Bson::String).collect())
}

/// The document of an entry about to be written, checked against the size MongoDB accepts.
#[allow(clippy::too_many_arguments)]
pub fn entry_doc(
    id: EntryId,
    stream: &str,
    version: u64,
    input: &AppendInput,
    index: usize,
    created_at: DateTime<Utc>,
) -> Result<Document> {
    entry_doc_of(
        id,
        stream,
        version,
        EntryFields {
            payload: &input.payload,
            order_key: input.order_key.as_deref(),
            dedup_key: input.dedup_key.as_deref(),
            schema_version: input.schema_version,
            metadata: &input.metadata,
            tags: &input.tags,
            annotations: &BTreeMap::new(),
            created_at,
            updated_at: None,
        },
    )
    .map_err(|size| {
        Error::InvalidArgument(format!(
            "entry {index} of the batch for stream {stream:?} is {size} bytes as a MongoDB \
             document, more than the {MAX_DOCUMENT_BYTES} MongoDB stores"
        ))
    })
}

/// An entry exactly as another store holds it (replication).
pub fn replicated_doc(entry: &Entry) -> Result<Document> {
    entry_doc_of(
        entry.id,
        &entry.stream,
        entry.version,
        EntryFields {
            payload: &entry.payload,
            order_key: entry.order_key.as_deref(),
            dedup_key: entry.dedup_key.as_deref(),
            schema_version: entry.schema_version,
            metadata: &entry.metadata,
            tags: &entry.tags,
            annotations: &entry.annotations,
            created_at: entry.created_at,
            updated_at: entry.updated_at,
        },
    )
    .map_err(|size| {
        Error::InvalidArgument(format!(
            "replicated entry {} of stream {:?} is {size} bytes as a MongoDB document, more \
             than the {MAX_DOCUMENT_BYTES} MongoDB stores",
            entry.id, entry.stream
        ))
    })
}

struct EntryFields<'a> {
    payload: &'a Value,
    order_key: Option<&'a str>,
    dedup_key: Option<&'a str>,
    schema_version: u32,
    metadata: &'a BTreeMap<String, String>,
    tags: &'a BTreeSet<String>,
    annotations: &'a BTreeMap<String, String>,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
}

/// The document, or its size if MongoDB would refuse it.
fn entry_doc_of(
    id: EntryId,
    stream: &str,
    version: u64,
    fields: EntryFields<'_>,
) -> std::result::Result<Document, usize> {
    let mut doc = doc! {
        field::ID: id.get(),
        field::STREAM: stream,
        field::VERSION: version as i64,
    };
    if encode::depth(fields.payload) > MAX_BSON_DEPTH {
        doc.insert(field::PAYLOAD_JSON, fields.payload.to_string());
    } else {
        doc.insert(field::PAYLOAD, encode::to_bson(fields.payload));
    }
    let search: Vec<Bson> = encode::search_strings(fields.payload)
        .into_iter()
        .map(Bson::String)
        .collect();
    doc.insert(field::SEARCH, search);
    if let Some(key) = fields.order_key {
        doc.insert(field::ORDER_KEY, key);
    }
    if let Some(key) = fields.dedup_key {
        doc.insert(field::DEDUP_KEY, key);
    }
    doc.insert(field::SCHEMA_VERSION, i64::from(fields.schema_version));
    doc.insert(field::METADATA, text_map(fields.metadata));
    doc.insert(field::TAGS, tags_array(fields.tags));
    doc.insert(field::ANNOTATIONS, text_map(fields.annotations));
    doc.insert(field::CREATED_AT, to_datetime(fields.created_at));
    if let Some(updated_at) = fields.updated_at {
        doc.insert(field::UPDATED_AT, to_datetime(updated_at));
    }
    // The size as the driver will send it; an error here would be one of ours, not the input's.
    let size = bson::to_vec(&doc).map(|bytes| bytes.len()).unwrap_or(0);
    // Room for the insert command around the document.
    if size > MAX_DOCUMENT_BYTES - 16 * 1024 {
        return Err(size);
    }
    Ok(doc)
}

/// Reads leave the search strings on the server.
pub fn entry_projection() -> Document {
    doc! { field::SEARCH: 0 }
}

/// The tags of a stored entry document.
pub fn entry_tags(doc: &Document) -> Result<BTreeSet<String>> {
    match doc.get(field::TAGS) {
        None => Ok(BTreeSet::new()),
        Some(Bson::Array(items)) => items
            .iter()
            .map(|t| match t {
                Bson::String(t) => Ok(t.clone()),
                other => Err(Error::corrupt(format_args!(
                    "{}: a tag is {other:?}",
                    describe(doc)
                ))),
            })
            .collect(),
        Some(other) => Err(Error::corrupt(format_args!(
            "{}: tags are {other:?}",
            describe(doc)
        ))),
    }
}

/// The annotations of a stored entry document.
pub fn entry_annotations(doc: &Document) -> Result<BTreeMap<String, String>> {
    text_map_of(doc, field::ANNOTATIONS)
}

/// A map of text stored under `key` (metadata, annotations), keys unescaped.
fn text_map_of(doc: &Document, key: &str) -> Result<BTreeMap<String, String>> {
    let corrupt = |what: String| Error::corrupt(format_args!("{}: {what}", describe(doc)));
    let Some(value) = doc.get(key) else {
        return Ok(BTreeMap::new());
    };
    let Bson::Document(map) = value else {
        return Err(corrupt(format!("{key} is not a document")));
    };
    map.iter()
        .map(|(k, v)| match v {
            Bson::String(v) => Ok((encode::unescape_key(k).map_err(&corrupt)?, v.clone())),
            other => Err(corrupt(format!("{key}.{k} is {other:?}, not a string"))),
        })
        .collect()
}

/// The entry a stored document holds.
pub fn entry_of(doc: &Document) -> Result<Entry> {
    let corrupt = |what: String| Error::corrupt(format_args!("{}: {what}", describe(doc)));
    let text = |key: &str| -> Result<Option<String>> {
        match doc.get(key) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(corrupt(format!("{key} is {other:?}, not a string"))),
        }
    };
    let time = |key: &str| -> Result<Option<DateTime<Utc>>> {
        match doc.get(key) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::DateTime(t)) => from_datetime(*t)
                .map(Some)
                .ok_or_else(|| corrupt(format!("{key} is out of range"))),
            // A date set by `$set` comes back from some MongoDB-wire servers (nx-27017) as its
            // UTC text, `2026-12-02 03:55:59.239000`.
            Some(Bson::String(text)) => {
                chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                    .map(|t| Some(t.and_utc()))
                    .map_err(|_| corrupt(format!("{key} is {text:?}, not a date")))
            }
            Some(other) => Err(corrupt(format!("{key} is {other:?}, not a date"))),
        }
    };
    let payload = match (doc.get(field::PAYLOAD), doc.get(field::PAYLOAD_JSON)) {
        (Some(bson), None) => encode::to_json(bson).map_err(&corrupt)?,
        (None, Some(Bson::String(text))) => serde_json::from_str(text)
            .map_err(|e| corrupt(format!("{}: {e}", field::PAYLOAD_JSON)))?,
        _ => return Err(corrupt("holds no payload".into())),
    };
    let non_negative = |key: &str| -> Result<u64> {
        let n = int(doc, key)?;
        u64::try_from(n).map_err(|_| corrupt(format!("{key} is {n}")))
    };
    Ok(Entry {
        id: EntryId::new(int(doc, field::ID)?),
        stream: text(field::STREAM)?.ok_or_else(|| corrupt("holds no stream".into()))?,
        version: non_negative(field::VERSION)?,
        payload,
        order_key: text(field::ORDER_KEY)?,
        dedup_key: text(field::DEDUP_KEY)?,
        schema_version: u32::try_from(non_negative(field::SCHEMA_VERSION)?)
            .map_err(|_| corrupt("schema_version exceeds u32".into()))?,
        metadata: text_map_of(doc, field::METADATA)?,
        tags: entry_tags(doc)?,
        annotations: entry_annotations(doc)?,
        created_at: time(field::CREATED_AT)?
            .ok_or_else(|| corrupt("holds no created_at".into()))?,
        updated_at: time(field::UPDATED_AT)?,
    })
}
