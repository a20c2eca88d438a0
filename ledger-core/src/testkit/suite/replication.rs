//! Replication: applying another store's feed records reproduces it, idempotently.

use super::support::*;
use crate::{Lane, MemoryStore, TimestampPrecision};

/// Every kind of mutation, on several streams: appends with every field, duplicates, tags,
/// annotations set and deleted, a trim, a rename (where `rename` says the store that will
/// replay them can) and appends after it.
async fn mutate(store: &Store, rename: bool) {
    let full = AppendInput::new(json!({"sku": "A-1", "cents": 1250, "big": u64::MAX}))
        .order_key("customer-7")
        .dedup_key("request-1")
        .schema_version(2)
        .metadata("source", "checkout")
        .tag("new");
    let orders = append_all(store, "orders", vec![full, item(2), item(3)]).await;
    let retry = AppendInput::new(json!({"retry": true})).dedup_key("request-1");
    let duplicate = store
        .append("orders", vec![retry], ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("a duplicate append failed: {e}"));
    assert!(
        !duplicate.outcomes[0].is_appended(),
        "the retry is a duplicate"
    );
    let payments = append_all(store, "payments", items(1..=4)).await;
    store
        .set_tags("orders", orders[0], tags(&["paid", "priority"]))
        .await
        .unwrap_or_else(|e| panic!("set_tags failed: {e}"));
    store
        .set_annotations(
            "orders",
            orders[1],
            changes(&[("note", Some("gift")), ("by", Some("ann"))]),
        )
        .await
        .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
    store
        .set_annotations("orders", orders[1], changes(&[("by", None)]))
        .await
        .unwrap_or_else(|e| panic!("deleting an annotation failed: {e}"));
    store
        .trim("payments", payments[1])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    if rename {
        store
            .rename_stream("payments", "settled")
            .await
            .unwrap_or_else(|e| panic!("rename failed: {e}"));
    }
    append_all(store, "settled", vec![item(5)]).await;
    append_all(store, "payments", vec![item(6)]).await;
    store
        .trim("orders", orders[2])
        .await
        .unwrap_or_else(|e| panic!("trim to empty failed: {e}"));
}

const STREAMS: [&str; 3] = ["orders", "payments", "settled"];

/// What a reader can see of a store, timestamps cut to `precision`.
async fn state(store: &Store, precision: TimestampPrecision) -> Vec<(StreamStat, Vec<Entry>)> {
    let mut seen = Vec::new();
    for stream in STREAMS {
        let mut entries = read_all(store, stream).await;
        for e in &mut entries {
            e.created_at = precision.truncate(e.created_at);
            e.updated_at = e.updated_at.map(|t| precision.truncate(t));
        }
        seen.push((stat_of(store, stream).await, entries));
    }
    seen
}

/// The coarser of two stores' timestamp precisions.
fn coarser(a: &Store, b: &Store) -> TimestampPrecision {
    a.capabilities()
        .timestamp_precision
        .min(b.capabilities().timestamp_precision)
}

async fn apply(sink: &Store, cursor: &str, records: &[FeedRecord]) -> u64 {
    sink.apply_replicated(cursor, records)
        .await
        .unwrap_or_else(|e| panic!("applying {} records failed: {e}", records.len()))
}

/// A source's feed, applied to this store in batches, reproduces the source exactly: the same
/// streams, ids, versions, payloads, every field, tags, annotations, timestamps (at this store's
/// precision), versions of trimmed streams, the stream list; the cursor ends at the last record.
pub async fn replicated_records_reproduce_the_source_exactly<F: StoreFactory>(factory: &F) {
    let sink = factory.fresh().await;
    let source = MemoryStore::new();
    mutate(&source, sink.capabilities().rename).await;
    let records = read_feed_from(&source, None, MAX_LIMIT).await;
    let cursor = format!("bridge_{}", fresh_table());
    let mut applied = 0;
    for batch in records.chunks(3) {
        applied += apply(&sink, &cursor, batch).await;
    }
    assert_eq!(applied, records.len() as u64, "every record applied once");
    let precision = coarser(&source, &sink);
    assert_eq!(
        state(&sink, precision).await,
        state(&source, precision).await,
        "the replica equals the source"
    );
    assert_eq!(
        list_with(&sink, &ListOptions::new()).await,
        list_with(&source, &ListOptions::new()).await,
        "the same streams are listed"
    );
    if sink.capabilities().cursor_store {
        let saved = sink
            .get_cursor(&cursor)
            .await
            .unwrap_or_else(|e| panic!("get_cursor: {e}"));
        assert_eq!(
            saved,
            records.last().map(|r| r.position),
            "the cursor is at the last record"
        );
    }
    let next = sink
        .append("orders", vec![item(7)], ExpectedVersion::Exact(3))
        .await
        .unwrap_or_else(|e| panic!("an append after replication failed: {e}"));
    let ids = appended(&next, "append after replication");
    let highest = records
        .iter()
        .flat_map(|r| match &r.mutation {
            Mutation::Append { entries, .. } => entries.iter().map(|e| e.id).collect(),
            _ => Vec::new(),
        })
        .max()
        .expect("the feed holds appends");
    assert!(
        ids[0].0 > highest,
        "new ids come after replicated ones: {:?} vs {highest:?}",
        ids[0].0
    );
}

/// Replaying any prefix of the feed under the same cursor (a bridge restarted from an older
/// position) changes nothing and never fails.
pub async fn replaying_any_prefix_of_the_feed_changes_nothing<F: StoreFactory>(factory: &F) {
    let sink = factory.fresh().await;
    let source = MemoryStore::new();
    mutate(&source, sink.capabilities().rename).await;
    let records = read_feed_from(&source, None, MAX_LIMIT).await;
    let cursor = format!("bridge_{}", fresh_table());
    apply(&sink, &cursor, &records).await;
    let precision = coarser(&source, &sink);
    let expected = state(&sink, precision).await;
    for end in 0..=records.len() {
        let applied = apply(&sink, &cursor, &records[..end]).await;
        assert_eq!(
            applied, 0,
            "a replayed prefix of {end} records applies nothing"
        );
        assert_eq!(
            state(&sink, precision).await,
            expected,
            "after replaying {end} records"
        );
    }
}

/// Two replicas applying one feed at once into one store (under different cursors, so
/// neither skips what the other applied) leave one copy of everything: each either succeeds or
/// fails without effect, and, once a failed one has caught up from its cursor, the store equals
/// the source. (Without renames: a replay from the start after a rename is refused, rightly,
/// as the renamed entries now hold the ids.)
pub async fn concurrent_replays_of_one_feed_leave_one_copy<F: StoreFactory>(factory: &F) {
    let sink = factory.fresh().await;
    let source = MemoryStore::new();
    mutate(&source, false).await;
    let records = read_feed_from(&source, None, MAX_LIMIT).await;
    let cursors = ["bridge_first", "bridge_second"];
    let runs: Vec<_> = cursors
        .into_iter()
        .map(|cursor| {
            let sink = sink.clone();
            let records = records.clone();
            tokio::spawn(async move { sink.apply_replicated(cursor, &records).await })
        })
        .collect();
    let mut succeeded = 0;
    for (run, cursor) in runs.into_iter().zip(cursors) {
        match run.await.expect("a replay task panicked") {
            Ok(_) => succeeded += 1,
            // It lost a race (a unique index refused its insert): it catches up like a
            // restarted bridge, from its cursor.
            Err(_) => {
                apply(&sink, cursor, &records).await;
            }
        }
    }
    assert!(
        succeeded >= 1,
        "at least one of two concurrent replays succeeds"
    );
    let precision = coarser(&source, &sink);
    assert_eq!(
        state(&sink, precision).await,
        state(&source, precision).await,
        "the store holds one copy of the source"
    );
}

/// A replicated append whose id this store holds for another entry is refused, not an
/// overwrite: the batch applies nothing and the cursor stays.
pub async fn replicated_ids_held_by_other_entries_are_refused<F: StoreFactory>(factory: &F) {
    let sink = factory.fresh().await;
    let local = append_all(&sink, "local", vec![item(1)]).await[0];
    let source = MemoryStore::new();
    append_all(&source, "replicated", items(1..=2)).await;
    let mut records = read_feed_from(&source, None, 10).await;
    let Mutation::Append { entries, .. } = &mut records[0].mutation else {
        panic!("the first record is an append");
    };
    entries[0].id = local; // the source and this store disagree on what the id is
    let cursor = format!("bridge_{}", fresh_table());
    let refused = sink.apply_replicated(&cursor, &records).await;
    assert!(refused.is_err(), "an id collision is refused: {refused:?}");
    assert_eq!(
        count_of(&sink, "replicated").await,
        0,
        "nothing of the batch was applied"
    );
    assert_eq!(
        ns(&read_all(&sink, "local").await),
        [1],
        "the local entry is untouched"
    );
    if sink.capabilities().cursor_store {
        assert_eq!(
            sink.get_cursor(&cursor).await.ok().flatten(),
            None,
            "the cursor stays"
        );
    }
}

/// This store's own change feed, applied to the reference store, reproduces this store: its
/// records carry every field, id, version and timestamp a replica needs.
pub async fn the_change_feed_reproduces_the_store_in_a_replica<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    mutate(&store, true).await;
    let records = read_feed_from(&store, None, MAX_LIMIT).await;
    let replica: Store = MemoryStore::new().into();
    apply(&replica, "bridge", &records).await;
    let precision = coarser(&store, &replica);
    assert_eq!(
        state(&replica, precision).await,
        state(&store, precision).await,
        "the replica built from the change feed equals the store"
    );
}

/// Applies `records` as a bridge applying streams in parallel does, one lane after another:
/// each run of records between renames by lane, each rename on its own under the cursor.
async fn apply_by_lanes(sink: &Store, cursor: &str, records: &[FeedRecord]) -> u64 {
    let mut applied = 0;
    for run in Lane::runs(records) {
        for (lane, of_lane) in &run.lanes {
            applied += sink
                .apply_replicated_lane(cursor, *lane, of_lane)
                .await
                .unwrap_or_else(|e| panic!("applying {} records in {lane}: {e}", of_lane.len()));
        }
        if let Some(rename) = &run.rename {
            applied += apply(sink, cursor, std::slice::from_ref(rename)).await;
        }
    }
    applied
}

/// Records applied lane by lane (a parallel bridge stopped before saving its cursor) are not
/// applied again by a bridge applying the whole feed under the same cursor, and records applied
/// under the cursor are not applied again lane by lane: either way each record is applied once
/// and the replica equals the source.
pub async fn lanes_and_the_cursor_never_apply_a_record_twice<F: StoreFactory>(factory: &F) {
    let source = MemoryStore::new();
    let rename = factory.fresh().await.capabilities().rename;
    mutate(&source, rename).await;
    let records = read_feed_from(&source, None, MAX_LIMIT).await;
    let half = records.len() / 2;
    for lanes_first in [true, false] {
        let sink = factory.fresh().await;
        let cursor = format!("bridge_{}", fresh_table());
        let (first, then) = if lanes_first {
            (
                apply_by_lanes(&sink, &cursor, &records[..half]).await,
                apply(&sink, &cursor, &records).await,
            )
        } else {
            (
                apply(&sink, &cursor, &records[..half]).await,
                apply_by_lanes(&sink, &cursor, &records).await,
            )
        };
        let order = if lanes_first {
            "lanes, then the cursor"
        } else {
            "the cursor, then lanes"
        };
        assert_eq!(
            (first, then),
            (half as u64, (records.len() - half) as u64),
            "{order}: each record is applied once"
        );
        let precision = coarser(&source, &sink);
        assert_eq!(
            state(&sink, precision).await,
            state(&source, precision).await,
            "{order}: the replica equals the source"
        );
    }
}

/// A lane's apply takes only that lane's records, and no renames (which move a stream between
/// lanes): anything else is refused as an invalid argument, before anything is applied.
pub async fn lane_applies_refuse_other_lanes_and_renames<F: StoreFactory>(factory: &F) {
    let sink = factory.fresh().await;
    let source = MemoryStore::new();
    let streams: Vec<String> = (0..64).map(|i| format!("s{i}")).collect();
    let lane = Lane::of(&streams[0]);
    let other = streams
        .iter()
        .find(|s| Lane::of(s) != lane)
        .expect("64 streams fill more than one lane");
    append_all(&source, &streams[0], vec![item(1)]).await;
    append_all(&source, other, vec![item(2)]).await;
    let records = read_feed_from(&source, None, 10).await;
    let cursor = format!("bridge_{}", fresh_table());
    let mixed = sink.apply_replicated_lane(&cursor, lane, &records).await;
    assert!(
        matches!(&mixed, Err(Error::InvalidArgument(m)) if m.contains(other.as_str())),
        "a record of another lane is refused, naming its stream: {mixed:?}"
    );
    let rename = FeedRecord {
        position: 9,
        stream: streams[0].clone(),
        mutation: Mutation::Rename {
            to: "elsewhere".into(),
        },
    };
    let renamed = sink.apply_replicated_lane(&cursor, lane, &[rename]).await;
    assert!(
        matches!(&renamed, Err(Error::InvalidArgument(m)) if m.contains("rename")),
        "a rename is refused in a lane: {renamed:?}"
    );
    assert_eq!(count_of(&sink, &streams[0]).await, 0, "nothing was applied");
    let long = "c".repeat(249);
    let too_long = sink.apply_replicated(&long, &records[..1]).await;
    assert!(
        matches!(&too_long, Err(Error::InvalidName { name, .. }) if *name == long),
        "a cursor name without room for its lanes is refused: {too_long:?}"
    );
}
