//! Stores of every kind for bridge tests, on fresh tables, and comparing two stores entry by
//! entry.
#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeSet;

use ledger::{
    AppendInput, Entry, EntryId, ExpectedVersion, ListOptions, MemoryStore, OpenOptions,
    ReadOptions, Store, StreamStat, TimestampPrecision,
};
use ledger_core::testkit::{fresh_table, server::server_url};

/// The backends a bridge test can use, as source (those with a change feed) or sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Sqlite,
    Postgres,
    Mongo,
    ClickHouse,
    ClickHouseLegacy,
}

impl Kind {
    /// The URL of this kind's server (or SQLite file), with the store's own parameters.
    pub fn url(self, table: &str, change_feed: bool) -> String {
        let server = |var: &str| server_url(var, env!("CARGO_MANIFEST_DIR"));
        let base = match self {
            Kind::Memory => unreachable!("the in-memory store has no URL"),
            Kind::Sqlite => {
                let dir = std::env::temp_dir().join("ledger-bridge-tests");
                std::fs::create_dir_all(&dir).expect("a temp dir");
                format!("sqlite://{}", dir.join(format!("{table}.db")).display())
            }
            Kind::Postgres => server("LEDGER_POSTGRES_URL"),
            Kind::Mongo => server("LEDGER_MONGODB_URL"),
            Kind::ClickHouse => clickhouse(&server("LEDGER_CLICKHOUSE_URL")),
            Kind::ClickHouseLegacy => clickhouse(&server("LEDGER_CLICKHOUSE_LEGACY_URL")),
        };
        let separator = if base.contains('?') { '&' } else { '?' };
        let feed = if change_feed { "&change_feed=true" } else { "" };
        match self {
            // ClickHouse takes the table beside its database parameter.
            Kind::ClickHouse | Kind::ClickHouseLegacy => format!("{base}/?table={table}"),
            _ => format!("{base}{separator}table={table}{feed}"),
        }
    }

    /// A store on a fresh table, with the change feed on where `change_feed` (sources).
    pub async fn open(self, change_feed: bool) -> Store {
        let table = fresh_table();
        if self == Kind::Memory {
            return MemoryStore::new().into();
        }
        let url = self.url(&table, change_feed);
        let options = OpenOptions::new().table(table).change_feed(change_feed);
        ledger::open_with(&url, options)
            .await
            .unwrap_or_else(|e| panic!("opening {self:?} at {url}: {e}"))
    }
}

/// `http://host:port` as the facade's `clickhouse://host:port`.
fn clickhouse(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    format!("clickhouse://{rest}")
}

pub fn item(n: u64) -> AppendInput {
    AppendInput::new(serde_json::json!({ "n": n, "text": format!("item {n}") }))
}

pub async fn append(store: &Store, stream: &str, inputs: Vec<AppendInput>) -> Vec<EntryId> {
    let result = store
        .append(stream, inputs, ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("append to {stream}: {e}"));
    result
        .outcomes
        .iter()
        .filter(|o| o.is_appended())
        .map(|o| o.id())
        .collect()
}

pub fn tags(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|t| t.to_string()).collect()
}

/// Everything a reader sees of `streams` in `store`: stat and entries (timestamps cut to
/// `precision`), plus the streams listed.
pub async fn state(
    store: &Store,
    streams: &[String],
    precision: TimestampPrecision,
) -> (Vec<String>, Vec<(StreamStat, Vec<Entry>)>) {
    let listed = store
        .list_streams(&ListOptions::new().limit(ledger::MAX_LIMIT))
        .await
        .unwrap_or_else(|e| panic!("list_streams: {e}"));
    let mut seen = Vec::new();
    for stream in streams {
        let stat = store
            .stat(stream)
            .await
            .unwrap_or_else(|e| panic!("stat {stream}: {e}"));
        let mut entries = read_all(store, stream).await;
        for e in &mut entries {
            e.created_at = precision.truncate(e.created_at);
            e.updated_at = e.updated_at.map(|t| precision.truncate(t));
        }
        seen.push((stat, entries));
    }
    (listed, seen)
}

pub async fn read_all(store: &Store, stream: &str) -> Vec<Entry> {
    use futures::StreamExt;
    store
        .read_all(stream, ReadOptions::new().limit(ledger::MAX_LIMIT))
        .map(|e| e.unwrap_or_else(|e| panic!("reading {stream}: {e}")))
        .collect()
        .await
}

/// Asserts that `sink` holds exactly what `source` does, entry by entry, on `streams`.
pub async fn assert_same(source: &Store, sink: &Store, streams: &[String], context: &str) {
    let precision = source
        .capabilities()
        .timestamp_precision
        .min(sink.capabilities().timestamp_precision);
    let (want, got) = (
        state(source, streams, precision).await,
        state(sink, streams, precision).await,
    );
    assert_eq!(
        got.0, want.0,
        "{context}: the sink lists the source's streams"
    );
    for ((stream, want), got) in streams.iter().zip(&want.1).zip(&got.1) {
        assert_eq!(got.0, want.0, "{context}: stat of {stream}");
        assert_eq!(got.1.len(), want.1.len(), "{context}: entries of {stream}");
        for (g, w) in got.1.iter().zip(&want.1) {
            assert_eq!(g, w, "{context}: entry {} of {stream}", w.id);
        }
    }
}
