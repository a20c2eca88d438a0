//! Deciding an append: validation, dedup and the expected-version check, shared by every store.
//!
//! A backend looks up the stream's current version and which of the batch's dedup keys already
//! exist (inside its transaction or lock), calls [`plan_append`], writes [`AppendPlan::rows`] and
//! turns the new ids into outcomes with [`AppendPlan::outcomes`]. The database still enforces
//! `(stream, version)` and `(stream, dedup_key)` uniqueness, so a racing writer fails instead of
//! writing twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, SubsecRound, Utc};

use crate::entry::{AppendInput, AppendOutcome, Entry, ExpectedVersion};
use crate::error::{Error, Result};
use crate::name::validate_stream_id;

/// The current time at the precision every store keeps: microseconds.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Deepest nesting of arrays and objects a payload may have. serde_json reads JSON at most 128
/// levels deep, and the records that carry a payload (a change-feed record) wrap it in a few
/// more, so a deeper payload could be stored but never read back: appends refuse it.
pub const MAX_PAYLOAD_DEPTH: usize = 100;

/// [`Error::InvalidArgument`] if `payload` nests arrays and objects deeper than
/// [`MAX_PAYLOAD_DEPTH`]. Iterative, so no payload is too deep to check.
pub fn validate_payload(payload: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    // (container, its depth): scalars add no depth.
    let mut pending = vec![(payload, 1)];
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(Error::InvalidArgument(format!(
                "payload nests arrays and objects more than {MAX_PAYLOAD_DEPTH} levels deep, \
                 which cannot be read back"
            )));
        }
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    Ok(())
}

/// Checks one input: schema version at least 1, keys not empty, no NUL in stored text.
pub fn validate_input<P>(input: &AppendInput<P>) -> Result<()> {
    if input.schema_version == 0 {
        return Err(Error::InvalidArgument(
            "schema version 0 is invalid; versions start at 1".into(),
        ));
    }
    if input.dedup_key.as_deref() == Some("") {
        return Err(Error::InvalidArgument(
            "dedup key must not be empty (use None for no key)".into(),
        ));
    }
    if input.order_key.as_deref() == Some("") {
        return Err(Error::InvalidArgument(
            "order key must not be empty (use None for no key)".into(),
        ));
    }
    let keys = input.order_key.iter().chain(&input.dedup_key);
    let metadata = input.metadata.iter().flat_map(|(k, v)| [k, v]);
    keys.chain(metadata)
        .try_for_each(|text| no_nul("a key or metadata", text))?;
    validate_tags(&input.tags)
}

/// Text that databases store as text (keys, metadata, tags, annotations) must not contain NUL,
/// which PostgreSQL and others cannot store. Payload strings may (they are JSON-escaped).
fn no_nul(what: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{what} contains U+0000 (NUL), which cannot be stored: {text:?}"
        )));
    }
    Ok(())
}

/// Checks tags for [`crate::Store::set_tags`] and appends: no NUL.
pub fn validate_tags(tags: &BTreeSet<String>) -> Result<()> {
    tags.iter().try_for_each(|t| no_nul("a tag", t))
}

/// Checks changes for [`crate::Store::set_annotations`]: no NUL in keys or values.
pub fn validate_annotations(changes: &BTreeMap<String, Option<String>>) -> Result<()> {
    changes
        .iter()
        .flat_map(|(k, v)| std::iter::once(k).chain(v))
        .try_for_each(|text| no_nul("an annotation", text))
}

/// Checks a stream id and every input of a batch (payloads included), before any database work.
pub fn validate_append(stream: &str, inputs: &[AppendInput]) -> Result<()> {
    validate_stream_id(stream)?;
    inputs.iter().try_for_each(|input| {
        validate_input(input)?;
        validate_payload(&input.payload)
    })
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
enum Slot<Id> {
    /// Written as `rows[i]`.
    New(usize),
    /// Duplicate of an entry already stored.
    Stored(Id),
    /// Duplicate of `rows[i]`, earlier in this batch.
    Batch(usize),
}

/// What an append will write; see the module docs.
#[derive(Debug, Clone)]
pub struct AppendPlan<Id> {
    /// `(input index, version)` of every input to write, in input order.
    pub rows: Vec<(usize, u64)>,
    slots: Vec<Slot<Id>>,
    /// The stream's version after the append.
    pub new_version: u64,
}

/// Decides which inputs to write, with which versions, and whether `expected` admits it.
///
/// `current` is the stream's version (0: never written); `stored` maps the batch's dedup keys
/// that already exist in the stream to their entries' ids.
pub fn plan_append<Id: Clone, P>(
    stream: &str,
    inputs: &[AppendInput<P>],
    current: u64,
    stored: &HashMap<String, Id>,
    expected: ExpectedVersion,
) -> Result<AppendPlan<Id>> {
    let mut rows = Vec::with_capacity(inputs.len());
    let mut slots = Vec::with_capacity(inputs.len());
    let mut in_batch: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, input) in inputs.iter().enumerate() {
        let key = input.dedup_key.as_deref();
        let slot = match key {
            Some(k) if stored.contains_key(k) => Slot::Stored(stored[k].clone()),
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

impl<Id: Clone> AppendPlan<Id> {
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
        ids: &[Id],
        created_at: DateTime<Utc>,
    ) -> Vec<Entry<Id>> {
        self.rows
            .iter()
            .zip(ids)
            .map(|(&(index, version), id)| {
                let input = &inputs[index];
                Entry {
                    id: id.clone(),
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

    /// One outcome per input, given the ids assigned to [`AppendPlan::rows`] in order.
    pub fn outcomes(self, ids: &[Id]) -> Vec<AppendOutcome<Id>> {
        assert_eq!(ids.len(), self.rows.len(), "one id per written row");
        self.slots
            .into_iter()
            .map(|slot| match slot {
                Slot::New(row) => AppendOutcome::Appended {
                    id: ids[row].clone(),
                    version: self.rows[row].1,
                },
                Slot::Stored(id) => AppendOutcome::Duplicate { id },
                Slot::Batch(row) => AppendOutcome::Duplicate {
                    id: ids[row].clone(),
                },
            })
            .collect()
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
        let stored = HashMap::from([("a".to_string(), 7i64)]);
        let inputs = [
            input(Some("a")),
            input(Some("b")),
            input(None),
            input(Some("b")),
        ];
        let plan = plan_append("s", &inputs, 3, &stored, ExpectedVersion::Exact(3)).unwrap();
        assert_eq!(plan.rows, vec![(1, 4), (2, 5)]);
        assert_eq!(plan.new_version, 5);
        assert_eq!(
            plan.outcomes(&[10, 11]),
            vec![
                AppendOutcome::Duplicate { id: 7 },
                AppendOutcome::Appended { id: 10, version: 4 },
                AppendOutcome::Appended { id: 11, version: 5 },
                AppendOutcome::Duplicate { id: 10 },
            ]
        );
    }

    #[test]
    fn all_duplicate_batch_ignores_expected_version() {
        let stored = HashMap::from([("a".to_string(), 1i64)]);
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
        let err = plan_append::<i64, _>(
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

    #[test]
    fn empty_keys_and_schema_version_zero_are_rejected() {
        assert!(validate_input(&input(Some(""))).is_err());
        assert!(validate_input(&AppendInput::new(json!(1)).schema_version(0)).is_err());
        assert!(validate_input(&AppendInput::new(json!(1)).order_key("")).is_err());
    }
}
