//! Schema of one store and its versioned migrations.
//!
//! A store named `t` owns `t` (entries), `t_ids` (the id sequence), `t_streams` (each stream's
//! version, which survives trimming, and the per-stream append lock), `t_feed` with `t_feed_pos`
//! (the change feed and its position sequence) and `t_cursors`. Applied migrations are recorded
//! per store in `ledger_migrations`. A transaction-scoped advisory lock serializes migrations, so
//! processes opening the same store at once apply each migration exactly once.

use sqlx::PgPool;

use ledger_core::Result;

use crate::sql::Names;
use ledger_sql::{Migration, MigrationSql};

/// `(version, description, statements)`; `{t}` stands for the validated table name and
/// `{streams}`, `{ids}`, `{feed}`, `{feed_pos}`, `{feed_head}`, `{cursors}` for the derived
/// names.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "entries, streams, change feed and cursors",
        statements: &[
            r#"CREATE SEQUENCE "{ids}""#,
            r#"CREATE TABLE "{t}" (
    id             BIGINT      PRIMARY KEY,
    stream         TEXT        COLLATE "C" NOT NULL,
    version        BIGINT      NOT NULL,
    payload        JSONB       NOT NULL,
    -- The exact JSON text, only for payloads JSONB cannot hold (U+0000 in a string).
    payload_exact  TEXT,
    order_key      TEXT,
    dedup_key      TEXT,
    schema_version BIGINT      NOT NULL,
    metadata       JSONB       NOT NULL DEFAULT '{}',
    tags           JSONB       NOT NULL DEFAULT '[]',
    annotations    JSONB       NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ,
    UNIQUE (stream, version)
)"#,
            r#"CREATE INDEX ON "{t}" (stream, id)"#,
            r#"CREATE UNIQUE INDEX ON "{t}" (stream, dedup_key) WHERE dedup_key IS NOT NULL"#,
            r#"CREATE INDEX ON "{t}" (stream, order_key, id) WHERE order_key IS NOT NULL"#,
            r#"CREATE TABLE "{streams}" (
    stream  TEXT   COLLATE "C" PRIMARY KEY,
    version BIGINT NOT NULL
)"#,
            r#"CREATE TABLE "{feed_head}" (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    position BIGINT  NOT NULL
)"#,
            r#"INSERT INTO "{feed_head}" (position) VALUES (0)"#,
            r#"CREATE TABLE "{feed}" (
    position    BIGINT      PRIMARY KEY,
    stream      TEXT        NOT NULL,
    -- JSON text, exact (JSONB could not hold every payload).
    mutation    TEXT        NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"#,
            r#"CREATE TABLE "{cursors}" (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
)"#,
        ],
    },
    Migration {
        version: 2,
        description: "change-feed appends name their entries; positions from a sequence",
        statements: &[
            r#"ALTER TABLE "{feed}" ALTER COLUMN mutation DROP NOT NULL"#,
            // An append's entry ids as JSON runs [[first, last], …], and the stream's version
            // after it (its mutation is then NULL).
            r#"ALTER TABLE "{feed}" ADD COLUMN ids TEXT, ADD COLUMN version BIGINT"#,
            r#"CREATE SEQUENCE "{feed_pos}""#,
            // Positions continue after the last one the counter row handed out.
            r#"SELECT setval('"{feed_pos}"', GREATEST(position, 1), position > 0)
               FROM "{feed_head}""#,
            r#"DROP TABLE "{feed_head}""#,
        ],
    },
];

/// The newest schema version this crate knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// A transaction-scoped advisory lock serializes migrators (any constant works, as long as
/// every process running ledger migrations uses the same: "ledger" in ASCII).
const MIGRATION_SQL: MigrationSql<'static> = MigrationSql {
    begin: "BEGIN",
    lock: Some("SELECT pg_advisory_xact_lock(119182731994482)"),
    create_table: "CREATE TABLE IF NOT EXISTS ledger_migrations (
        store       TEXT        NOT NULL,
        version     BIGINT      NOT NULL,
        description TEXT        NOT NULL,
        applied_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (store, version)
    )",
    applied: "SELECT COALESCE(MAX(version), 0)::BIGINT FROM ledger_migrations WHERE store = $1",
    record: "INSERT INTO ledger_migrations (store, version, description) VALUES ($1, $2, $3)",
};

/// Applies the migrations the store is missing and records them.
pub async fn migrate(pool: &PgPool, names: &Names) -> Result<()> {
    ledger_sql::migrate(pool, &MIGRATION_SQL, &names.table, MIGRATIONS, |sql| {
        names.fill(sql)
    })
    .await
}
