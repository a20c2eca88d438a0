//! Finding the servers that backend tests need.

use std::path::Path;

use super::containers::{self, Servers};

/// The URL in environment variable `var`, else the one `cargo xtask services up` recorded in
/// `target/services/env` of the workspace containing `manifest_dir`. Panics with instructions
/// when neither has it: a test that needs a server never passes silently without one.
///
/// With `LEDGER_TEST_SERVERS=containers`, the URL of a Docker container started for `var`
/// instead (see [`containers`]).
pub fn server_url(var: &str, manifest_dir: &str) -> String {
    if Servers::from_env() == Servers::Containers {
        return containers::url(var);
    }
    if let Ok(url) = std::env::var(var)
        && !url.is_empty()
    {
        return url;
    }
    let recorded = Path::new(manifest_dir)
        .ancestors()
        .map(|dir| dir.join("target").join("services").join("env"))
        .find(|file| file.exists())
        .and_then(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix(var)?.strip_prefix('=').map(str::to_owned))
        });
    recorded.unwrap_or_else(|| {
        panic!(
            "{var} is not set and no server is recorded: run `cargo xtask test` (starts the \
             servers, runs every test, stops them) or `cargo xtask services up` first; with \
             Docker, LEDGER_TEST_SERVERS=containers starts containers instead"
        )
    })
}
