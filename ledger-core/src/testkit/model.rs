//! Model-based property test: random operation sequences against a backend and `MemoryStore`.
//!
//! Each case opens a fresh backend store and a fresh [`MemoryStore`], applies the same generated
//! operations to both, and requires every observable result to be the same: `Ok` values equal
//! after normalisation, or errors of the same variant. A case ends by comparing the whole state
//! (every stream read in full, its stat, the stream list and the whole change feed), so a
//! divergence that no generated read happened to look at is still caught.
//!
//! Normalisation, because some things legitimately differ between stores:
//! - ids may differ between backends, so every id is replaced by its ordinal: the order in which
//!   appends assigned it (each side keeps its own list; an id a side never assigned becomes -1).
//!   Generated operations refer to ids by ordinal too, so both sides get the corresponding id.
//! - `created_at` and `updated_at` come from different clocks: only whether `updated_at` is set
//!   is compared (timestamps are pinned to the Unix epoch).
//! - feed positions may have gaps, so each record's position is replaced by its ordinal in the
//!   feed; a position that disagrees with the one seen earlier for that ordinal, or does not
//!   ascend, shows up as a mismatch.
//!
//! Operations a store's [`Capabilities`] exclude are skipped on both sides; without dedup, inputs
//! carry no dedup key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{Value, json};

use super::StoreFactory;
use crate::capabilities::Capabilities;
use crate::entry::{AppendInput, AppendOutcome, Entry, EntryId, ExpectedVersion, StreamStat};
use crate::error::Error;
use crate::feed::{FeedRecord, Mutation};
use crate::memory::MemoryStore;
use crate::read::{Direction, Filter, ListOptions, MAX_LIMIT, ReadOptions};
use crate::store::Store;

/// Cases per run, unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 24;

/// Stream names. Bytewise order ("Cart-2" < "cart-1" < "kärra-流") differs from most collations.
const STREAMS: [&str; 3] = ["cart-1", "Cart-2", "kärra-流"];
const DEDUP_KEYS: [&str; 4] = ["d1", "d2", "d3", "d4"];
const ORDER_KEYS: [&str; 2] = ["customer-7", "customer-8"];
const TAGS: [&str; 3] = ["red", "green", "blue"];
const METADATA_KEYS: [&str; 2] = ["source", "region"];
const METADATA_VALUES: [&str; 2] = ["web", "eu"];
const ANNOTATION_KEYS: [&str; 2] = ["note", "owner"];
const ANNOTATION_VALUES: [&str; 2] = ["x", "y"];

/// Runs the model test: about 24 random operation sequences against a fresh store from `factory`
/// and a fresh [`MemoryStore`] each, shrinking the first failing sequence to a minimal one.
///
/// Builds its own runtime, so it is called from a plain `#[test]`.
pub fn check<F: StoreFactory>(factory: &F) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let config = Config {
        cases,
        failure_persistence: None,
        // Each shrink step replays a case on the backend; bound the time a failure can take.
        max_shrink_iters: 512,
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime starts");
    let mut runner = TestRunner::new(config);
    let result = runner.run(&vec(op(), 1..40), |ops| {
        runtime.block_on(run_case(factory, &ops))
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => {
            let listing: String = ops
                .iter()
                .enumerate()
                .map(|(i, op)| format!("  {i:>2}: {op:?}\n"))
                .collect();
            panic!(
                "the store differs from MemoryStore: {reason}\n\
                 minimal operation sequence:\n{listing}"
            );
        }
        Err(TestError::Abort(reason)) => panic!("model test aborted: {reason}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Generated operations

/// An id chosen among those assigned so far (by ordinal), and the stream to address it in.
#[derive(Debug, Clone)]
struct Target {
    id: Index,
    /// `None`: the stream that holds the id now (or held it before it was trimmed).
    stream: Option<&'static str>,
}

/// One generated operation; ids are picked among those assigned when it runs.
#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: &'static str,
        inputs: Vec<AppendInput>,
        expected: ExpectedVersion,
    },
    Read {
        stream: &'static str,
        direction: Direction,
        limit: u32,
        after: Option<Index>,
        after_version: Option<u64>,
        filter: Filter,
    },
    Count {
        stream: &'static str,
    },
    Stat {
        stream: &'static str,
    },
    ListStreams {
        after: Option<&'static str>,
        limit: u32,
    },
    SetTags {
        target: Target,
        tags: BTreeSet<String>,
    },
    SetAnnotations {
        target: Target,
        changes: BTreeMap<String, Option<String>>,
    },
    Trim {
        target: Target,
    },
    Rename {
        from: &'static str,
        to: &'static str,
    },
    ReadFeed {
        after: Option<Index>,
        limit: u32,
    },
}

fn stream() -> impl Strategy<Value = &'static str> {
    select(&STREAMS[..])
}

fn strings(universe: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    subsequence(universe, 0..=max).prop_map(|v| v.into_iter().map(String::from).collect())
}

fn payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..100).prop_map(|n| json!({ "n": n })),
        Just(json!({ "big": 9_007_199_254_740_993u64 })),
        Just(json!({ "nested": { "neg": -9_007_199_254_740_993i64, "f": 0.25 }, "ok": true })),
        Just(json!([1, "two", { "three": [3] }])),
        Just(json!("héllo wörld ✓")),
        Just(json!(null)),
    ]
}

fn input() -> impl Strategy<Value = AppendInput> {
    (
        payload(),
        proptest::option::of(select(&DEDUP_KEYS[..])),
        proptest::option::of(select(&ORDER_KEYS[..])),
        strings(&TAGS, 2),
        proptest::option::of((select(&METADATA_KEYS[..]), select(&METADATA_VALUES[..]))),
        1u32..=2,
    )
        .prop_map(|(payload, dedup, order, tags, metadata, schema)| {
            let mut input = AppendInput::new(payload).schema_version(schema);
            input.dedup_key = dedup.map(String::from);
            input.order_key = order.map(String::from);
            input.tags = tags.into_iter().collect();
            if let Some((k, v)) = metadata {
                input = input.metadata(k, v);
            }
            input
        })
}

fn expected() -> impl Strategy<Value = ExpectedVersion> {
    prop_oneof![
        4 => Just(ExpectedVersion::Any),
        1 => Just(ExpectedVersion::NoStream),
        1 => Just(ExpectedVersion::StreamExists),
        2 => (0u64..6).prop_map(ExpectedVersion::Exact),
    ]
}

/// No filter, or one condition of each kind (created-at ranges are left out: clocks differ).
fn filter() -> impl Strategy<Value = Filter> {
    let pair = |keys: &'static [&'static str], values: &'static [&'static str]| {
        (select(keys), select(values)).prop_map(|(k, v)| vec![(k.to_owned(), v.to_owned())])
    };
    let none = Filter::default;
    prop_oneof![
        4 => Just(none()),
        1 => select(&ORDER_KEYS[..]).prop_map(move |k| Filter {
            order_key: Some(k.into()),
            ..none()
        }),
        1 => select(&TAGS[..]).prop_map(move |t| Filter { tag: Some(t.into()), ..none() }),
        1 => strings(&TAGS, 2).prop_map(move |all_tags| Filter { all_tags, ..none() }),
        1 => pair(&METADATA_KEYS, &METADATA_VALUES)
            .prop_map(move |metadata| Filter { metadata, ..none() }),
        1 => pair(&ANNOTATION_KEYS, &ANNOTATION_VALUES)
            .prop_map(move |annotations| Filter { annotations, ..none() }),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    let stream = prop_oneof![2 => Just(None), 1 => stream().prop_map(Some)];
    (any::<Index>(), stream).prop_map(|(id, stream)| Target { id, stream })
}

/// A cursor: none (from the start) twice as often as one of the ids or records seen so far.
fn maybe_index() -> impl Strategy<Value = Option<Index>> {
    prop_oneof![2 => Just(None), 1 => any::<Index>().prop_map(Some)]
}

fn annotation_changes() -> impl Strategy<Value = BTreeMap<String, Option<String>>> {
    // Per key: untouched, set, or deleted.
    let change = proptest::option::of(proptest::option::of(select(&ANNOTATION_VALUES[..])));
    (change.clone(), change).prop_map(|(a, b)| {
        ANNOTATION_KEYS
            .iter()
            .zip([a, b])
            .filter_map(|(k, c)| Some((k.to_string(), c?.map(String::from))))
            .collect()
    })
}

fn op() -> impl Strategy<Value = Op> {
    let direction = prop_oneof![Just(Direction::Ascending), Just(Direction::Descending)];
    prop_oneof![
        6 => (stream(), vec(input(), 0..5), expected())
            .prop_map(|(stream, inputs, expected)| Op::Append { stream, inputs, expected }),
        3 => (stream(), direction, 1u32..=5, maybe_index(), proptest::option::of(0u64..6), filter())
            .prop_map(|(stream, direction, limit, after, after_version, filter)| Op::Read {
                stream, direction, limit, after, after_version, filter,
            }),
        1 => stream().prop_map(|stream| Op::Count { stream }),
        1 => stream().prop_map(|stream| Op::Stat { stream }),
        1 => (proptest::option::of(stream()), 1u32..=3)
            .prop_map(|(after, limit)| Op::ListStreams { after, limit }),
        2 => (target(), strings(&TAGS, 3))
            .prop_map(|(target, tags)| Op::SetTags { target, tags: tags.into_iter().collect() }),
        2 => (target(), annotation_changes())
            .prop_map(|(target, changes)| Op::SetAnnotations { target, changes }),
        1 => target().prop_map(|target| Op::Trim { target }),
        2 => (stream(), stream()).prop_map(|(from, to)| Op::Rename { from, to }),
        2 => (maybe_index(), 1u32..=5)
            .prop_map(|(after, limit)| Op::ReadFeed { after, limit }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Resolved calls

/// An operation with its ids resolved to ordinals and its streams to names: what both sides run.
#[derive(Debug, Clone)]
enum Call {
    Append {
        stream: String,
        inputs: Vec<AppendInput>,
        expected: ExpectedVersion,
    },
    Read {
        stream: String,
        /// `after` by ordinal.
        after: Option<usize>,
        options: ReadOptions,
    },
    Count {
        stream: String,
    },
    Stat {
        stream: String,
    },
    ListStreams(ListOptions),
    SetTags {
        stream: String,
        id: usize,
        tags: BTreeSet<String>,
    },
    SetAnnotations {
        stream: String,
        id: usize,
        changes: BTreeMap<String, Option<String>>,
    },
    Trim {
        stream: String,
        up_to: usize,
    },
    Rename {
        from: String,
        to: String,
    },
    ReadFeed {
        after: Option<usize>,
        limit: u32,
    },
}

/// Resolves `op` against the reference side's ids and feed; `None` skips it (a capability the
/// backend lacks, or no id assigned yet).
fn resolve(op: &Op, reference: &Side, caps: &Capabilities) -> Option<Call> {
    let pick = |target: &Target| -> Option<(String, usize)> {
        if reference.ids.is_empty() {
            return None;
        }
        let id = target.id.index(reference.ids.len());
        let stream = target
            .stream
            .map_or_else(|| reference.homes[id].clone(), String::from);
        Some((stream, id))
    };
    let pick_id = |index: &Option<Index>, len: usize| match index {
        Some(i) if len > 0 => Some(i.index(len)),
        _ => None,
    };
    Some(match op {
        Op::Append {
            stream,
            inputs,
            expected,
        } => {
            let mut inputs = inputs.clone();
            if !caps.dedup {
                inputs.iter_mut().for_each(|i| i.dedup_key = None);
            }
            Call::Append {
                stream: stream.to_string(),
                inputs,
                expected: *expected,
            }
        }
        Op::Read {
            stream,
            direction,
            limit,
            after,
            after_version,
            filter,
        } => {
            if !caps.annotations && !filter.annotations.is_empty() {
                return None;
            }
            let mut options = ReadOptions::new().limit(*limit);
            options.direction = *direction;
            options.after_version = *after_version;
            options.filter = filter.clone();
            Call::Read {
                stream: stream.to_string(),
                after: pick_id(after, reference.ids.len()),
                options,
            }
        }
        Op::Count { stream } => Call::Count {
            stream: stream.to_string(),
        },
        Op::Stat { stream } => Call::Stat {
            stream: stream.to_string(),
        },
        Op::ListStreams { after, limit } => {
            let options = ListOptions::new().limit(*limit);
            Call::ListStreams(match after {
                Some(after) => options.after(*after),
                None => options,
            })
        }
        Op::SetTags { target, tags } => {
            if !caps.tags {
                return None;
            }
            let (stream, id) = pick(target)?;
            Call::SetTags {
                stream,
                id,
                tags: tags.clone(),
            }
        }
        Op::SetAnnotations { target, changes } => {
            if !caps.annotations {
                return None;
            }
            let (stream, id) = pick(target)?;
            Call::SetAnnotations {
                stream,
                id,
                changes: changes.clone(),
            }
        }
        Op::Trim { target } => {
            if !caps.trim {
                return None;
            }
            let (stream, up_to) = pick(target)?;
            Call::Trim { stream, up_to }
        }
        Op::Rename { from, to } => {
            if !caps.rename {
                return None;
            }
            Call::Rename {
                from: from.to_string(),
                to: to.to_string(),
            }
        }
        Op::ReadFeed { after, limit } => {
            caps.change_feed?;
            Call::ReadFeed {
                after: pick_id(after, reference.feed.len()),
                limit: *limit,
            }
        }
    })
}

/// Calls that compare the whole state at the end of a case.
fn final_calls(caps: &Capabilities) -> Vec<Call> {
    let mut calls = Vec::new();
    for stream in STREAMS {
        calls.push(Call::Read {
            stream: stream.to_owned(),
            after: None,
            options: ReadOptions::new().limit(MAX_LIMIT),
        });
        calls.push(Call::Stat {
            stream: stream.to_owned(),
        });
    }
    calls.push(Call::ListStreams(ListOptions::new()));
    if caps.change_feed.is_some() {
        calls.push(Call::ReadFeed {
            after: None,
            limit: MAX_LIMIT,
        });
    }
    calls
}

// ---------------------------------------------------------------------------------------------
// Observations

/// A feed record's position as compared across stores: its ordinal in the feed, or what was
/// wrong with it.
type FeedAt = std::result::Result<usize, String>;

/// What a call returned, normalised (see the module docs).
#[derive(Debug, PartialEq)]
enum Observed {
    Appended(Vec<AppendOutcome>, u64),
    Entries(Vec<Entry>),
    Count(u64),
    Stat(StreamStat),
    Streams(Vec<String>),
    Done,
    Trimmed(u64),
    Feed(Vec<(FeedAt, String, Mutation)>),
}

type Observation = std::result::Result<Observed, &'static str>;

/// The variant of an error: errors are compared by variant only, messages may differ.
fn variant(error: Error) -> &'static str {
    match error {
        Error::InvalidName { .. } => "InvalidName",
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::Conflict { .. } => "Conflict",
        Error::EntryNotFound { .. } => "EntryNotFound",
        Error::StreamNotFound(_) => "StreamNotFound",
        Error::StreamExists(_) => "StreamExists",
        Error::NotSupported(_) => "NotSupported",
        Error::NoUpcaster { .. } => "NoUpcaster",
        Error::Upcast { .. } => "Upcast",
        Error::Encode(_) => "Encode",
        Error::Decode { .. } => "Decode",
        Error::StoreClosed => "StoreClosed",
        Error::IncompatibleSchema { .. } => "IncompatibleSchema",
        Error::Backend { .. } => "Backend",
    }
}

/// Timestamps differ by clock; they are pinned here so only `updated_at`'s presence compares.
const PINNED: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

// ---------------------------------------------------------------------------------------------
// One side of the comparison

/// A store and what this side has seen of it: ids by ordinal, and the feed's positions.
struct Side {
    store: Store,
    /// Ids in the order appends assigned them.
    ids: Vec<EntryId>,
    ordinals: BTreeMap<EntryId, usize>,
    /// The stream holding each id (by ordinal), following renames.
    homes: Vec<String>,
    /// Positions of the feed's records by ordinal: a prefix of the feed.
    feed: Vec<u64>,
}

impl Side {
    fn new(store: impl Into<Store>) -> Self {
        Side {
            store: store.into(),
            ids: Vec::new(),
            ordinals: BTreeMap::new(),
            homes: Vec::new(),
            feed: Vec::new(),
        }
    }

    /// The id's ordinal as an id; -1 for an id this side never assigned (a bug in itself).
    fn nth(&self, id: EntryId) -> EntryId {
        EntryId::new(self.ordinals.get(&id).map_or(-1, |&n| n as i64))
    }

    fn entry(&self, e: Entry) -> Entry {
        Entry {
            id: self.nth(e.id),
            created_at: PINNED,
            updated_at: e.updated_at.map(|_| PINNED),
            ..e
        }
    }

    fn mutation(&self, m: Mutation) -> Mutation {
        match m {
            Mutation::Append { entries, version } => Mutation::Append {
                entries: entries.into_iter().map(|e| self.entry(e)).collect(),
                version,
            },
            Mutation::SetTags {
                id, version, tags, ..
            } => Mutation::SetTags {
                id: self.nth(id),
                version,
                tags,
                updated_at: PINNED,
            },
            Mutation::SetAnnotations {
                id,
                version,
                changes,
                annotations,
                ..
            } => Mutation::SetAnnotations {
                id: self.nth(id),
                version,
                changes,
                annotations,
                updated_at: PINNED,
            },
            Mutation::Trim { up_to, deleted } => Mutation::Trim {
                up_to: self.nth(up_to),
                deleted,
            },
            other => other,
        }
    }

    fn outcome(&self, o: AppendOutcome) -> AppendOutcome {
        match o {
            AppendOutcome::Appended { id, version } => AppendOutcome::Appended {
                id: self.nth(id),
                version,
            },
            AppendOutcome::Duplicate { id } => AppendOutcome::Duplicate { id: self.nth(id) },
        }
    }

    /// Records the ids an append assigned, in input order. A reused id is not recorded again,
    /// so it shows as its earlier ordinal.
    fn assign(&mut self, outcomes: &[AppendOutcome], stream: &str) {
        for outcome in outcomes {
            if let AppendOutcome::Appended { id, .. } = outcome
                && !self.ordinals.contains_key(id)
            {
                self.ordinals.insert(*id, self.ids.len());
                self.ids.push(*id);
                self.homes.push(stream.to_owned());
            }
        }
    }

    /// Gives each record its feed ordinal, checking its position against earlier reads.
    fn place(&mut self, first: usize, after: Option<u64>, records: &[FeedRecord]) -> Vec<FeedAt> {
        let mut previous = after;
        let mut placed = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let ordinal = first + i;
            let position = record.position;
            let at = if previous.is_some_and(|p| position <= p) {
                Err(format!(
                    "position {position} does not ascend past {previous:?}"
                ))
            } else {
                match self.feed.get(ordinal) {
                    Some(&known) if known != position => Err(format!(
                        "position {position} where an earlier read found {known}"
                    )),
                    Some(_) => Ok(ordinal),
                    None => {
                        self.feed.push(position);
                        Ok(ordinal)
                    }
                }
            };
            previous = Some(position);
            placed.push(at);
        }
        placed
    }

    async fn apply(&mut self, call: &Call) -> Observation {
        let store = &self.store;
        match call {
            Call::Append {
                stream,
                inputs,
                expected,
            } => {
                let result = store
                    .append(stream, inputs.clone(), *expected)
                    .await
                    .map_err(variant)?;
                self.assign(&result.outcomes, stream);
                let outcomes = result.outcomes.into_iter().map(|o| self.outcome(o));
                Ok(Observed::Appended(outcomes.collect(), result.version))
            }
            Call::Read {
                stream,
                after,
                options,
            } => {
                let mut options = options.clone();
                options.after = after.map(|n| self.ids[n]);
                let entries = store.read(stream, &options).await.map_err(variant)?;
                Ok(Observed::Entries(
                    entries.into_iter().map(|e| self.entry(e)).collect(),
                ))
            }
            Call::Count { stream } => store
                .count(stream)
                .await
                .map(Observed::Count)
                .map_err(variant),
            Call::Stat { stream } => {
                let stat = store.stat(stream).await.map_err(variant)?;
                Ok(Observed::Stat(StreamStat {
                    stream: stat.stream,
                    count: stat.count,
                    first_id: stat.first_id.map(|id| self.nth(id)),
                    last_id: stat.last_id.map(|id| self.nth(id)),
                    last_version: stat.last_version,
                }))
            }
            Call::ListStreams(options) => store
                .list_streams(options)
                .await
                .map(Observed::Streams)
                .map_err(variant),
            Call::SetTags { stream, id, tags } => store
                .set_tags(stream, self.ids[*id], tags.clone())
                .await
                .map(|()| Observed::Done)
                .map_err(variant),
            Call::SetAnnotations {
                stream,
                id,
                changes,
            } => store
                .set_annotations(stream, self.ids[*id], changes.clone())
                .await
                .map(|()| Observed::Done)
                .map_err(variant),
            Call::Trim { stream, up_to } => store
                .trim(stream, self.ids[*up_to])
                .await
                .map(Observed::Trimmed)
                .map_err(variant),
            Call::Rename { from, to } => {
                store.rename_stream(from, to).await.map_err(variant)?;
                for home in self.homes.iter_mut().filter(|h| *h == from) {
                    *home = to.clone();
                }
                Ok(Observed::Done)
            }
            Call::ReadFeed { after, limit } => {
                let after_position = after.map(|n| self.feed[n]);
                let records = store
                    .read_feed(after_position, *limit)
                    .await
                    .map_err(variant)?;
                let first = after.map_or(0, |n| n + 1);
                let placed = self.place(first, after_position, &records);
                Ok(Observed::Feed(
                    placed
                        .into_iter()
                        .zip(records)
                        .map(|(at, r)| (at, r.stream, self.mutation(r.mutation)))
                        .collect(),
                ))
            }
        }
    }
}

/// One case: the same calls on a fresh backend store and a fresh `MemoryStore`, then a comparison
/// of the whole state.
async fn run_case<F: StoreFactory>(factory: &F, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut backend = Side::new(factory.fresh().await);
    let mut reference = Side::new(MemoryStore::new());
    let caps = backend.store.capabilities();
    let outcome = async {
        for (i, op) in ops.iter().enumerate() {
            // Resolved against the reference side as it is now: ids assigned by earlier ops.
            if let Some(call) = resolve(op, &reference, &caps) {
                compare(
                    &mut backend,
                    &mut reference,
                    &call,
                    &format!("operation {i}"),
                )
                .await?;
            }
        }
        for call in final_calls(&caps) {
            compare(&mut backend, &mut reference, &call, "final state check").await?;
        }
        Ok(())
    }
    .await;
    let _ = backend.store.close().await;
    let _ = reference.store.close().await;
    outcome
}

async fn compare(
    backend: &mut Side,
    reference: &mut Side,
    call: &Call,
    label: &str,
) -> Result<(), TestCaseError> {
    let got = backend.apply(call).await;
    let want = reference.apply(call).await;
    if got == want {
        return Ok(());
    }
    Err(TestCaseError::fail(format!(
        "{label}: {call:?}\n  backend:     {got:?}\n  MemoryStore: {want:?}"
    )))
}
