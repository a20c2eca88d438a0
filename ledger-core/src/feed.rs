//! Change-feed records: one per committed mutation, written in the mutation's transaction.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::error::{Error, Result};

/// One record of a store's change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedRecord<Id> {
    /// Position in the feed: ascending, unique in the store.
    pub position: u64,
    /// The stream the mutation touched (for a rename: the old name).
    pub stream: String,
    /// What changed.
    pub mutation: Mutation<Id>,
}

/// A committed change to a store, with everything a replica needs to apply it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Mutation<Id> {
    /// Entries were appended (duplicates are not included).
    Append {
        /// The entries as stored.
        entries: Vec<Entry<Id>>,
    },
    /// An entry's tags were replaced.
    SetTags {
        /// The entry.
        id: Id,
        /// The new tags.
        tags: BTreeSet<String>,
        /// The entry's new `updated_at`.
        updated_at: DateTime<Utc>,
    },
    /// Annotation changes were merged into an entry (`None` deletes a key).
    SetAnnotations {
        /// The entry.
        id: Id,
        /// The changes as given.
        changes: BTreeMap<String, Option<String>>,
        /// The entry's new `updated_at`.
        updated_at: DateTime<Utc>,
    },
    /// Entries with id `<= up_to` were deleted.
    Trim {
        /// The inclusive bound.
        up_to: Id,
        /// How many entries were deleted.
        deleted: u64,
    },
    /// The stream was renamed.
    Rename {
        /// The new name.
        to: String,
    },
}

impl<Id> Mutation<Id> {
    /// The mutation's type name, as used in metrics and skip lists.
    pub fn kind(&self) -> &'static str {
        match self {
            Mutation::Append { .. } => "append",
            Mutation::SetTags { .. } => "set_tags",
            Mutation::SetAnnotations { .. } => "set_annotations",
            Mutation::Trim { .. } => "trim",
            Mutation::Rename { .. } => "rename",
        }
    }
}

impl<Id: serde::de::DeserializeOwned> FeedRecord<Id> {
    /// Rebuilds a record from what a store keeps: its position, stream and the mutation's JSON.
    pub fn from_stored(position: i64, stream: String, mutation: &str) -> Result<Self> {
        let mutation = serde_json::from_str(mutation)
            .map_err(|e| Error::corrupt(format_args!("feed record {position}: {e}")))?;
        Ok(FeedRecord {
            position: position as u64,
            stream,
            mutation,
        })
    }
}

/// A feed position or cursor as the SQL backends store it (`BIGINT`).
pub fn stored_position(position: u64) -> Result<i64> {
    i64::try_from(position).map_err(|_| {
        Error::InvalidArgument(format!(
            "position {position} exceeds the largest, {}",
            i64::MAX
        ))
    })
}
