//! The `build` read model: one row per build, the newest snapshot's, maintained from the
//! ledger's change feed. A batch is applied in one transaction with the checkpoint; the upsert
//! is guarded by `(timeUpdated, ledger version)`, so a replay, a redelivery or an older snapshot
//! arriving late never rolls a row back.

use std::collections::HashMap;

use ledger_core::{FeedRecord, Mutation};
use ledger_readmodel::{Cell, Db, Dialect, Kind, Sql, TableCheckpoint, Tx};
use serde_json::Value;

use crate::error::Result;
use crate::event::{Build, BuildEvent};

/// The prefix of every build's ledger stream: `build-<id>`.
pub const BUILD_STREAM_PREFIX: &str = "build-";

/// The ledger stream of build `id` (a lower-cased UUID).
pub fn build_stream(id: &str) -> String {
    format!("{BUILD_STREAM_PREFIX}{id}")
}

/// The table of checkpoints kept with the read model.
const CHECKPOINTS: &str = "builds_checkpoint";

/// Rows per multi-row upsert (25 values each: well under both databases' limits).
const UPSERT_ROWS: usize = 400;

const COLUMNS: &str = "build_id, request_id, project_id, time_started, time_updated, \
    bytes_virtual, bytes_real, config, branch_name, branch_url, commit_url, commit_ref, \
    pr_description, pr_url, pr_name, pr_number, reaped, reaped_reason, reaped_reason_text, \
    reaped_date, pinned, status_submitted, status_build, ledger_version";

const KINDS: [Kind; 25] = [
    Kind::Int,
    Kind::Text,
    Kind::Text,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Text,
    Kind::Text,
    Kind::Text,
    Kind::Text,
    Kind::Text,
    Kind::Text,
    Kind::Text,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Text,
    Kind::Int,
];

/// Creates the tables if missing (the migration run at start).
pub(crate) async fn migrate(db: &Db) -> Result<()> {
    let id = match db.dialect() {
        Dialect::Sqlite => "INTEGER PRIMARY KEY",
        Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    let statements = [
        format!(
            "CREATE TABLE IF NOT EXISTS builds (
                id {id},
                build_id TEXT NOT NULL UNIQUE,
                request_id TEXT,
                project_id TEXT NOT NULL,
                time_started BIGINT NOT NULL,
                time_updated BIGINT NOT NULL,
                bytes_virtual BIGINT NOT NULL,
                bytes_real BIGINT NOT NULL,
                config TEXT NOT NULL,
                branch_name TEXT,
                branch_url TEXT,
                commit_url TEXT,
                commit_ref TEXT,
                pr_description TEXT,
                pr_url TEXT,
                pr_name TEXT,
                pr_number TEXT,
                reaped BIGINT NOT NULL,
                reaped_reason BIGINT NOT NULL,
                reaped_reason_text TEXT,
                reaped_date BIGINT,
                pinned BIGINT NOT NULL,
                status_submitted TEXT NOT NULL,
                status_build TEXT NOT NULL,
                ledger_version BIGINT NOT NULL
            )"
        ),
        "CREATE INDEX IF NOT EXISTS builds_project ON builds (project_id, reaped)".to_owned(),
    ];
    for statement in statements {
        db.execute(&Sql::new(statement)).await?;
    }
    checkpoint(db, "build")?.migrate().await?;
    Ok(())
}

/// The checkpoint `name` kept with the read model.
pub(crate) fn checkpoint(db: &Db, name: &str) -> Result<TableCheckpoint> {
    Ok(TableCheckpoint::new(db.clone(), CHECKPOINTS, name)?)
}

/// A build event as the ledger stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The event and its row.
    pub event: BuildEvent,
    /// The entry's version in its build's stream.
    pub version: u64,
    /// The change-feed position it was appended at.
    pub position: u64,
}

/// The build events among `records`, in feed order. An entry that no longer parses (it was
/// checked before it was stored, so only a change of rules makes one) is logged and left out.
pub fn stored_events(records: &[FeedRecord]) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for record in records {
        let Mutation::Append { entries, .. } = &record.mutation else {
            continue;
        };
        if !record.stream.starts_with(BUILD_STREAM_PREFIX) {
            continue;
        }
        for entry in entries {
            match BuildEvent::from_payload(entry.payload.clone()) {
                Ok(event) => events.push(StoredEvent {
                    event,
                    version: entry.version,
                    position: record.position,
                }),
                Err(e) => tracing::error!(
                    stream = %record.stream, version = entry.version, reason = %e,
                    "a stored build event no longer parses; the read model leaves it out"
                ),
            }
        }
    }
    events
}

/// Applies `records` and moves the read model's checkpoint past them, in one transaction.
/// Records at or before the checkpoint (another process applied them) are skipped.
pub(crate) async fn apply(db: &Db, records: Vec<FeedRecord>) -> Result<()> {
    let Some(last) = records.last().map(|r| r.position) else {
        return Ok(());
    };
    let checkpoint = checkpoint(db, "build")?;
    let mut tx = db.begin().await?;
    let done = checkpoint.lock(&mut tx).await?;
    if last <= done {
        return Ok(());
    }
    let fresh: Vec<FeedRecord> = records.into_iter().filter(|r| r.position > done).collect();
    // One row per build: PostgreSQL refuses an upsert touching a row twice, and only the newest
    // snapshot of the batch can win anyway.
    let mut newest: HashMap<String, (Build, u64)> = HashMap::new();
    for stored in stored_events(&fresh) {
        let key = (stored.event.build.time_updated, stored.version);
        match newest.get(&stored.event.build.build_id) {
            Some((b, v)) if (b.time_updated, *v) >= key => {}
            _ => {
                newest.insert(
                    stored.event.build.build_id.clone(),
                    (stored.event.build, stored.version),
                );
            }
        }
    }
    let rows: Vec<(Build, u64)> = newest.into_values().collect();
    for chunk in rows.chunks(UPSERT_ROWS) {
        upsert(&mut tx, chunk).await?;
    }
    checkpoint.save_in(&mut tx, last).await?;
    Ok(tx.commit().await?)
}

async fn upsert(tx: &mut Tx, rows: &[(Build, u64)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(format!("INSERT INTO builds ({COLUMNS}) VALUES "));
    for (i, (b, version)) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(");
        sql.bind(b.build_id.as_str()).push(", ");
        sql.bind(b.request_id.clone()).push(", ");
        sql.bind(b.project_id.as_str()).push(", ");
        sql.bind(b.time_started).push(", ");
        sql.bind(b.time_updated).push(", ");
        sql.bind(b.bytes_virtual).push(", ");
        sql.bind(b.bytes_real).push(", ");
        sql.bind(b.config.to_string()).push(", ");
        for text in [
            &b.branch_name,
            &b.branch_url,
            &b.commit_url,
            &b.commit_ref,
            &b.pr_description,
            &b.pr_url,
            &b.pr_name,
            &b.pr_number,
        ] {
            sql.bind(text.clone()).push(", ");
        }
        sql.bind(i64::from(b.reaped)).push(", ");
        sql.bind(b.reaped_reason).push(", ");
        sql.bind(b.reaped_reason_text.clone()).push(", ");
        match b.reaped_date {
            Some(t) => sql.bind(t),
            None => sql.push("NULL"),
        };
        sql.push(", ");
        sql.bind(i64::from(b.pinned)).push(", ");
        sql.bind(b.status_submitted.as_str()).push(", ");
        sql.bind(b.status_build.as_str()).push(", ");
        sql.bind(*version as i64).push(")");
    }
    sql.push(" ON CONFLICT (build_id) DO UPDATE SET ");
    let updates: Vec<String> = COLUMNS
        .split(", ")
        .filter(|c| *c != "build_id")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    sql.push(&updates.join(", "));
    sql.push(
        " WHERE excluded.time_updated > builds.time_updated \
         OR (excluded.time_updated = builds.time_updated \
             AND excluded.ledger_version > builds.ledger_version)",
    );
    tx.execute(&sql).await?;
    Ok(())
}

/// A row as stored, with its number and the ledger version of the snapshot it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRow {
    /// The row's number (stable across updates).
    pub id: i64,
    /// The ledger version of the snapshot the row holds.
    pub ledger_version: u64,
    /// The row.
    pub build: Build,
}

impl BuildRow {
    fn from_cells(cells: Vec<Cell>) -> BuildRow {
        let mut c = cells.into_iter();
        let mut next = move || c.next().unwrap_or(Cell::Int(None));
        let id = next().int();
        let build_id = next().text().unwrap_or_default();
        let request_id = next().text();
        let project_id = next().text().unwrap_or_default();
        let time_started = next().int();
        let time_updated = next().int();
        let bytes_virtual = next().int();
        let bytes_real = next().int();
        let config = next()
            .text()
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or(Value::Null);
        let branch_name = next().text();
        let branch_url = next().text();
        let commit_url = next().text();
        let commit_ref = next().text();
        let pr_description = next().text();
        let pr_url = next().text();
        let pr_name = next().text();
        let pr_number = next().text();
        let reaped = next().int() != 0;
        let reaped_reason = next().int();
        let reaped_reason_text = next().text();
        let reaped_date = match next() {
            Cell::Int(v) => v,
            _ => None,
        };
        let pinned = next().int() != 0;
        let status_submitted = next().text().unwrap_or_default();
        let status_build = next().text().unwrap_or_default();
        let ledger_version = next().int() as u64;
        BuildRow {
            id,
            ledger_version,
            build: Build {
                build_id,
                project_id,
                request_id,
                time_started,
                time_updated,
                bytes_virtual,
                bytes_real,
                config,
                branch_name,
                branch_url,
                commit_url,
                commit_ref,
                pr_description,
                pr_url,
                pr_name,
                pr_number,
                reaped,
                reaped_reason,
                reaped_reason_text,
                reaped_date,
                pinned,
                status_submitted,
                status_build,
            },
        }
    }
}

/// The row of build `id` (a lower-cased UUID), if any.
pub(crate) async fn build(db: &Db, id: &str) -> Result<Option<BuildRow>> {
    let mut sql = Sql::new(format!(
        "SELECT id, {COLUMNS} FROM builds WHERE build_id = "
    ));
    sql.bind(id);
    let rows = db.fetch(&sql, &KINDS).await?;
    Ok(rows.into_iter().next().map(BuildRow::from_cells))
}

/// Up to `limit` values of `column` (a build or project id) after `after`, ascending.
pub(crate) async fn ids(
    db: &Db,
    column: IdColumn,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<String>> {
    let column = match column {
        IdColumn::Build => "build_id",
        IdColumn::Project => "project_id",
    };
    let mut sql = Sql::new(format!("SELECT DISTINCT {column} FROM builds"));
    if let Some(after) = after {
        sql.push(&format!(" WHERE {column} > ")).bind(after);
    }
    sql.push(&format!(" ORDER BY {column} LIMIT "))
        .bind(i64::from(limit));
    Ok(db.fetch_texts(&sql).await?)
}

/// Which ids a list returns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdColumn {
    Build,
    Project,
}

/// The real bytes of project `id`'s builds that are not reaped (0 for none).
pub(crate) async fn project_disk_usage(db: &Db, id: &str) -> Result<i64> {
    let mut sql = Sql::new(
        "SELECT CAST(COALESCE(SUM(bytes_real), 0) AS BIGINT) FROM builds \
         WHERE reaped = 0 AND project_id = ",
    );
    sql.bind(id);
    let rows = db.fetch(&sql, &[Kind::Int]).await?;
    Ok(rows.first().map_or(0, |r| r[0].int()))
}
