//! Applying replicated feed records, written once: a backend supplies the storage steps
//! ([`ReplicaTarget`], run inside its transaction where it has one) and [`apply_records`]
//! decides what each record does.
//!
//! A record at or below the saved cursor is skipped, which makes replaying any prefix a no-op.
//! Besides the bridge's cursor, a replica keeps one cursor per [`Lane`]: a bridge applying
//! streams in parallel applies each lane's records on their own (saving that lane's cursor) and
//! saves its cursor once every lane has its part of a page. A record is skipped if it is at or
//! below the bridge's cursor or its lane's, whichever the apply saves, so neither way of
//! applying ever repeats what the other did.
//! Above it, each record is applied so that the replica ends as the source did:
//! - an append raises its stream's version and inserts its entries with their ids, versions and
//!   timestamps, skipping an entry
//!   this store already holds under that id with the same stream and version (a replay), and
//!   refusing one held for another entry ([`BackendErrorKind::Constraint`]: two sources, or
//!   local appends, in one replica);
//! - tags and annotations are set to the state the record carries, on the entry if it is here;
//! - a trim deletes what it deleted at the source (entries with id up to its bound);
//! - a rename moves the stream if it is here and its new name is free.
//!
//! Each applied record is also recorded in the replica's own change feed, if it has one, so
//! replicas can be chained.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::entry::{Entry, EntryId};
use crate::error::{BackendErrorKind, Error, Result};
use crate::feed::{FeedRecord, Lane, Mutation};

/// The storage steps of applying records, on one transaction (or lock) of a backend.
#[async_trait]
pub trait ReplicaTarget: Send {
    /// The position saved under cursor `name`, if any.
    async fn cursor(&mut self, name: &str) -> Result<Option<u64>>;

    /// The positions saved under each of `names`, in order. The default asks one at a time.
    async fn cursors(&mut self, names: &[String]) -> Result<Vec<Option<u64>>> {
        let mut positions = Vec::with_capacity(names.len());
        for name in names {
            positions.push(self.cursor(name).await?);
        }
        Ok(positions)
    }

    /// Saves `position` under cursor `name` (never lower than what is saved).
    async fn save_cursor(&mut self, name: &str, position: u64) -> Result<()>;

    /// `(id, stream, version)` of every entry this store holds under one of `ids`.
    async fn held(&mut self, ids: &[EntryId]) -> Result<Vec<(EntryId, String, u64)>>;

    /// Inserts `entries` exactly as given (so ids this store takes later for appends of its own
    /// come after theirs).
    async fn insert(&mut self, entries: &[Entry]) -> Result<()>;

    /// Raises the version of `stream` to `version`, if it is lower.
    async fn raise_version(&mut self, stream: &str, version: u64) -> Result<()>;

    /// [`ReplicaTarget::raise_version`] for each `(stream, version)` (streams distinct). The
    /// default raises one at a time.
    async fn raise_versions(&mut self, versions: &[(&str, u64)]) -> Result<()> {
        for (stream, version) in versions {
            self.raise_version(stream, *version).await?;
        }
        Ok(())
    }

    /// Sets an entry's tags and `updated_at`; `false` if the entry is not here.
    async fn set_tags(
        &mut self,
        stream: &str,
        id: EntryId,
        tags: &BTreeSet<String>,
        updated_at: DateTime<Utc>,
    ) -> Result<bool>;

    /// Sets an entry's annotations and `updated_at`; `false` if the entry is not here.
    async fn set_annotations(
        &mut self,
        stream: &str,
        id: EntryId,
        annotations: &BTreeMap<String, String>,
        updated_at: DateTime<Utc>,
    ) -> Result<bool>;

    /// Deletes the stream's entries with id `<= up_to`; how many.
    async fn trim(&mut self, stream: &str, up_to: EntryId) -> Result<u64>;

    /// Renames `from` to `to` if `from` exists and `to` does not; `false` otherwise.
    async fn rename(&mut self, from: &str, to: &str) -> Result<bool>;

    /// Records `mutation` in this store's change feed (nothing without one).
    async fn record(&mut self, stream: &str, mutation: &Mutation) -> Result<()>;
}

/// Applies the records above the saved cursors to `target`, then saves the cursor the apply
/// keeps at the last record's position: with `lane` `None`, cursor `cursor`, and every record is
/// skipped that is at or below it or its lane's cursor; with a lane, that lane's cursor, and
/// every record (all of that lane) is skipped that is at or below it or `cursor`. Returns how
/// many records were applied (even where there was nothing left to change). On an error, the
/// caller's transaction (if any) must be rolled back.
pub async fn apply_records(
    target: &mut dyn ReplicaTarget,
    cursor: &str,
    lane: Option<Lane>,
    records: &[FeedRecord],
) -> Result<u64> {
    let lanes: Vec<Lane> = match lane {
        Some(lane) => vec![lane],
        None => Lane::all().collect(),
    };
    let mut names = vec![cursor.to_owned()];
    names.extend(lanes.iter().map(|l| l.cursor(cursor)));
    let saved = target.cursors(&names).await?;
    let main = saved[0].unwrap_or(0);
    // With a lane given, every record is of it (the store checks).
    let lane_floor = |stream: &str| -> u64 {
        let index = if lane.is_some() {
            0
        } else {
            usize::from(Lane::of(stream).index())
        };
        saved[1 + index].unwrap_or(0)
    };
    let pending: Vec<&FeedRecord> = records
        .iter()
        .filter(|r| r.position > main.max(lane_floor(&r.stream)))
        .collect();
    let mut rest = pending.as_slice();
    while let Some(first) = rest.first() {
        if matches!(first.mutation, Mutation::Append { .. }) {
            // A run of appends takes one lookup and one insert, whatever its length.
            let run = rest
                .iter()
                .position(|r| !matches!(r.mutation, Mutation::Append { .. }))
                .unwrap_or(rest.len());
            apply_appends(target, &rest[..run]).await?;
            rest = &rest[run..];
        } else {
            apply_one(target, first).await?;
            rest = &rest[1..];
        }
    }
    let applied = pending.len() as u64;
    // Every record here is applied now, or was before (those the floors skipped).
    let (name, kept) = match lane {
        Some(lane) => (lane.cursor(cursor), saved[1].unwrap_or(0)),
        None => (cursor.to_owned(), main),
    };
    if let Some(last) = records.last().filter(|r| r.position > kept) {
        target.save_cursor(&name, last.position).await?;
    }
    Ok(applied)
}

/// Applies a run of append records: entries this store holds under the same id, stream and
/// version are replays and skipped; an id held for another entry is refused.
async fn apply_appends(target: &mut dyn ReplicaTarget, run: &[&FeedRecord]) -> Result<()> {
    fn entries_of<'r>(record: &&'r FeedRecord) -> (&'r [Entry], u64) {
        match &record.mutation {
            Mutation::Append { entries, version } => (entries.as_slice(), *version),
            _ => (&[], 0),
        }
    }
    let ids: Vec<EntryId> = run
        .iter()
        .flat_map(|r| entries_of(r).0.iter().map(|e| e.id))
        .collect();
    let mut known: HashMap<EntryId, (String, u64)> = target
        .held(&ids)
        .await?
        .into_iter()
        .map(|(id, stream, version)| (id, (stream, version)))
        .collect();
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut appended = Vec::with_capacity(run.len());
    for record in run {
        let (entries, version) = entries_of(record);
        let mut fresh = Vec::with_capacity(entries.len());
        for entry in entries {
            match known.get(&entry.id) {
                Some((s, v)) if *s == entry.stream && *v == entry.version => {}
                Some((s, v)) => {
                    return Err(Error::backend(
                        BackendErrorKind::Constraint,
                        format!(
                            "replicated entry {} ({}@{}) collides with the entry this store \
                             holds under that id ({s}@{v}): does another source, or an \
                             append of its own, write into this replica?",
                            entry.id, entry.stream, entry.version
                        ),
                    ));
                }
                None => {
                    known.insert(entry.id, (entry.stream.clone(), entry.version));
                    fresh.push(entry.clone());
                }
            }
        }
        // Records of an older release carry no version: their entries tell it.
        let highest = entries.iter().map(|e| e.version).max().unwrap_or(0);
        let raised = versions.entry(record.stream.as_str()).or_default();
        *raised = (*raised).max(version).max(highest);
        appended.push((record.stream.as_str(), fresh, version));
    }
    // The versions first: the entries may be gone (trimmed) at the source, the versions not.
    let versions: Vec<(&str, u64)> = versions.into_iter().collect();
    target.raise_versions(&versions).await?;
    let fresh: Vec<Entry> = appended
        .iter()
        .flat_map(|(_, fresh, _)| fresh.iter().cloned())
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    target.insert(&fresh).await?;
    for (stream, entries, version) in appended {
        if !entries.is_empty() {
            target
                .record(stream, &Mutation::Append { entries, version })
                .await?;
        }
    }
    Ok(())
}

/// Applies one record other than an append; `false` if it found nothing to change here.
async fn apply_one(target: &mut dyn ReplicaTarget, record: &FeedRecord) -> Result<bool> {
    let stream = record.stream.as_str();
    match &record.mutation {
        Mutation::Append { .. } => {
            apply_appends(target, &[record]).await?;
            Ok(true)
        }
        Mutation::SetTags {
            id,
            tags,
            updated_at,
            ..
        } => {
            let done = target.set_tags(stream, *id, tags, *updated_at).await?;
            if done {
                target.record(stream, &record.mutation).await?;
            }
            Ok(done)
        }
        Mutation::SetAnnotations {
            id,
            annotations,
            updated_at,
            ..
        } => {
            let done = target
                .set_annotations(stream, *id, annotations, *updated_at)
                .await?;
            if done {
                target.record(stream, &record.mutation).await?;
            }
            Ok(done)
        }
        Mutation::Trim { up_to, .. } => {
            let deleted = target.trim(stream, *up_to).await?;
            if deleted > 0 {
                let trim = Mutation::Trim {
                    up_to: *up_to,
                    deleted,
                };
                target.record(stream, &trim).await?;
            }
            Ok(deleted > 0)
        }
        Mutation::Rename { to } => {
            let done = target.rename(stream, to).await?;
            if done {
                target.record(stream, &record.mutation).await?;
            }
            Ok(done)
        }
    }
}
