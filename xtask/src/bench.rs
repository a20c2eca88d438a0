//! `cargo xtask bench`: runs the benchmark binary in release mode against durable servers.

use crate::Result;
use crate::services::{self, Mode};

pub fn run(args: &[String]) -> Result {
    // Benchmarks need the servers' durable defaults, not the test settings.
    services::down()?;
    services::up_and_export(Mode::Durable)?;
    let mut cargo_args = vec!["run", "--release", "--package", "ledger-bench", "--"];
    cargo_args.extend(args.iter().map(String::as_str));
    let measured = crate::run("cargo", &cargo_args);
    if let Err(e) = services::down() {
        eprintln!("xtask: warning: {e}");
    }
    measured
}
