//! Schema of one store and its versioned migrations.
//!
//! A store named `t` owns four tables: `t` (entries), `t_streams` (each stream's version, which
//! survives trimming), `t_feed` (the change feed: a mutation's JSON, or an append's entry ids
//! and version) and `t_cursors` (named positions). Applied
//! migrations are recorded per store in `ledger_migrations`; they run inside `BEGIN IMMEDIATE`, so
//! two processes opening the same file at once apply each migration exactly once.

use sqlx::SqlitePool;

use ledger_core::Result;

use ledger_sql::{Migration, MigrationSql};

/// The store's migrations; `{t}` stands for the validated table name.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "entries, streams, change feed and cursors",
        statements: &[
            r#"CREATE TABLE "{t}" (
    -- AUTOINCREMENT: ids are never reused after a trim, so cursors stay valid.
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    order_key      TEXT,
    dedup_key      TEXT,
    schema_version INTEGER NOT NULL,
    metadata       TEXT    NOT NULL DEFAULT '{}',
    tags           TEXT    NOT NULL DEFAULT '[]',
    annotations    TEXT    NOT NULL DEFAULT '{}',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER,
    UNIQUE (stream, version)
)"#,
            r#"CREATE INDEX "{t}_stream_id" ON "{t}" (stream, id)"#,
            r#"CREATE UNIQUE INDEX "{t}_dedup" ON "{t}" (stream, dedup_key) WHERE dedup_key IS NOT NULL"#,
            r#"CREATE INDEX "{t}_order_key" ON "{t}" (stream, order_key, id) WHERE order_key IS NOT NULL"#,
            r#"CREATE TABLE "{t}_streams" (
    stream  TEXT    PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID"#,
            r#"CREATE TABLE "{t}_feed" (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      TEXT    NOT NULL,
    mutation    TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL
)"#,
            r#"CREATE TABLE "{t}_cursors" (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID"#,
        ],
    },
    Migration {
        version: 2,
        description: "change-feed appends name their entries instead of copying them",
        // SQLite cannot drop a NOT NULL: the feed table is rebuilt, positions kept.
        statements: &[
            r#"CREATE TABLE "{t}_feed_v2" (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      TEXT    NOT NULL,
    -- The mutation's JSON; NULL for an append, which names its entries instead:
    mutation    TEXT,
    -- An append's entry ids as JSON runs [[first, last], …], and the stream's version after it.
    ids         TEXT,
    version     INTEGER,
    recorded_at INTEGER NOT NULL
)"#,
            r#"INSERT INTO "{t}_feed_v2" (position, stream, mutation, recorded_at)
    SELECT position, stream, mutation, recorded_at FROM "{t}_feed""#,
            r#"DROP TABLE "{t}_feed""#,
            r#"ALTER TABLE "{t}_feed_v2" RENAME TO "{t}_feed""#,
        ],
    },
];

/// The newest schema version this crate knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// `BEGIN IMMEDIATE` takes the write lock first, which also serializes concurrent migrators.
const MIGRATION_SQL: MigrationSql<'static> = MigrationSql {
    begin: "BEGIN IMMEDIATE",
    lock: None,
    create_table: "CREATE TABLE IF NOT EXISTS ledger_migrations (
        store       TEXT    NOT NULL,
        version     INTEGER NOT NULL,
        description TEXT    NOT NULL,
        applied_at  TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
        PRIMARY KEY (store, version)
    ) WITHOUT ROWID",
    applied: "SELECT COALESCE(MAX(version), 0) FROM ledger_migrations WHERE store = ?",
    record: "INSERT INTO ledger_migrations (store, version, description) VALUES (?, ?, ?)",
};

/// Applies the migrations `table` is missing and records them.
pub async fn migrate(pool: &SqlitePool, table: &str) -> Result<()> {
    ledger_sql::migrate(pool, &MIGRATION_SQL, table, MIGRATIONS, |sql| {
        sql.replace("{t}", table)
    })
    .await
}
