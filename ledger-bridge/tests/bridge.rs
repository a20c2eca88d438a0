//! The bridge as a running thing: start and stop, wake-ups, two bridges on one pair, retries
//! of transient sink errors, metrics, options.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ledger::{MemoryStore, MutationKind, Store};
use ledger_bridge::{Bridge, BridgeError, BridgeOptions, Stats};
use ledger_core::testkit::fresh_table;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use support::{Kind, append, assert_same, item};

const WAIT: Duration = Duration::from_secs(30);

/// Waits until the bridge's progress satisfies `done`.
async fn progress_until(bridge: &Bridge, done: impl Fn(&Stats) -> bool) -> Stats {
    let mut progress = bridge.progress();
    match tokio::time::timeout(WAIT, progress.wait_for(|s| done(s))).await {
        Ok(reached) => reached.expect("the bridge is alive").clone(),
        Err(_) => panic!(
            "the bridge did not make the progress awaited in time: {:?}",
            bridge.stats()
        ),
    }
}

#[tokio::test]
async fn a_started_bridge_follows_live_writes_and_stops_gracefully() {
    let (source, sink): (Store, Store) = (MemoryStore::new().into(), MemoryStore::new().into());
    let bridge = Bridge::new(&source, &sink, BridgeOptions::new("live")).expect("a bridge");
    let running = bridge.start().expect("started");
    assert!(
        matches!(bridge.start(), Err(BridgeError::AlreadyRunning(name)) if name == "live"),
        "a running bridge cannot be started again"
    );
    for n in 1..=3 {
        append(&source, "orders", vec![item(n)]).await;
        let head = source.feed_head().await.expect("head");
        progress_until(&bridge, |s| s.position == head).await;
    }
    let stats = running.stop().await.expect("a clean stop");
    assert_eq!(stats.applied, 3, "each live append applied once");
    append(&source, "orders", vec![item(4)]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        support::read_all(&sink, "orders").await.len(),
        3,
        "a stopped bridge applies nothing more"
    );
    let restarted = bridge.start().expect("a stopped bridge starts again");
    let head = source.feed_head().await.expect("head");
    progress_until(&bridge, |s| s.position == head).await;
    restarted.stop().await.expect("a clean stop");
    assert_same(&source, &sink, &["orders".to_owned()], "after a restart").await;
}

/// With an hour-long poll interval, only the source's commit signal can wake the bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_bridge_wakes_on_the_sources_commits_not_by_polling() {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let (source, sink) = (kind.open(true).await, Kind::Memory.open(false).await);
        let options = BridgeOptions::new("quiet").poll_interval(Duration::from_secs(3600));
        let bridge = Bridge::new(&source, &sink, options).expect("a bridge");
        let running = bridge.start().expect("started");
        let idle = progress_until(&bridge, |s| s.polls >= 1).await;
        for n in 1..=3 {
            append(&source, "orders", vec![item(n)]).await;
            let head = source.feed_head().await.expect("head");
            progress_until(&bridge, |s| s.position == head).await;
        }
        let stats = running.stop().await.expect("a clean stop");
        assert!(
            stats.polls <= idle.polls + 9,
            "{kind:?}: a few reads per commit, no polling loop: {stats:?}"
        );
    }
}

/// Appends, tags, annotations and trims on a few streams until `stop`.
async fn write(store: Store, writer: u64, stop: Arc<AtomicBool>) {
    let mut rng = fastrand::Rng::with_seed(writer);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let stream = format!("s{}", rng.u8(..6));
        let ids = append(&store, &stream, vec![item(n), item(n + 1)]).await;
        n += 2;
        let changed = match rng.u8(..3) {
            0 => store.set_tags(&stream, ids[0], support::tags(&["t"])).await,
            1 => {
                let changes = BTreeMap::from([("k".to_owned(), Some(n.to_string()))]);
                store.set_annotations(&stream, ids[1], changes).await
            }
            _ => store.trim(&stream, ids[0]).await.map(|_| ()),
        };
        if let Err(e) = changed {
            assert!(e.is_not_found(), "writer {writer}: {e}");
        }
        // A steady load, not a flood: the test is about two bridges, not the sink's speed.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two bridges with one name, one applying whole pages and one by lanes, run at once on one
/// pair while writers mutate the source; they share the work and the sink converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_on_one_pair_at_once_converge() {
    for (source_kind, sink_kind) in [
        (Kind::Postgres, Kind::Postgres),
        (Kind::Sqlite, Kind::Mongo),
    ] {
        let (source, sink) = (source_kind.open(true).await, sink_kind.open(false).await);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| tokio::spawn(write(source.clone(), w, stop.clone())))
            .collect();
        let options = BridgeOptions::new("shared")
            .batch(100)
            .poll_interval(Duration::from_millis(20))
            .max_retry_delay(Duration::from_millis(100));
        let first = Bridge::new(&source, &sink, options.clone()).expect("a bridge");
        let second = Bridge::new(&source, &sink, options.parallel(4)).expect("a bridge");
        let running = [
            first.start().expect("first"),
            second.start().expect("second"),
        ];
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.expect("a writer");
        }
        let head = source.feed_head().await.expect("head");
        for (bridge, running) in [&first, &second].into_iter().zip(&running) {
            assert!(
                !running.is_finished(),
                "{source_kind:?} to {sink_kind:?}: a bridge stopped"
            );
            progress_until(bridge, |s| s.position == head).await;
        }
        let mut applied = 0;
        for bridge in running {
            applied += bridge.stop().await.expect("a clean stop").applied;
        }
        let records = source
            .read_feed(None, ledger::MAX_LIMIT)
            .await
            .expect("feed");
        assert!(
            applied <= records.len() as u64 * 2,
            "{source_kind:?} to {sink_kind:?}: no record applied over and over"
        );
        let streams: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
        let context = format!("{source_kind:?} to {sink_kind:?}, two bridges");
        assert_same(&source, &sink, &streams, &context).await;
    }
}

/// A sink whose table is locked answers every apply with a lock timeout (transient): the
/// bridge retries with backoff until the lock is gone, counts the failures, and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_sink_errors_are_retried_until_they_pass() {
    let source: Store = MemoryStore::new().into();
    for n in 1..=5 {
        append(&source, "orders", vec![item(n)]).await;
    }
    let table = fresh_table();
    let url = Kind::Postgres.url(&table, false);
    let with_timeout = format!("{url}&options=-c%20lock_timeout%3D100");
    let sink = ledger::open(&with_timeout).await.expect("the sink");
    let server =
        ledger_core::testkit::server::server_url("LEDGER_POSTGRES_URL", env!("CARGO_MANIFEST_DIR"));
    let pool = sqlx::PgPool::connect(&server).await.expect("a connection");
    let mut lock = pool.begin().await.expect("a transaction");
    sqlx::query(&format!(r#"LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE"#))
        .execute(&mut *lock)
        .await
        .expect("locking the sink's table");
    let options = BridgeOptions::new("retried").max_retry_delay(Duration::from_millis(200));
    let bridge = Bridge::new(&source, &sink, options).expect("a bridge");
    let run = tokio::spawn(async move { bridge.run_once().await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lock.rollback().await.expect("unlocking");
    let stats = run
        .await
        .expect("the run")
        .expect("the run succeeds once unlocked");
    assert!(
        stats.errors >= 2,
        "the lock timeouts were retried: {stats:?}"
    );
    assert_eq!(stats.applied, 5, "every record applied once");
    assert_same(&source, &sink, &["orders".to_owned()], "after the retries").await;
}

/// A data point: metric name, sorted attributes, value (a histogram's count).
type Point = (String, Vec<(String, String)>, f64);

/// Every data point exported.
fn exported(exporter: &InMemoryMetricExporter) -> Vec<Point> {
    let mut points = Vec::new();
    for resource in exporter.get_finished_metrics().expect("metrics") {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                let name = metric.name().to_owned();
                let attrs = |a: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
                    let mut attrs: Vec<(String, String)> = a
                        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                        .collect();
                    attrs.sort();
                    attrs
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for p in sum.data_points() {
                            points.push((
                                name.clone(),
                                attrs(&mut p.attributes()),
                                p.value() as f64,
                            ));
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                        for p in gauge.data_points() {
                            points.push((
                                name.clone(),
                                attrs(&mut p.attributes()),
                                p.value() as f64,
                            ));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(gauge)) => {
                        for p in gauge.data_points() {
                            points.push((name.clone(), attrs(&mut p.attributes()), p.value()));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            points.push((
                                name.clone(),
                                attrs(&mut p.attributes()),
                                p.count() as f64,
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    points
}

#[tokio::test]
async fn metrics_count_polls_applied_and_skipped_records_and_report_lag() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let (source, sink): (Store, Store) = (MemoryStore::new().into(), MemoryStore::new().into());
    let ids = append(&source, "orders", vec![item(1), item(2)]).await;
    append(&source, "orders", vec![item(3)]).await;
    source.trim("orders", ids[0]).await.expect("trim");
    let options = BridgeOptions::new("measured")
        .skip([MutationKind::Trim])
        .meter(provider.meter("test"));
    let stats = Bridge::new(&source, &sink, options)
        .expect("a bridge")
        .run_once()
        .await
        .expect("a run");
    provider.force_flush().expect("flushed");
    let points = exported(&exporter);
    let value = |name: &str, extra: &[(&str, &str)]| -> Option<f64> {
        let mut want: Vec<(String, String)> = vec![("bridge.name".into(), "measured".into())];
        want.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        want.sort();
        points
            .iter()
            .filter(|(n, a, _)| n == name && *a == want)
            .map(|(_, _, v)| *v)
            .next_back()
    };
    assert_eq!(
        value("ledger.bridge.records.applied", &[]),
        Some(2.0),
        "{points:?}"
    );
    assert_eq!(
        value(
            "ledger.bridge.records.skipped",
            &[("mutation.type", "trim")]
        ),
        Some(1.0),
        "{points:?}"
    );
    assert_eq!(value("ledger.bridge.polls", &[]), Some(stats.polls as f64));
    assert_eq!(
        value("ledger.bridge.lag.records", &[]),
        Some(0.0),
        "caught up"
    );
    assert_eq!(
        value("ledger.bridge.lag.seconds", &[]),
        Some(0.0),
        "caught up"
    );
    assert_eq!(
        value("ledger.bridge.page.duration", &[]),
        Some(1.0),
        "one page"
    );
    assert_eq!(
        value("ledger.bridge.errors", &[("stage", "sink")]),
        None,
        "no errors"
    );
}

#[tokio::test]
async fn bad_options_and_unbridgeable_stores_are_refused_naming_the_problem() {
    let (source, sink): (Store, Store) = (MemoryStore::new().into(), MemoryStore::new().into());
    let refused = |options: BridgeOptions| match Bridge::new(&source, &sink, options) {
        Err(BridgeError::Config(message)) => message,
        Err(other) => panic!("a configuration error, not {other}"),
        Ok(_) => panic!("bad options are refused"),
    };
    assert!(refused(BridgeOptions::new("b").batch(0)).contains("batch"));
    assert!(refused(BridgeOptions::new("b").batch(10_001)).contains("10001"));
    assert!(refused(BridgeOptions::new("b").parallel(17)).contains("17"));
    assert!(refused(BridgeOptions::new("b").poll_interval(Duration::ZERO)).contains("poll"));
    assert!(refused(BridgeOptions::new("")).contains("cursor"));
    assert!(refused(BridgeOptions::new("x".repeat(249))).contains("248"));
    let no_feed = Kind::Sqlite.open(false).await;
    match Bridge::new(&no_feed, &sink, BridgeOptions::new("b")) {
        Err(BridgeError::Config(message)) => {
            assert!(message.contains("no change feed"), "{message}")
        }
        other => panic!("a source without a feed is refused: {:?}", other.err()),
    }
}
