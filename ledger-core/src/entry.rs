//! What a store holds: entries, what goes into an append and what comes out of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// A payload as its JSON text, unparsed: what [`crate::Store::read_json`] returns, for
/// decoders that go straight to their own types and for passing payloads through.
pub type RawPayload = Box<serde_json::value::RawValue>;

/// The id of an entry: unique in its store, assigned by the store at append, ascending within a
/// stream in the order of versions.
///
/// Every backend uses the same representation, a 64-bit integer, so that one
/// [`crate::Store`] type holds any backend, a replica keeps its source's ids whatever the two
/// backends are, and cursors compare as numbers (never as text). Ids travel as decimal strings
/// ([`fmt::Display`], [`FromStr`]) and as JSON numbers.
///
/// ```
/// use ledger_core::EntryId;
/// let id: EntryId = "42".parse()?;
/// assert_eq!(id, EntryId::new(42));
/// assert!(EntryId::new(9) < EntryId::new(10));
/// assert!("4x".parse::<EntryId>().is_err());
/// # Ok::<(), ledger_core::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct EntryId(i64);

impl EntryId {
    /// The id with this number.
    pub const fn new(id: i64) -> Self {
        EntryId(id)
    }

    /// The id's number.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for EntryId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        text.parse().map(EntryId).map_err(|_| {
            Error::InvalidArgument(format!("entry id {text:?} is not a decimal 64-bit integer"))
        })
    }
}

impl From<i64> for EntryId {
    fn from(id: i64) -> Self {
        EntryId(id)
    }
}

/// One stored entry: the payload as JSON from a [`crate::Store`], decoded (and upcast) from a
/// typed [`crate::Stream`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry<P = Value> {
    /// Store-assigned id, unique in the store; ascending ids within a stream are ascending versions.
    pub id: EntryId,
    /// The stream the entry belongs to.
    pub stream: String,
    /// Per-stream sequence number: 1, 2, 3 … without gaps at append time.
    pub version: u64,
    /// The payload.
    pub payload: P,
    /// Optional filterable key (an aggregate or customer id, say).
    pub order_key: Option<String>,
    /// Optional idempotency key, unique among the stream's entries.
    pub dedup_key: Option<String>,
    /// Schema version stamped at append; drives upcasting on read.
    pub schema_version: u32,
    /// Immutable key/value pairs given at append.
    pub metadata: BTreeMap<String, String>,
    /// Mutable set of tags (see [`crate::Store::set_tags`]).
    pub tags: BTreeSet<String>,
    /// Mutable key/value annotations (see [`crate::Store::set_annotations`]).
    pub annotations: BTreeMap<String, String>,
    /// When the entry was appended (UTC, at the store's precision:
    /// [`crate::Capabilities::timestamp_precision`]).
    pub created_at: DateTime<Utc>,
    /// When tags or annotations last changed; `None` until they first do.
    pub updated_at: Option<DateTime<Utc>>,
}

impl<P> Entry<P> {
    /// The same entry with its payload replaced by `f(payload)`.
    pub fn map_payload<Q, E>(self, f: impl FnOnce(P) -> Result<Q, E>) -> Result<Entry<Q>, E> {
        Ok(Entry {
            payload: f(self.payload)?,
            id: self.id,
            stream: self.stream,
            version: self.version,
            order_key: self.order_key,
            dedup_key: self.dedup_key,
            schema_version: self.schema_version,
            metadata: self.metadata,
            tags: self.tags,
            annotations: self.annotations,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// One entry to append: a JSON payload for a [`crate::Store`], a typed one for a
/// [`crate::Stream`].
///
/// ```
/// use ledger_core::AppendInput;
/// let input = AppendInput::new(serde_json::json!({"sku": "A-1"}))
///     .order_key("customer-7")
///     .dedup_key("request-42")
///     .metadata("source", "checkout")
///     .tag("priority");
/// assert_eq!(input.schema_version, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendInput<P = Value> {
    /// The payload.
    pub payload: P,
    /// Optional filterable key.
    pub order_key: Option<String>,
    /// Optional idempotency key: an input whose key already exists in the stream (or earlier in
    /// the same batch) is not written and is reported as [`AppendOutcome::Duplicate`].
    pub dedup_key: Option<String>,
    /// Schema version of the payload, at least 1.
    pub schema_version: u32,
    /// Immutable key/value pairs.
    pub metadata: BTreeMap<String, String>,
    /// Initial tags.
    pub tags: BTreeSet<String>,
}

impl<P> AppendInput<P> {
    /// An input with this payload, schema version 1 and nothing else set.
    pub fn new(payload: P) -> Self {
        AppendInput {
            payload,
            order_key: None,
            dedup_key: None,
            schema_version: 1,
            metadata: BTreeMap::new(),
            tags: BTreeSet::new(),
        }
    }

    /// Sets the order key.
    pub fn order_key(mut self, key: impl Into<String>) -> Self {
        self.order_key = Some(key.into());
        self
    }

    /// Sets the dedup key.
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    /// Sets the schema version.
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Adds one metadata pair.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds one tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.insert(tag.into());
        self
    }

    /// The same input with its payload replaced by `f(payload)`.
    pub fn map_payload<Q, E>(self, f: impl FnOnce(P) -> Result<Q, E>) -> Result<AppendInput<Q>, E> {
        Ok(AppendInput {
            payload: f(self.payload)?,
            order_key: self.order_key,
            dedup_key: self.dedup_key,
            schema_version: self.schema_version,
            metadata: self.metadata,
            tags: self.tags,
        })
    }
}

/// What happened to one input of an append, in input order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// The input was written with this id and version.
    Appended {
        /// The new entry's id.
        id: EntryId,
        /// The new entry's version in its stream.
        version: u64,
    },
    /// The input's dedup key was already taken; nothing was written.
    Duplicate {
        /// The id of the entry that holds the key (possibly written earlier in the same batch).
        id: EntryId,
    },
}

impl AppendOutcome {
    /// The id of the entry this input maps to, new or existing.
    pub fn id(&self) -> EntryId {
        match self {
            AppendOutcome::Appended { id, .. } | AppendOutcome::Duplicate { id } => *id,
        }
    }

    /// True if the input was written.
    pub fn is_appended(&self) -> bool {
        matches!(self, AppendOutcome::Appended { .. })
    }
}

/// What an append did: one outcome per input, and the stream's version afterwards.
///
/// ```
/// use ledger_core::{AppendInput, ExpectedVersion, MemoryStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ledger_core::Result<()> {
/// let store = MemoryStore::new();
/// let first = store.append("s", vec![AppendInput::new(serde_json::json!(1))], ExpectedVersion::NoStream).await?;
/// // The next append of this writer expects the version the first one left.
/// let second = store.append("s", vec![AppendInput::new(serde_json::json!(2))], first.next_expected()).await?;
/// assert_eq!(second.version, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// One outcome per input, in input order.
    pub outcomes: Vec<AppendOutcome>,
    /// The stream's version after the append (0 for a stream that still was never written).
    pub version: u64,
}

impl AppendResult {
    /// What the next append of a writer that saw this result should expect.
    pub fn next_expected(&self) -> ExpectedVersion {
        ExpectedVersion::Exact(self.version)
    }

    /// `(id, version)` of every input that was written, in input order.
    pub fn appended(&self) -> impl Iterator<Item = (EntryId, u64)> + '_ {
        self.outcomes.iter().filter_map(|o| match *o {
            AppendOutcome::Appended { id, version } => Some((id, version)),
            AppendOutcome::Duplicate { .. } => None,
        })
    }

    /// The id every input maps to (new or existing), in input order.
    pub fn ids(&self) -> Vec<EntryId> {
        self.outcomes.iter().map(AppendOutcome::id).collect()
    }
}

/// The condition an append places on the stream's current version.
///
/// The stream's version is the highest version ever appended to it: trimming does not reset it,
/// so a stream that was written and then fully trimmed still "exists" for these checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No condition.
    #[default]
    Any,
    /// The stream must never have been written.
    NoStream,
    /// The stream must have been written at least once.
    StreamExists,
    /// The stream must be at exactly this version (0 is the same as `NoStream`).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at version `actual` (0: never written) satisfies this condition.
    pub fn admits(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::StreamExists => actual > 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Summary of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStat {
    /// The stream.
    pub stream: String,
    /// How many entries it holds now.
    pub count: u64,
    /// Lowest id held, if any.
    pub first_id: Option<EntryId>,
    /// Highest id held, if any.
    pub last_id: Option<EntryId>,
    /// Highest version ever appended (0: never written); survives trimming.
    pub last_version: u64,
}
