//! The tables of a store, in the SQL every supported server generation accepts, and their
//! versioned migrations.

use clickhouse::Client;

use ledger_core::{Error, Result};

use crate::error::backend;

/// What the server speaks, from `SELECT version()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Before 22.1 (Debian's 18.16 among them): no `RowBinaryWithNamesAndTypes` validation, no
    /// `mutations_sync`.
    Legacy,
    /// 22.1 and later.
    Current,
}

impl Dialect {
    /// The dialect of a server reporting `version` (`"18.16.1"`, `"26.9.1.1"`).
    pub fn of(version: &str) -> Result<Dialect> {
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .ok_or_else(|| {
                Error::backend(
                    ledger_core::BackendErrorKind::Other,
                    format!("the server reports version {version:?}, which is not ClickHouse's"),
                )
            })?;
        Ok(if major >= 22 {
            Dialect::Current
        } else {
            Dialect::Legacy
        })
    }

    /// Whether the client checks rows against the table's columns
    /// ([`Client::with_validation`]): only servers that describe them in the crate's way.
    pub fn validates(self) -> bool {
        self == Dialect::Current
    }
}

/// The tables of the store `T`, quoted.
#[derive(Debug, Clone)]
pub struct Names {
    /// `T`: one row per entry revision.
    pub entries: String,
    /// `T_streams`: versions kept where the entries are gone (trimmed).
    pub streams: String,
    /// `T_cursors`: named positions.
    pub cursors: String,
    /// `T_schema`: the migrations applied.
    pub schema: String,
    /// The entries table unquoted, as `system.mutations` names it.
    pub bare: String,
}

impl Names {
    /// The names for store `table` (a name the core has validated: letters, digits, `_`).
    pub fn new(table: &str) -> Names {
        let quoted = |suffix: &str| format!("`{table}{suffix}`");
        Names {
            entries: quoted(""),
            streams: quoted("_streams"),
            cursors: quoted("_cursors"),
            schema: quoted("_schema"),
            bare: table.to_owned(),
        }
    }
}

/// The schema version this release writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The statements of each migration, by version (`{e}`, `{s}` and `{c}` stand for the tables).
const MIGRATIONS: [(u32, &[&str]); 1] = [(
    1,
    &[
        // One row per revision of an entry; reads use FINAL, so a replayed entry (same stream
        // and id) counts once before background merges run.
        "CREATE TABLE IF NOT EXISTS {e} (
            stream String, id Int64, version UInt64, payload String,
            order_key Nullable(String), dedup_key Nullable(String), schema_version UInt32,
            metadata_keys Array(String), metadata_values Array(String), tags Array(String),
            annotation_keys Array(String), annotation_values Array(String),
            created_at Int64, updated_at Nullable(Int64), revision UInt64, search String
        ) ENGINE = ReplacingMergeTree(revision) ORDER BY (stream, id)",
        "CREATE TABLE IF NOT EXISTS {s} (stream String, version UInt64)
            ENGINE = ReplacingMergeTree(version) ORDER BY stream",
        "CREATE TABLE IF NOT EXISTS {c} (name String, position UInt64)
            ENGINE = ReplacingMergeTree(position) ORDER BY name",
    ],
)];

/// Creates or upgrades the store's tables to [`SCHEMA_VERSION`]; refuses a store a later
/// release has upgraded.
pub async fn migrate(client: &Client, names: &Names) -> Result<()> {
    let create_schema = format!(
        "CREATE TABLE IF NOT EXISTS {} (version UInt32) ENGINE = MergeTree() ORDER BY version",
        names.schema
    );
    client
        .query(&create_schema)
        .execute()
        .await
        .map_err(backend)?;
    let applied: u32 = client
        .query(&format!("SELECT max(version) FROM {}", names.schema))
        .fetch_one()
        .await
        .map_err(backend)?;
    if applied > SCHEMA_VERSION {
        return Err(Error::backend(
            ledger_core::BackendErrorKind::Other,
            format!(
                "the store's schema is version {applied}, newer than this release's \
                 {SCHEMA_VERSION}: upgrade ledger-clickhouse"
            ),
        ));
    }
    for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        for statement in *statements {
            let sql = statement
                .replace("{e}", &names.entries)
                .replace("{s}", &names.streams)
                .replace("{c}", &names.cursors);
            client.query(&sql).execute().await.map_err(backend)?;
        }
        // Two stores opening at once may both record a version: `max` reads it once.
        client
            .query(&format!(
                "INSERT INTO {} (version) VALUES (?)",
                names.schema
            ))
            .bind(version)
            .execute()
            .await
            .map_err(backend)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_follows_the_major_version() {
        assert_eq!(Dialect::of("18.16.1").unwrap(), Dialect::Legacy);
        assert_eq!(Dialect::of("21.8.15.7").unwrap(), Dialect::Legacy);
        assert_eq!(Dialect::of("26.9.1.1").unwrap(), Dialect::Current);
        assert!(Dialect::of("PostgreSQL 15").is_err());
    }
}
