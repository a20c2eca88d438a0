//! `cargo xtask`: the one entry point for checks.
//!
//! - `cargo xtask ci`: `cargo fmt --check`, `cargo clippy -D warnings`, then `cargo xtask test`.
//! - `cargo xtask test`: the whole test suite (servers, when backends need them, are started and
//!   stopped around it).
//! - `cargo xtask bench`: throughput against raw baselines measured in the same run; writes
//!   `BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench;
mod services;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test(),
        Some("bench") => bench::run(&args[1..]),
        Some("services") => match args.get(1).map(String::as_str) {
            Some("up") => services::up(services::Mode::Test).map(drop),
            Some("down") => services::down(),
            Some("status") => services::status(),
            _ => Err(USAGE.to_owned()),
        },
        _ => Err(USAGE.to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <ci | test | bench [--quick] | services <up|down|status>>";

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, echoing it and its duration.
fn run(program: &str, args: &[&str]) -> Result {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    eprintln!(
        "xtask: {program} {} took {:.1?}",
        args[0],
        started.elapsed()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed with {status}",
            args.join(" ")
        ))
    }
}

fn ci() -> Result {
    run("cargo", &["fmt", "--all", "--check"])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    test()
}

/// Brings the services up, runs every test with their URLs exported, and brings them down
/// again whatever the tests did.
fn test() -> Result {
    services::up_and_export(services::Mode::Test)?;
    let tested = services::test_chdb_front()
        .and_then(|()| run("cargo", &["test", "--workspace", "--all-features"]))
        // The facade with its default features only: a backend left out says how to add it.
        .and_then(|()| run("cargo", &["test", "--package", "ledger", "--test", "open"]));
    // A server that will not stop is reported, but does not turn passing tests into a failure.
    if let Err(e) = services::down() {
        eprintln!("xtask: warning: {e}");
    }
    tested
}
