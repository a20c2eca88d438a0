//! Every source (each backend with a change feed) bridged into every sink (each backend), on
//! real servers: full replays, serial and by lanes, incremental runs, replays onto a converged
//! sink, trims and renames, a trim whose boundary entry never reached the sink, skipped kinds
//! and records a sink refuses.

mod support;

use std::collections::BTreeMap;

use ledger::{EntryId, MutationKind, Store};
use ledger_bridge::{Bridge, BridgeError, BridgeOptions};
use support::{Kind, append, assert_same, item, tags};

/// Streams spread over many lanes, and one that is renamed.
fn streams() -> Vec<String> {
    let mut streams: Vec<String> = (0..12).map(|i| format!("account-{i}")).collect();
    streams.extend(["orders".into(), "payments".into(), "settled".into()]);
    streams
}

/// Every kind of mutation: appends with every field and a duplicate, tags, annotations set and
/// deleted, trims, a rename where `rename`, appends after it.
async fn mutate(store: &Store, rename: bool, round: u64) {
    for i in 0..12 {
        append(store, &format!("account-{i}"), vec![item(round * 100 + i)]).await;
    }
    let full = ledger::AppendInput::new(serde_json::json!({"sku": "A-1", "cents": 1250}))
        .order_key("customer-7")
        .dedup_key(format!("request-{round}"))
        .schema_version(2)
        .metadata("source", "checkout")
        .tag("new");
    let orders = append(store, "orders", vec![full.clone(), item(2), item(3)]).await;
    append(store, "orders", vec![full]).await; // a duplicate: no record
    let payments = append(store, "payments", (1..=4).map(item).collect()).await;
    store
        .set_tags("orders", orders[0], tags(&["paid", "priority"]))
        .await
        .expect("set_tags");
    let note = BTreeMap::from([
        ("note".to_owned(), Some("gift".to_owned())),
        ("by".to_owned(), Some("ann".to_owned())),
    ]);
    store
        .set_annotations("orders", orders[1], note)
        .await
        .expect("set_annotations");
    let delete = BTreeMap::from([("by".to_owned(), None)]);
    store
        .set_annotations("orders", orders[1], delete)
        .await
        .expect("deleting an annotation");
    store.trim("payments", payments[1]).await.expect("trim");
    if rename && round == 0 {
        store
            .rename_stream("payments", "settled")
            .await
            .expect("rename");
    }
    append(store, "settled", vec![item(5)]).await;
    append(store, "payments", vec![item(6)]).await;
    store
        .trim("orders", orders[2])
        .await
        .expect("trim to empty");
}

fn options(name: &str) -> BridgeOptions {
    BridgeOptions::new(name).batch(7) // pages end in the middle of things
}

async fn run(source: &Store, sink: &Store, options: BridgeOptions) -> ledger_bridge::Stats {
    Bridge::new(source, sink, options)
        .expect("a bridge")
        .run_once()
        .await
        .unwrap_or_else(|e| panic!("bridging failed: {e}"))
}

async fn feed_len(store: &Store) -> u64 {
    store
        .read_feed(None, ledger::MAX_LIMIT)
        .await
        .expect("read_feed")
        .len() as u64
}

/// The source's whole feed, applied in one run, leaves the sink equal to the source; the
/// bridge's cursor is at the feed's head.
async fn full_replay(source: Kind, sink: Kind, parallel: usize) {
    let (source, sink) = (source.open(true).await, sink.open(false).await);
    mutate(&source, sink.capabilities().rename, 0).await;
    let stats = run(&source, &sink, options("full").parallel(parallel)).await;
    assert_eq!(
        stats.applied,
        feed_len(&source).await,
        "every record applied once"
    );
    assert_eq!(stats.lag_records, 0, "caught up");
    assert_same(&source, &sink, &streams(), "after a full replay").await;
    assert_eq!(
        sink.get_cursor("full").await.expect("get_cursor"),
        source.feed_head().await.expect("feed_head"),
        "the cursor is at the source's head"
    );
}

/// Runs after more mutations apply only what is new, and the sink follows the source.
async fn incremental(source: Kind, sink: Kind) {
    let (source, sink) = (source.open(true).await, sink.open(false).await);
    let rename = sink.capabilities().rename;
    let mut applied = 0;
    for round in 0..3 {
        mutate(&source, rename, round).await;
        let bridge = Bridge::new(&source, &sink, options("incremental")).expect("a bridge");
        applied += bridge.run_once().await.expect("a run").applied;
        assert_eq!(
            applied,
            feed_len(&source).await,
            "round {round}: each record once"
        );
        assert_same(&source, &sink, &streams(), &format!("after round {round}")).await;
    }
}

/// Reading the whole feed again onto a converged sink changes nothing and never fails.
async fn replay_onto_converged(source: Kind, sink: Kind) {
    let (source, sink) = (source.open(true).await, sink.open(false).await);
    mutate(&source, sink.capabilities().rename, 0).await;
    run(&source, &sink, options("replay")).await;
    let again = run(&source, &sink, options("replay").replay_from_start(true)).await;
    assert_eq!(again.applied, 0, "a replay from position 0 applies nothing");
    assert!(again.polls >= 2, "the feed was read again: {again:?}");
    assert_same(&source, &sink, &streams(), "after a replay").await;
}

/// A trim up to an entry the sink never held (appended and trimmed before the bridge read
/// it) still deletes everything up to it at the sink, and the stream's version survives.
async fn trim_past_unreplicated_boundary(source: Kind, sink: Kind) {
    let (source, sink) = (source.open(true).await, sink.open(false).await);
    append(&source, "orders", (1..=5).map(item).collect()).await;
    run(&source, &sink, options("trim")).await;
    let boundary = append(&source, "orders", vec![item(6)]).await[0];
    source.trim("orders", boundary).await.expect("trim");
    append(&source, "orders", vec![item(7)]).await;
    run(&source, &sink, options("trim")).await;
    let left = support::read_all(&sink, "orders").await;
    assert_eq!(
        left.iter()
            .map(|e| e.payload["n"].as_u64())
            .collect::<Vec<_>>(),
        [Some(7)],
        "entries 1 to 6 are gone, though 6 never reached the sink"
    );
    assert_same(&source, &sink, &["orders".to_owned()], "after the trim").await;
}

/// Kinds the bridge is told to skip are counted and not applied; a kind the sink cannot take,
/// not skipped, stops the bridge at that record, naming it, with every record before it applied.
async fn skipped_and_refused_kinds(source: Kind, sink: Kind) {
    let (source, sink_store) = (source.open(true).await, sink.open(false).await);
    let skip_tags = || options("skip").skip([MutationKind::SetTags]);
    append(&source, "orders", vec![item(1)]).await;
    let tagged = append(&source, "orders", vec![item(2)]).await[0];
    run(&source, &sink_store, skip_tags()).await;
    // Tagged after the bridge copied the entry (an append read later carries its tags).
    source
        .set_tags("orders", tagged, tags(&["x"]))
        .await
        .expect("set_tags");
    append(&source, "orders", vec![item(3)]).await;
    let skipped = run(&source, &sink_store, skip_tags()).await;
    assert_eq!(
        skipped.skipped,
        BTreeMap::from([(MutationKind::SetTags, 1)]),
        "the tag change is counted as skipped"
    );
    assert_eq!(skipped.applied, 1, "the append after it is applied");
    let entries = support::read_all(&sink_store, "orders").await;
    assert_eq!(entries.len(), 3, "every append is applied");
    assert!(
        entries.iter().all(|e| e.tags.is_empty()),
        "no tags were applied: {entries:?}"
    );
    if sink_store.capabilities().rename {
        return;
    }
    source
        .rename_stream("orders", "archived")
        .await
        .expect("rename");
    let rename_position = source
        .feed_head()
        .await
        .expect("feed_head")
        .expect("a head");
    append(&source, "later", vec![item(4)]).await;
    let bridge = Bridge::new(
        &source,
        &sink_store,
        options("skip").max_retry_delay(ms(50)),
    )
    .expect("a bridge");
    match bridge.run_once().await {
        Err(BridgeError::Rejected {
            position,
            kind,
            stream,
            ..
        }) => {
            assert_eq!(
                (position, kind, stream.as_str()),
                (rename_position, MutationKind::Rename, "orders"),
                "the rename is the record named"
            );
        }
        other => panic!("a rename the sink cannot apply stops the bridge: {other:?}"),
    }
    assert!(
        support::read_all(&sink_store, "later").await.is_empty(),
        "nothing after the refused record is applied"
    );
}

/// A second source bridged into the same sink under another name collides with the first
/// source's ids: the bridge stops at the first colliding record, naming it, and overwrites
/// nothing.
async fn colliding_sources(source: Kind, sink: Kind) {
    let (first, second, sink) = (
        source.open(true).await,
        source.open(true).await,
        sink.open(false).await,
    );
    append(&first, "first", vec![item(1), item(2)]).await;
    run(&first, &sink, options("first")).await;
    let ids: Vec<EntryId> = append(&second, "second", vec![item(3)]).await;
    let held: Vec<EntryId> = support::read_all(&sink, "first")
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert!(
        held.contains(&ids[0]),
        "fresh sources of one kind number their entries alike: {ids:?} vs {held:?}"
    );
    let bridge =
        Bridge::new(&second, &sink, options("second").max_retry_delay(ms(50))).expect("a bridge");
    match bridge.run_once().await {
        Err(BridgeError::Rejected {
            position,
            stream,
            kind,
            ..
        }) => assert_eq!(
            (stream.as_str(), kind, Some(position)),
            (
                "second",
                MutationKind::Append,
                second.feed_head().await.expect("head")
            ),
        ),
        other => panic!("a colliding id stops the bridge: {other:?}"),
    }
    assert!(
        support::read_all(&sink, "second").await.is_empty(),
        "the colliding entry is not written"
    );
    assert_same(
        &first,
        &sink,
        &["first".to_owned()],
        "the first source's entries",
    )
    .await;
}

fn ms(n: u64) -> std::time::Duration {
    std::time::Duration::from_millis(n)
}

macro_rules! pair {
    ($name:ident: $source:ident -> $sink:ident) => {
        mod $name {
            use super::*;
            const SOURCE: Kind = Kind::$source;
            const SINK: Kind = Kind::$sink;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_full_replay_reproduces_the_source() {
                full_replay(SOURCE, SINK, 1).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_full_replay_by_four_lanes_reproduces_the_source() {
                full_replay(SOURCE, SINK, 4).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn incremental_runs_apply_only_what_is_new() {
                incremental(SOURCE, SINK).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_replay_from_position_zero_onto_a_converged_sink_changes_nothing() {
                replay_onto_converged(SOURCE, SINK).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_trim_past_an_entry_the_sink_never_held_still_trims() {
                trim_past_unreplicated_boundary(SOURCE, SINK).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn skipped_kinds_are_counted_and_refused_kinds_stop_the_bridge() {
                skipped_and_refused_kinds(SOURCE, SINK).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_second_source_colliding_in_one_sink_is_rejected() {
                colliding_sources(SOURCE, SINK).await;
            }
        }
    };
}

pair!(memory_to_memory: Memory -> Memory);
pair!(memory_to_sqlite: Memory -> Sqlite);
pair!(memory_to_postgres: Memory -> Postgres);
pair!(memory_to_mongodb: Memory -> Mongo);
pair!(memory_to_clickhouse: Memory -> ClickHouse);
pair!(memory_to_clickhouse_18: Memory -> ClickHouseLegacy);
pair!(sqlite_to_memory: Sqlite -> Memory);
pair!(sqlite_to_sqlite: Sqlite -> Sqlite);
pair!(sqlite_to_postgres: Sqlite -> Postgres);
pair!(sqlite_to_mongodb: Sqlite -> Mongo);
pair!(sqlite_to_clickhouse: Sqlite -> ClickHouse);
pair!(sqlite_to_clickhouse_18: Sqlite -> ClickHouseLegacy);
pair!(postgres_to_memory: Postgres -> Memory);
pair!(postgres_to_sqlite: Postgres -> Sqlite);
pair!(postgres_to_postgres: Postgres -> Postgres);
pair!(postgres_to_mongodb: Postgres -> Mongo);
pair!(postgres_to_clickhouse: Postgres -> ClickHouse);
pair!(postgres_to_clickhouse_18: Postgres -> ClickHouseLegacy);
pair!(mongodb_to_memory: Mongo -> Memory);
pair!(mongodb_to_sqlite: Mongo -> Sqlite);
pair!(mongodb_to_postgres: Mongo -> Postgres);
pair!(mongodb_to_mongodb: Mongo -> Mongo);
pair!(mongodb_to_clickhouse: Mongo -> ClickHouse);
pair!(mongodb_to_clickhouse_18: Mongo -> ClickHouseLegacy);
