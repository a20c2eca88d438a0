//! Options for reading entries and listing streams.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entry::EntryId;
use crate::error::{Error, Result};

/// Default page size of reads and listings.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page size a read or listing accepts.
pub const MAX_LIMIT: u32 = 10_000;

/// Order of a read, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Direction {
    /// Oldest first (the default).
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// Conditions an entry must meet to be read; all given conditions are ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Filter {
    /// Entry's order key equals this.
    pub order_key: Option<String>,
    /// Entry carries this tag.
    pub tag: Option<String>,
    /// Entry carries every one of these tags.
    pub all_tags: Vec<String>,
    /// For each pair, the entry's metadata has the key with exactly this value.
    pub metadata: Vec<(String, String)>,
    /// For each pair, the entry's annotations have the key with exactly this value.
    pub annotations: Vec<(String, String)>,
    /// Entry was created at or after this instant.
    pub created_from: Option<DateTime<Utc>>,
    /// Entry was created strictly before this instant.
    pub created_before: Option<DateTime<Utc>>,
}

/// How to read a stream: cursors, direction, page size and filters.
///
/// ```
/// use ledger_core::{Direction, EntryId, ReadOptions};
/// let opts = ReadOptions::new().after(EntryId::new(41)).descending().limit(10).tag("paid");
/// assert_eq!(opts.direction, Direction::Descending);
/// assert!(opts.validate().is_ok());
/// assert!(ReadOptions::new().limit(0).validate().is_err());
/// // Resume after the last version seen, whatever the ids are:
/// let resume = ReadOptions::new().after_version(7);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReadOptions {
    /// Continue past this id in the read direction (descending: ids below it).
    pub after: Option<EntryId>,
    /// Continue past this version in the read direction (descending: versions below it).
    pub after_version: Option<u64>,
    /// Read order (by id, which within a stream is the order of versions).
    pub direction: Direction,
    /// Page size, 1..=[`MAX_LIMIT`].
    pub limit: u32,
    /// Conditions on the entries read.
    pub filter: Filter,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            after: None,
            after_version: None,
            direction: Direction::Ascending,
            limit: DEFAULT_LIMIT,
            filter: Filter::default(),
        }
    }
}

impl ReadOptions {
    /// Ascending, from the start, [`DEFAULT_LIMIT`] entries, no filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Continues past `id` in the read direction.
    pub fn after(mut self, id: EntryId) -> Self {
        self.after = Some(id);
        self
    }

    /// Continues past `version` in the read direction: in a stream, the entries after the last
    /// version seen (0: from the start). With a cursor id as well, both apply.
    pub fn after_version(mut self, version: u64) -> Self {
        self.after_version = Some(version);
        self
    }

    /// Newest first.
    pub fn descending(mut self) -> Self {
        self.direction = Direction::Descending;
        self
    }

    /// Page size (validated by [`ReadOptions::validate`]).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Only entries with this order key.
    pub fn order_key(mut self, key: impl Into<String>) -> Self {
        self.filter.order_key = Some(key.into());
        self
    }

    /// Only entries with this tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.filter.tag = Some(tag.into());
        self
    }

    /// Only entries with all these tags (adds to earlier calls).
    pub fn all_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.filter
            .all_tags
            .extend(tags.into_iter().map(Into::into));
        self
    }

    /// Only entries whose metadata has `key` = `value` (repeatable, ANDed).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filter.metadata.push((key.into(), value.into()));
        self
    }

    /// Only entries whose annotations have `key` = `value` (repeatable, ANDed).
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filter.annotations.push((key.into(), value.into()));
        self
    }

    /// Only entries created at or after `from`.
    pub fn created_from(mut self, from: DateTime<Utc>) -> Self {
        self.filter.created_from = Some(from);
        self
    }

    /// Only entries created strictly before `before`.
    pub fn created_before(mut self, before: DateTime<Utc>) -> Self {
        self.filter.created_before = Some(before);
        self
    }

    /// Checks the limit; every read is checked before it reaches a backend.
    pub fn validate(&self) -> Result<()> {
        validate_limit(self.limit)
    }

    /// Whether `entry` is past the cursors, in the read direction (the reference semantics).
    pub fn is_past_cursors<P>(&self, entry: &crate::entry::Entry<P>) -> bool {
        let (id, version) = (entry.id, entry.version);
        match self.direction {
            Direction::Ascending => {
                self.after.is_none_or(|a| id > a) && self.after_version.is_none_or(|v| version > v)
            }
            Direction::Descending => {
                self.after.is_none_or(|a| id < a) && self.after_version.is_none_or(|v| version < v)
            }
        }
    }
}

/// How a search matches payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SearchMode {
    /// A string value of the payload, at any depth, contains the text, ignoring ASCII case
    /// ([`payload_contains`]). Every search-capable backend offers it.
    #[default]
    Substring,
    /// Words, with the backend's own text search (PostgreSQL: the `simple` configuration and
    /// web-search syntax). Matching rules differ by backend; see each backend's docs.
    FullText,
}

/// What to search for: a text and how to match it.
///
/// ```
/// use ledger_core::{SearchMode, SearchQuery};
/// assert_eq!(SearchQuery::from("refund").mode, SearchMode::Substring);
/// assert_eq!(SearchQuery::full_text("refund -partial").mode, SearchMode::FullText);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SearchQuery {
    /// The text; not empty, no NUL.
    pub text: String,
    /// How it matches.
    pub mode: SearchMode,
}

impl SearchQuery {
    /// A substring search ([`SearchMode::Substring`]).
    pub fn substring(text: impl Into<String>) -> Self {
        SearchQuery {
            text: text.into(),
            mode: SearchMode::Substring,
        }
    }

    /// A full-text search ([`SearchMode::FullText`]).
    pub fn full_text(text: impl Into<String>) -> Self {
        SearchQuery {
            text: text.into(),
            mode: SearchMode::FullText,
        }
    }

    /// Checks the text: not empty, no NUL (no stored string can be searched for it alike on every
    /// backend).
    pub fn validate(&self) -> Result<()> {
        let text = &self.text;
        if text.is_empty() {
            return Err(Error::InvalidArgument(
                "search text must not be empty".into(),
            ));
        }
        if text.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "search text contains U+0000 (NUL), which cannot be searched for: {text:?}"
            )));
        }
        Ok(())
    }
}

impl From<&str> for SearchQuery {
    fn from(text: &str) -> Self {
        SearchQuery::substring(text)
    }
}

impl From<String> for SearchQuery {
    fn from(text: String) -> Self {
        SearchQuery::substring(text)
    }
}

/// How to list the streams of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListOptions {
    /// Only streams whose id sorts strictly after this one (bytewise).
    pub after: Option<String>,
    /// Page size, 1..=[`MAX_LIMIT`].
    pub limit: u32,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            after: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl ListOptions {
    /// From the start, [`DEFAULT_LIMIT`] streams.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only streams strictly after `stream`.
    pub fn after(mut self, stream: impl Into<String>) -> Self {
        self.after = Some(stream.into());
        self
    }

    /// Page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Checks the limit; every listing is checked before it reaches a backend.
    pub fn validate(&self) -> Result<()> {
        validate_limit(self.limit)
    }
}

fn validate_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::InvalidArgument(format!(
            "limit {limit} is outside 1..={MAX_LIMIT}"
        )));
    }
    Ok(())
}

impl Filter {
    /// Whether `entry` meets every condition (the reference semantics for all stores).
    pub fn matches<P>(&self, entry: &crate::entry::Entry<P>) -> bool {
        self.order_key
            .as_ref()
            .is_none_or(|k| entry.order_key.as_ref() == Some(k))
            && self.tag.as_ref().is_none_or(|t| entry.tags.contains(t))
            && self.all_tags.iter().all(|t| entry.tags.contains(t))
            && self
                .metadata
                .iter()
                .all(|(k, v)| entry.metadata.get(k) == Some(v))
            && self
                .annotations
                .iter()
                .all(|(k, v)| entry.annotations.get(k) == Some(v))
            && self.created_from.is_none_or(|t| entry.created_at >= t)
            && self.created_before.is_none_or(|t| entry.created_at < t)
    }
}

/// Whether a string value of `payload`, at any depth, contains `text`, ignoring ASCII case: the
/// reference semantics of substring search ([`crate::Store::search`]). Object keys, numbers, booleans
/// and JSON punctuation are not searched, so every backend matches alike whatever text its
/// database renders for a payload.
pub fn payload_contains(payload: &serde_json::Value, text: &str) -> bool {
    let needle = text.to_ascii_lowercase();
    crate::backend::payload_strings(payload)
        .into_iter()
        .any(|s| s.to_ascii_lowercase().contains(&needle))
}
