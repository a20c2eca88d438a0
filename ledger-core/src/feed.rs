//! Change-feed records: one per committed mutation, written in the mutation's transaction, with
//! everything a replica needs to reproduce it exactly.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entry::{Entry, EntryId};

/// One record of a store's change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedRecord {
    /// Position in the feed: ascending, unique in the store.
    pub position: u64,
    /// The stream the mutation touched (for a rename: the old name).
    pub stream: String,
    /// What changed.
    pub mutation: Mutation,
}

/// A committed change to a store, with everything a replica needs to apply it: ids, versions and
/// timestamps as the source stored them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mutation {
    /// Entries were appended (duplicates are not included), every field as stored. Read from
    /// a feed, the entries are as they are now: with later tag and annotation changes (whose
    /// records follow), and without those trimmed since.
    Append {
        /// The entries.
        entries: Vec<Entry>,
        /// The stream's version after the append, which a replica keeps even where the
        /// entries are gone (trimmed since). Records of an older release carry none (0).
        #[serde(default)]
        version: u64,
    },
    /// An entry's tags were replaced.
    SetTags {
        /// The entry.
        id: EntryId,
        /// The entry's version in its stream.
        version: u64,
        /// The new tags.
        tags: BTreeSet<String>,
        /// The entry's new `updated_at`.
        updated_at: DateTime<Utc>,
    },
    /// Annotation changes were merged into an entry.
    SetAnnotations {
        /// The entry.
        id: EntryId,
        /// The entry's version in its stream.
        version: u64,
        /// The changes as given (`None` deletes a key).
        changes: BTreeMap<String, Option<String>>,
        /// The entry's annotations after the merge.
        annotations: BTreeMap<String, String>,
        /// The entry's new `updated_at`.
        updated_at: DateTime<Utc>,
    },
    /// Entries with id `<= up_to` were deleted.
    Trim {
        /// The inclusive bound.
        up_to: EntryId,
        /// How many entries were deleted.
        deleted: u64,
    },
    /// The stream was renamed.
    Rename {
        /// The new name.
        to: String,
    },
}

/// The kinds of [`Mutation`], for filters, skip lists and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MutationKind {
    /// [`Mutation::Append`].
    Append,
    /// [`Mutation::SetTags`].
    SetTags,
    /// [`Mutation::SetAnnotations`].
    SetAnnotations,
    /// [`Mutation::Trim`].
    Trim,
    /// [`Mutation::Rename`].
    Rename,
}

impl MutationKind {
    /// Every kind.
    pub const ALL: [MutationKind; 5] = [
        MutationKind::Append,
        MutationKind::SetTags,
        MutationKind::SetAnnotations,
        MutationKind::Trim,
        MutationKind::Rename,
    ];

    /// The kind's name, as used in metrics and skip lists.
    pub fn as_str(self) -> &'static str {
        match self {
            MutationKind::Append => "append",
            MutationKind::SetTags => "set_tags",
            MutationKind::SetAnnotations => "set_annotations",
            MutationKind::Trim => "trim",
            MutationKind::Rename => "rename",
        }
    }
}

impl std::fmt::Display for MutationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Mutation {
    /// The mutation's kind.
    pub fn kind(&self) -> MutationKind {
        match self {
            Mutation::Append { .. } => MutationKind::Append,
            Mutation::SetTags { .. } => MutationKind::SetTags,
            Mutation::SetAnnotations { .. } => MutationKind::SetAnnotations,
            Mutation::Trim { .. } => MutationKind::Trim,
            Mutation::Rename { .. } => MutationKind::Rename,
        }
    }
}

/// One of the [`Lane::COUNT`] lanes a replicated feed's streams are spread over, so that a
/// bridge can apply several streams at once while each keeps its order: every record of a
/// stream is in the lane of its name.
///
/// A replica keeps a cursor per lane beside the bridge's cursor (see
/// [`crate::Store::apply_replicated_lane`]). The lane of a stream depends on its name alone, the
/// same in every process and release, so progress saved by one bridge means the same to any
/// other, whatever parallelism either runs with.
///
/// ```
/// use ledger_core::Lane;
/// assert_eq!(Lane::of("order-7"), Lane::of("order-7"));
/// assert!(Lane::of("order-7").index() < Lane::COUNT);
/// assert_eq!(Lane::all().count(), Lane::COUNT as usize);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lane(u8);

impl Lane {
    /// How many lanes there are.
    pub const COUNT: u8 = 16;

    /// The lane of `stream`: FNV-1a of its bytes, a hash fixed by its definition.
    pub fn of(stream: &str) -> Lane {
        let hash = stream.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        Lane((hash % u32::from(Lane::COUNT)) as u8)
    }

    /// Every lane, in order.
    pub fn all() -> impl Iterator<Item = Lane> {
        (0..Lane::COUNT).map(Lane)
    }

    /// The lane's number, below [`Lane::COUNT`].
    pub fn index(self) -> u8 {
        self.0
    }

    /// The name of the cursor that keeps this lane's progress beside cursor `name`.
    pub fn cursor(self, name: &str) -> String {
        format!("{name}/lane-{:02}", self.0)
    }

    /// `records` cut for applying lane by lane ([`crate::Store::apply_replicated_lane`]): at
    /// each rename, which moves a stream between lanes and so is applied with every lane once
    /// everything before it is.
    pub fn runs(records: &[FeedRecord]) -> Vec<LaneRun> {
        let mut runs = vec![LaneRun::default()];
        for record in records {
            let run = runs.last_mut().expect("never empty");
            if matches!(record.mutation, Mutation::Rename { .. }) {
                run.rename = Some(record.clone());
                runs.push(LaneRun::default());
            } else {
                run.lanes
                    .entry(Lane::of(&record.stream))
                    .or_default()
                    .push(record.clone());
            }
        }
        runs.retain(|run| !run.lanes.is_empty() || run.rename.is_some());
        runs
    }
}

/// A part of a page to apply by lanes ([`Lane::runs`]): records by lane, each lane's in feed
/// order, then the rename that ends the part, if one does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaneRun {
    /// The records of each lane.
    pub lanes: BTreeMap<Lane, Vec<FeedRecord>>,
    /// The rename after them.
    pub rename: Option<FeedRecord>,
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lane {}", self.0)
    }
}
