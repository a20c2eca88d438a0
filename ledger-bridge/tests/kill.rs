//! Crash safety: a `ledger-bridge` process killed with SIGKILL at random moments, 20 times,
//! while four writers keep mutating the source, and restarted each time (every other time
//! applying by lanes), leaves a sink equal to the source, entry by entry.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ledger::{EntryId, Error, Store};
use ledger_core::testkit::fresh_table;
use support::{Kind, append, assert_same, item};

const KILLS: usize = 20;
const WRITERS: usize = 4;
const STREAMS: usize = 8;

fn stream(i: usize) -> String {
    format!("stream-{i}")
}

/// Appends, tags, annotations and trims on random streams until `stop`.
async fn write(store: Store, writer: usize, stop: Arc<AtomicBool>) -> u64 {
    let mut rng = fastrand::Rng::with_seed(writer as u64);
    let mut ids: Vec<(String, EntryId)> = Vec::new();
    let mut mutations = 0;
    while !stop.load(Ordering::Relaxed) {
        let s = stream(rng.usize(..STREAMS));
        let target = (!ids.is_empty()).then(|| ids[rng.usize(..ids.len())].clone());
        let outcome: Result<(), Error> = match (rng.u8(..100), target) {
            (0..60, _) | (_, None) => {
                let n = rng.u64(1..=5);
                let inputs = (0..n).map(|k| item(mutations * 10 + k)).collect();
                let new = append(&store, &s, inputs).await;
                ids.extend(new.into_iter().map(|id| (s.clone(), id)));
                Ok(())
            }
            (60..75, Some((s, id))) => {
                let tags = support::tags(&[["a", "b", "c"][rng.usize(..3)]]);
                store.set_tags(&s, id, tags).await
            }
            (75..92, Some((s, id))) => {
                let value = (rng.bool()).then(|| format!("w{writer}-{mutations}"));
                let changes = BTreeMap::from([(format!("k{}", rng.u8(..3)), value)]);
                store.set_annotations(&s, id, changes).await
            }
            (_, Some((s, id))) => store.trim(&s, id).await.map(|_| ()),
        };
        match outcome {
            Ok(()) => mutations += 1,
            // Another writer trimmed the entry first.
            Err(e) if e.is_not_found() => {}
            Err(e) => panic!("writer {writer}: {e}"),
        }
    }
    mutations
}

fn bridge_process(
    source: &str,
    sink: &str,
    parallel: usize,
    once: bool,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger-bridge"));
    command
        .args(["--source", source, "--sink", sink, "--name", "killed"])
        .args([
            "--batch",
            "50",
            "--poll-ms",
            "20",
            "--parallel",
            &parallel.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    if once {
        command.arg("--once");
    }
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_to_sqlite_bridge_killed_twenty_times_under_four_writers_converges() {
    killed_bridges_converge(Kind::Postgres, Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_to_postgres_bridge_killed_twenty_times_under_four_writers_converges() {
    killed_bridges_converge(Kind::Sqlite, Kind::Postgres).await;
}

async fn killed_bridges_converge(source_kind: Kind, sink_kind: Kind) {
    let (source_table, sink_table) = (fresh_table(), fresh_table());
    let source_url = source_kind.url(&source_table, true);
    let sink_url = sink_kind.url(&sink_table, false);
    let source = ledger::open(&source_url).await.expect("the source");
    let sink = ledger::open(&sink_url).await.expect("the sink");

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(source.clone(), w, stop.clone())))
        .collect();
    let mut rng = fastrand::Rng::with_seed(7);
    for kill in 0..KILLS {
        let parallel = if kill % 2 == 0 { 1 } else { 4 };
        let mut child = bridge_process(&source_url, &sink_url, parallel, false)
            .spawn()
            .expect("starting ledger-bridge");
        tokio::time::sleep(Duration::from_millis(rng.u64(50..400))).await;
        // SIGKILL: no chance to finish anything.
        child.start_kill().expect("SIGKILL");
        let status = child.wait().await.expect("the killed bridge");
        assert!(
            !status.success(),
            "kill {kill}: the bridge was killed, not done: {status}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut mutations = 0;
    for writer in writers {
        mutations += writer.await.expect("a writer");
    }
    assert!(mutations > 100, "the writers kept mutating: {mutations}");

    let reached = sink.get_cursor("killed").await.expect("get_cursor");
    assert!(
        reached.is_some_and(|p| p > 0),
        "the killed bridges made progress: {reached:?}"
    );
    let status = bridge_process(&source_url, &sink_url, 4, true)
        .status()
        .await
        .expect("the last bridge");
    assert!(status.success(), "the last bridge catches up: {status}");
    let streams: Vec<String> = (0..STREAMS).map(stream).collect();
    assert_same(&source, &sink, &streams, "after 20 kills").await;
    let head = source.feed_head().await.expect("feed_head");
    assert_eq!(
        sink.get_cursor("killed").await.expect("get_cursor"),
        head,
        "the bridge's cursor is at the source's head"
    );
}
