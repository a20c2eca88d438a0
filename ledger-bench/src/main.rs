//! `cargo xtask bench`: throughput of ledger against a raw baseline (hand-written sqlx
//! statements, or the MongoDB driver's own calls) writing and reading the same rows in the same
//! run, reported as ratios in `BENCHMARKS.md`.
//!
//! Each workload runs `REPEATS` times, alternating baseline and ledger, on fresh files; the
//! report gives medians. `--quick` shrinks every workload (for checking the harness, not for
//! numbers).

mod bridge;
mod builds;
mod clickhouse;
mod logstore;
mod mongo;
mod postgres;
mod report;
mod sqlite;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use report::Report;
use workload::{LONG, Long};

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Single-entry appends (one commit each).
    pub single_appends: usize,
    /// Batches of `batch` entries for the batched-append workload.
    pub batches: usize,
    /// Entries per batch.
    pub batch: usize,
    /// Entries read back by cursor pagination.
    pub read_entries: usize,
    /// Page size of the cursor reads.
    pub page: u32,
    /// Repetitions of each measurement.
    pub repeats: usize,
    /// The whole-stream read.
    pub long: Long,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only sqlite|postgres|mongodb|clickhouse|bridge|logstore|builds` measures one backend (BENCHMARKS.md is then not written).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let wants = |backend: &str| only.as_deref().is_none_or(|o| o == backend);
    let sizes = if quick {
        Sizes {
            single_appends: 500,
            batches: 20,
            batch: 100,
            read_entries: 20_000,
            page: 1_000,
            repeats: 1,
            long: LONG,
        }
    } else {
        Sizes {
            single_appends: 3_000,
            batches: 200,
            batch: 100,
            read_entries: 1_000_000,
            page: 1_000,
            repeats: 5,
            long: LONG,
        }
    };
    // MongoDB's server (SecantusDB, in Python) is slow: smaller sizes keep its part to minutes.
    let mongo_sizes = Sizes {
        batches: if quick { 8 } else { 16 },
        read_entries: if quick { 3_000 } else { 5_000 },
        repeats: if quick { 1 } else { 3 },
        long: Long {
            events: if quick { 3_000 } else { 6_000 },
            page: if quick { 1_000 } else { 3_000 },
        },
        ..sizes
    };
    // ClickHouse: inserts are cheap, but the current engine answers through a Python front.
    let clickhouse_sizes = Sizes {
        batches: if quick { 10 } else { 100 },
        read_entries: if quick { 3_000 } else { 20_000 },
        repeats: if quick { 1 } else { 3 },
        long: Long {
            events: if quick { 3_000 } else { 20_000 },
            page: if quick { 1_000 } else { 5_000 },
        },
        ..sizes
    };
    let mut report = Report::new(sizes, quick);
    report.setting(
        "pools",
        "no ping per acquire for ledger's pools or the baselines'; ledger's SQLite store keeps \
         one connection for writes",
    );
    if wants("sqlite")
        && let Err(e) = sqlite::run(sizes, &mut report).await
    {
        eprintln!("bench: sqlite failed: {e}");
        std::process::exit(1);
    }
    match std::env::var("LEDGER_POSTGRES_URL") {
        _ if !wants("postgres") => {}
        Ok(url) => {
            if let Err(e) = postgres::run(&url, sizes, &mut report).await {
                eprintln!("bench: postgres failed: {e}");
                std::process::exit(1);
            }
        }
        Err(_) => {
            eprintln!("bench: LEDGER_POSTGRES_URL is not set; run through `cargo xtask bench`");
            std::process::exit(1);
        }
    }
    match std::env::var("LEDGER_MONGODB_URL") {
        _ if !wants("mongodb") => {}
        Ok(url) => {
            if let Err(e) = mongo::run(&url, mongo_sizes, &mut report).await {
                eprintln!("bench: mongodb failed: {e}");
                std::process::exit(1);
            }
        }
        Err(_) => {
            eprintln!("bench: LEDGER_MONGODB_URL is not set; run through `cargo xtask bench`");
            std::process::exit(1);
        }
    }
    if wants("clickhouse") {
        report.setting(
            "ClickHouse sizes",
            format!(
                "{} batches of {} (to the writer's own stream with ExpectedVersion::Any); {} \
                 entries read back by cursor pagination in pages of {}; one stream of {} events \
                 read whole in pages of {} (each read stream written in one append); {} \
                 repetitions",
                clickhouse_sizes.batches,
                clickhouse_sizes.batch,
                clickhouse_sizes.read_entries,
                clickhouse_sizes.page,
                clickhouse_sizes.long.events,
                clickhouse_sizes.long.page,
                clickhouse_sizes.repeats
            ),
        );
    }
    for (backend, var) in [
        (
            (
                "ClickHouse",
                "chdb-core 26.9.0 (the ClickHouse engine in-process) behind the HTTP front of \
                 xtask/chdb, a Python server that runs one query at a time",
            ),
            "LEDGER_CLICKHOUSE_URL",
        ),
        (
            ("ClickHouse 18.16", "Debian's clickhouse-server 18.16.1"),
            "LEDGER_CLICKHOUSE_LEGACY_URL",
        ),
    ] {
        match std::env::var(var) {
            _ if !wants("clickhouse") => {}
            Ok(url) => {
                if let Err(e) = clickhouse::run(backend, &url, clickhouse_sizes, &mut report).await
                {
                    eprintln!("bench: {} failed: {e}", backend.0);
                    std::process::exit(1);
                }
            }
            Err(_) => {
                eprintln!("bench: {var} is not set; run through `cargo xtask bench`");
                std::process::exit(1);
            }
        }
    }
    match std::env::var("LEDGER_POSTGRES_URL") {
        _ if !wants("bridge") => {}
        Ok(url) => {
            let bridge_sizes = bridge::BridgeSizes {
                mutations: if quick { 2_000 } else { 20_000 },
                repeats: if quick { 1 } else { 3 },
                load_rate: 200,
                load_for: Duration::from_secs(if quick { 2 } else { 10 }),
            };
            report.setting(
                "bridge sizes",
                format!(
                    "{} single-entry appends over 50 streams in the source (one feed record \
                     each), copied {} times into fresh sinks; bridge options as default but \
                     pages of 500 (serial, one transaction per page)",
                    bridge_sizes.mutations, bridge_sizes.repeats
                ),
            );
            if let Err(e) = bridge::run(&url, bridge_sizes, &mut report).await {
                eprintln!("bench: bridge failed: {e}");
                std::process::exit(1);
            }
        }
        Err(_) => {
            eprintln!("bench: LEDGER_POSTGRES_URL is not set; run through `cargo xtask bench`");
            std::process::exit(1);
        }
    }
    if wants("logstore") {
        let sizes = || logstore::LogSizes {
            logs: if quick { 20_000 } else { 1_000_000 },
            query_runs: if quick { 10 } else { 60 },
        };
        report.setting(
            "log store",
            format!(
                "{} logs over one week (5 providers × 4 models, 90 % success, 8 % error, 2 % \
                 processing, one metadata key, short messages), ingested by {} tasks through \
                 one LogWriter (batches of up to 1000); each query run {} times after one \
                 warm-up run, its filters varied",
                sizes().logs,
                4,
                sizes().query_runs
            ),
        );
        if let Err(e) = logstore::run_sqlite(sizes(), &mut report).await {
            eprintln!("bench: log store on SQLite failed: {e}");
            std::process::exit(1);
        }
        match std::env::var("LEDGER_POSTGRES_URL") {
            Ok(url) => {
                if let Err(e) = logstore::run_postgres(&url, sizes(), &mut report).await {
                    eprintln!("bench: log store on PostgreSQL failed: {e}");
                    std::process::exit(1);
                }
            }
            Err(_) => {
                eprintln!("bench: LEDGER_POSTGRES_URL is not set; run through `cargo xtask bench`");
                std::process::exit(1);
            }
        }
    }
    if wants("builds") {
        let sizes = builds::BuildSizes {
            builds: if quick { 500 } else { 5_000 },
            snapshots: 10,
            partitions: 3,
        };
        report.setting(
            "build events",
            format!(
                "{} records on a topic of {} partitions of the tansu broker ({} builds, {} \
                 snapshots each in time order, about 900 bytes, lz4), read by a new consumer \
                 group from the beginning in batches of up to 500; the service's time runs \
                 until every record is stored and the read model has applied it",
                sizes.records(),
                sizes.partitions,
                sizes.builds,
                sizes.snapshots
            ),
        );
        let (Ok(brokers), Ok(postgres)) = (
            std::env::var("LEDGER_KAFKA_BROKERS"),
            std::env::var("LEDGER_POSTGRES_URL"),
        ) else {
            eprintln!(
                "bench: LEDGER_KAFKA_BROKERS or LEDGER_POSTGRES_URL is not set; run through `cargo xtask bench`"
            );
            std::process::exit(1);
        };
        if let Err(e) = builds::run(&brokers, &postgres, sizes, &mut report).await {
            eprintln!("bench: build events failed: {e}");
            std::process::exit(1);
        }
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
    let text = report.render();
    if quick || only.is_some() {
        println!("{text}\n(--quick or --only: BENCHMARKS.md not written)");
    } else {
        std::fs::write(&out, &text).expect("BENCHMARKS.md is writable");
        println!("{text}\nwrote {}", out.display());
    }
}
