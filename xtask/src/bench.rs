//! `cargo xtask bench`: runs the benchmark binaries in release mode.

use crate::Result;

pub fn run(args: &[String]) -> Result {
    let mut cargo_args = vec!["run", "--release", "--package", "ledger-bench", "--"];
    cargo_args.extend(args.iter().map(String::as_str));
    crate::run("cargo", &cargo_args)
}
