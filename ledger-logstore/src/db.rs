//! The read model's tables; the database interface is `ledger-readmodel`'s.

pub(crate) use ledger_readmodel::{Cell, Db, Dialect, Kind, Param, Sql, Tx};

/// The read model's tables, for `dialect`. Times are microseconds since the epoch (UTC), so
/// that bucket arithmetic is integer division on both databases. The wide columns live in
/// `logstore_bodies`, so that filtering and sorting read narrow rows (Bifrost's users saw
/// 7 000 rows weigh 950 MB). Sort indexes end with the id, the tie-breaker, and keep missing
/// values first (SQLite's only order, asked of PostgreSQL), so one index serves both
/// directions.
pub(crate) fn schema(dialect: Dialect) -> impl Iterator<Item = String> {
    let nulls_first = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " NULLS FIRST",
    };
    SCHEMA
        .iter()
        .map(move |statement| statement.replace("{NULLS_FIRST}", nulls_first))
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS logstore_logs (
        id TEXT PRIMARY KEY,
        parent_request_id TEXT,
        ts BIGINT NOT NULL,
        object_type TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        status TEXT NOT NULL,
        selected_key_id TEXT,
        selected_key_name TEXT,
        virtual_key_id TEXT,
        virtual_key_name TEXT,
        routing_rule_id TEXT,
        routing_rule_name TEXT,
        routing_engines TEXT,
        latency DOUBLE PRECISION,
        cost DOUBLE PRECISION,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        total_tokens BIGINT NOT NULL,
        cached_read_tokens BIGINT NOT NULL,
        stream BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        entry_id BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS logstore_bodies (
        id TEXT PRIMARY KEY,
        content_summary TEXT NOT NULL,
        summary TEXT NOT NULL,
        body TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS logstore_logs_ts ON logstore_logs (ts, id)",
    "CREATE INDEX IF NOT EXISTS logstore_logs_created_at ON logstore_logs (created_at)",
    "CREATE INDEX IF NOT EXISTS logstore_logs_status_ts ON logstore_logs (status, ts)",
    "CREATE INDEX IF NOT EXISTS logstore_logs_provider_model ON logstore_logs (provider, model, status, ts)",
    "CREATE INDEX IF NOT EXISTS logstore_logs_latency ON logstore_logs (latency{NULLS_FIRST}, id)",
    "CREATE INDEX IF NOT EXISTS logstore_logs_cost ON logstore_logs (cost{NULLS_FIRST}, id)",
    "CREATE INDEX IF NOT EXISTS logstore_logs_tokens ON logstore_logs (total_tokens, id)",
    "CREATE INDEX IF NOT EXISTS logstore_logs_entry ON logstore_logs (entry_id)",
    "CREATE TABLE IF NOT EXISTS logstore_metadata (
        log_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (log_id, key)
    )",
    "CREATE INDEX IF NOT EXISTS logstore_metadata_kv ON logstore_metadata (key, value)",
    "CREATE TABLE IF NOT EXISTS logstore_dimensions (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        name TEXT,
        last_seen BIGINT NOT NULL,
        PRIMARY KEY (kind, value)
    )",
    "CREATE TABLE IF NOT EXISTS logstore_hourly (
        ts BIGINT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        status TEXT NOT NULL,
        object_type TEXT NOT NULL,
        requests BIGINT NOT NULL,
        latency_sum DOUBLE PRECISION NOT NULL,
        latency_count BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        total_tokens BIGINT NOT NULL,
        cached_read_tokens BIGINT NOT NULL,
        cost DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (ts, provider, model, status, object_type)
    )",
];
