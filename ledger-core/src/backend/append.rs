//! Deciding an append: dedup and the expected-version check, shared by every backend.
//!
//! A backend looks up the stream's current version and which of the batch's dedup keys already
//! exist (inside its transaction or lock), calls [`plan_append`], writes [`AppendPlan::rows`] and
//! turns the new ids into outcomes with [`AppendPlan::result`]. The database still enforces
//! `(stream, version)` and `(stream, dedup_key)` uniqueness, so a racing writer fails instead of
//! writing twice.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SubsecRound, Utc};

use crate::entry::{AppendInput, AppendOutcome, AppendResult, Entry, EntryId, ExpectedVersion};
use crate::error::{Error, Result};

/// The current time at the precision every store keeps: microseconds.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The distinct dedup keys of a batch, for the backend's lookup of existing ones.
pub fn dedup_keys<P>(inputs: &[AppendInput<P>]) -> Vec<&str> {
    let mut keys: Vec<&str> = inputs
        .iter()
        .filter_map(|i| i.dedup_key.as_deref())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[derive(Debug, Clone)]
enum Slot {
    /// Written as `rows[i]`.
    New(usize),
    /// Duplicate of an entry already stored.
    Stored(EntryId),
    /// Duplicate of `rows[i]`, earlier in this batch.
    Batch(usize),
}

/// What an append will write; see the module docs.
#[derive(Debug, Clone)]
pub struct AppendPlan {
    /// `(input index, version)` of every input to write, in input order.
    pub rows: Vec<(usize, u64)>,
    slots: Vec<Slot>,
    /// The stream's version after the append.
    pub new_version: u64,
}

/// Decides which inputs to write, with which versions, and whether `expected` admits it.
///
/// `current` is the stream's version (0: never written); `stored` maps the batch's dedup keys
/// that already exist in the stream to their entries' ids.
pub fn plan_append<P>(
    stream: &str,
    inputs: &[AppendInput<P>],
    current: u64,
    stored: &HashMap<String, EntryId>,
    expected: ExpectedVersion,
) -> Result<AppendPlan> {
    let mut rows = Vec::with_capacity(inputs.len());
    let mut slots = Vec::with_capacity(inputs.len());
    let mut in_batch: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, input) in inputs.iter().enumerate() {
        let key = input.dedup_key.as_deref();
        let slot = match key {
            Some(k) if stored.contains_key(k) => Slot::Stored(stored[k]),
            Some(k) if in_batch.contains_key(k) => Slot::Batch(in_batch[k]),
            _ => {
                let row = rows.len();
                rows.push((index, current + row as u64 + 1));
                if let Some(k) = key {
                    in_batch.insert(k, row);
                }
                Slot::New(row)
            }
        };
        slots.push(slot);
    }
    // A batch of duplicates only is an idempotent retry: it succeeds whatever `expected` says.
    if !rows.is_empty() && !expected.admits(current) {
        return Err(Error::Conflict {
            stream: stream.to_owned(),
            expected,
            actual: current,
        });
    }
    Ok(AppendPlan {
        new_version: current + rows.len() as u64,
        rows,
        slots,
    })
}

impl AppendPlan {
    /// Moves the plan onto a stream at version `current`, for a plan made against version 0
    /// before the stream's version was known (the database assigned the versions).
    pub fn rebase(&mut self, current: u64) {
        for row in &mut self.rows {
            row.1 += current;
        }
        self.new_version += current;
    }

    /// True if nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The entries as stored, given the ids assigned to [`AppendPlan::rows`] in order: what
    /// an append's change-feed record carries.
    pub fn entries(
        &self,
        stream: &str,
        inputs: &[AppendInput],
        ids: &[EntryId],
        created_at: DateTime<Utc>,
    ) -> Vec<Entry> {
        self.rows
            .iter()
            .zip(ids)
            .map(|(&(index, version), id)| {
                let input = &inputs[index];
                Entry {
                    id: *id,
                    stream: stream.to_owned(),
                    version,
                    payload: input.payload.clone(),
                    order_key: input.order_key.clone(),
                    dedup_key: input.dedup_key.clone(),
                    schema_version: input.schema_version,
                    metadata: input.metadata.clone(),
                    tags: input.tags.clone(),
                    annotations: BTreeMap::new(),
                    created_at,
                    updated_at: None,
                }
            })
            .collect()
    }

    /// The append's result, given the ids assigned to [`AppendPlan::rows`] in order.
    pub fn result(self, ids: &[EntryId]) -> AppendResult {
        assert_eq!(ids.len(), self.rows.len(), "one id per written row");
        let outcomes = self
            .slots
            .into_iter()
            .map(|slot| match slot {
                Slot::New(row) => AppendOutcome::Appended {
                    id: ids[row],
                    version: self.rows[row].1,
                },
                Slot::Stored(id) => AppendOutcome::Duplicate { id },
                Slot::Batch(row) => AppendOutcome::Duplicate { id: ids[row] },
            })
            .collect();
        AppendResult {
            outcomes,
            version: self.new_version,
        }
    }
}

/// Applies annotation changes: `Some` sets a key, `None` deletes it.
pub fn merge_annotations(
    annotations: &mut BTreeMap<String, String>,
    changes: &BTreeMap<String, Option<String>>,
) {
    for (key, value) in changes {
        match value {
            Some(v) => {
                annotations.insert(key.clone(), v.clone());
            }
            None => {
                annotations.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(key: Option<&str>) -> AppendInput {
        let i = AppendInput::new(json!(1));
        match key {
            Some(k) => i.dedup_key(k),
            None => i,
        }
    }

    #[test]
    fn duplicates_in_store_and_batch_are_not_written() {
        let stored = HashMap::from([("a".to_string(), EntryId::new(7))]);
        let inputs = [
            input(Some("a")),
            input(Some("b")),
            input(None),
            input(Some("b")),
        ];
        let plan = plan_append("s", &inputs, 3, &stored, ExpectedVersion::Exact(3)).unwrap();
        assert_eq!(plan.rows, vec![(1, 4), (2, 5)]);
        assert_eq!(plan.new_version, 5);
        let id = EntryId::new;
        assert_eq!(
            plan.result(&[id(10), id(11)]).outcomes,
            vec![
                AppendOutcome::Duplicate { id: id(7) },
                AppendOutcome::Appended {
                    id: id(10),
                    version: 4
                },
                AppendOutcome::Appended {
                    id: id(11),
                    version: 5
                },
                AppendOutcome::Duplicate { id: id(10) },
            ]
        );
    }

    #[test]
    fn all_duplicate_batch_ignores_expected_version() {
        let stored = HashMap::from([("a".to_string(), EntryId::new(1))]);
        let plan = plan_append(
            "s",
            &[input(Some("a"))],
            5,
            &stored,
            ExpectedVersion::NoStream,
        );
        assert!(plan.unwrap().is_empty());
    }

    #[test]
    fn mismatched_expected_version_is_a_conflict() {
        let err = plan_append(
            "s",
            &[input(None)],
            2,
            &HashMap::new(),
            ExpectedVersion::Exact(1),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::Conflict {
                actual: 2,
                expected: ExpectedVersion::Exact(1),
                ..
            }
        ));
    }
}
