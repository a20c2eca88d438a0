//! Change-feed records as backends keep them: an append names its entries by id instead of
//! copying them (so the feed costs a writer a few bytes per append, not every payload twice), and
//! reading the feed joins the entries back.
//!
//! What a joined append record holds is the entries as they are when the feed is read: their
//! current tags, annotations and `updated_at` (later changes have records of their own, after
//! this one), under the stream the append wrote to (a later rename has its own record), and
//! none that a trim has deleted since. Its `version` is always the stream's version right after
//! the append, so a replica keeps it even where no entry is left.

use std::collections::HashMap;

use crate::entry::{Entry, EntryId};
use crate::error::{Error, Result};
use crate::feed::{FeedRecord, Mutation};

/// One stored change-feed record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// Its position.
    pub position: u64,
    /// The stream it touched.
    pub stream: String,
    /// What changed.
    pub change: StoredChange,
}

/// What a stored record keeps of its mutation.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredChange {
    /// An append: its entries' ids and the stream's version after it.
    Append {
        /// The appended entries' ids, ascending.
        ids: Vec<EntryId>,
        /// The stream's version after the append.
        version: u64,
    },
    /// Any other mutation, whole (and appends recorded by an older release, entries included).
    Whole(Mutation),
}

impl StoredChange {
    /// How `mutation` is stored.
    pub fn of(mutation: &Mutation) -> StoredChange {
        match mutation {
            Mutation::Append { entries, version } => StoredChange::Append {
                ids: entries.iter().map(|e| e.id).collect(),
                version: *version,
            },
            other => StoredChange::Whole(other.clone()),
        }
    }

    /// A stored row's change: `mutation` (JSON text) if the row has one, else an append of
    /// `ids` at `version`.
    pub fn from_row(
        position: i64,
        mutation: Option<&str>,
        ids: Vec<EntryId>,
        version: Option<i64>,
    ) -> Result<StoredChange> {
        match (mutation, version) {
            (Some(text), _) => serde_json::from_str(text)
                .map(StoredChange::Whole)
                .map_err(|e| Error::corrupt(format_args!("feed record {position}: {e}"))),
            (None, Some(version)) => Ok(StoredChange::Append {
                ids,
                version: version as u64,
            }),
            (None, None) => Err(Error::corrupt(format_args!(
                "feed record {position} holds neither a mutation nor an append"
            ))),
        }
    }
}

/// The ids of every append among `records`, to fetch their entries in one read.
pub fn appended_ids(records: &[StoredRecord]) -> Vec<EntryId> {
    records
        .iter()
        .flat_map(|r| match &r.change {
            StoredChange::Append { ids, .. } => ids.as_slice(),
            StoredChange::Whole(_) => &[],
        })
        .copied()
        .collect()
}

/// The records, with each append's entries taken from `entries` (those not there were trimmed
/// since), as the module docs describe.
pub fn join_entries(records: Vec<StoredRecord>, entries: Vec<Entry>) -> Vec<FeedRecord> {
    let mut by_id: HashMap<EntryId, Entry> = entries.into_iter().map(|e| (e.id, e)).collect();
    records
        .into_iter()
        .map(|record| {
            let mutation = match record.change {
                StoredChange::Whole(mutation) => mutation,
                StoredChange::Append { ids, version } => Mutation::Append {
                    entries: ids
                        .iter()
                        .filter_map(|id| by_id.remove(id))
                        .map(|e| Entry {
                            stream: record.stream.clone(),
                            ..e
                        })
                        .collect(),
                    version,
                },
            };
            FeedRecord {
                position: record.position,
                stream: record.stream,
                mutation,
            }
        })
        .collect()
}

/// `ids` (ascending) as runs of consecutive ids, `[first, last]` each: an append's ids in a few
/// numbers (one run, for the appends of a store whose ids of a batch are consecutive).
pub fn id_runs(ids: &[EntryId]) -> Vec<[i64; 2]> {
    let mut runs: Vec<[i64; 2]> = Vec::new();
    for id in ids.iter().map(|id| id.get()) {
        match runs.last_mut() {
            Some(run) if run[1].checked_add(1) == Some(id) => run[1] = id,
            _ => runs.push([id, id]),
        }
    }
    runs
}

/// The ids that runs stand for, or what makes them unreadable: runs must be ascending and
/// apart, each `[first, last]` with `first <= last`.
pub fn expand_runs(runs: &[[i64; 2]]) -> std::result::Result<Vec<EntryId>, String> {
    let mut ids = Vec::new();
    let mut previous: Option<i64> = None;
    for &[first, last] in runs {
        if first > last || previous.is_some_and(|p| first <= p) {
            return Err(format!("run [{first}, {last}] is out of order"));
        }
        ids.extend((first..=last).map(EntryId::new));
        previous = Some(last);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_runs() {
        let ids: Vec<EntryId> = [1, 2, 3, 7, 9, 10].into_iter().map(EntryId::new).collect();
        let runs = id_runs(&ids);
        assert_eq!(runs, [[1, 3], [7, 7], [9, 10]]);
        assert_eq!(expand_runs(&runs), Ok(ids));
        assert!(id_runs(&[]).is_empty());
    }

    #[test]
    fn runs_out_of_order_are_refused() {
        assert!(expand_runs(&[[3, 1]]).is_err());
        assert!(expand_runs(&[[1, 3], [3, 4]]).is_err());
        assert!(expand_runs(&[[5, 6], [1, 2]]).is_err());
    }
}
