//! Appends: dedup lookup, version check and multi-row inserts in one write transaction, in one
//! round trip to SQLite when nothing stands in the way and two otherwise.
//!
//! sqlx hands every statement to SQLite's worker thread and back, which costs far more than the
//! statements themselves, so an append is sent as one command of several statements
//! ([`OneCommand`]): `BEGIN IMMEDIATE`, an `INSERT … SELECT` that puts the entries after the
//! stream's current version if `expected` admits it (its result says how many it wrote and the
//! last id), the feed record, the stream's new version (returned), and `COMMIT`. When that
//! writes nothing (`expected` did not hold) or a dedup key is taken, the append is decided the
//! careful way in two commands: one `SELECT` of everything the decision needs (the stream's
//! version, which dedup keys are taken, the table's last id), then all the writes. The write
//! lock is held from `BEGIN IMMEDIATE`, so nothing read can change before the writes; the
//! `UNIQUE (stream, version)`, dedup and primary-key indexes would reject a racing writer
//! anyway. Appends inside a caller's transaction always take the careful way: their transaction
//! cannot be rolled back to retry.

use std::collections::HashMap;

use futures::TryStreamExt;
use sqlx::sqlite::{SqliteQueryResult, SqliteRow};
use sqlx::{Either, Executor, QueryBuilder, Row, Sqlite, SqliteConnection};

use ledger_core::backend::append::{AppendPlan, dedup_keys, now, plan_append};
use ledger_core::backend::feed::id_runs;
use ledger_core::{AppendInput, AppendResult, EntryId, Error, ExpectedVersion, Result};

use crate::backend_err;
use crate::sql::Statements;

/// SQLite allows 32 766 bound values per statement; an entry row binds 10.
const ROWS_PER_INSERT: usize = 3_000;

/// Who opens and ends the transaction an append runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// The append sends `BEGIN IMMEDIATE` and `COMMIT` (or `ROLLBACK`) with its statements.
    Own,
    /// The caller has a transaction open and commits it.
    Caller,
}

/// The stream's version (0 if it was never written).
pub async fn stream_version(
    conn: &mut SqliteConnection,
    sql: &Statements,
    stream: &str,
) -> Result<u64> {
    let version: Option<i64> = sqlx::query_scalar(&sql.stream_version)
        .bind(stream)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend_err)?;
    Ok(version.unwrap_or(0) as u64)
}

/// What deciding an append needs, read in one statement.
struct Decision {
    version: u64,
    last_id: i64,
    stored: HashMap<String, EntryId>,
}

async fn read_decision(
    conn: &mut SqliteConnection,
    sql: &Statements,
    tx: Transaction,
    stream: &str,
    keys: &[&str],
) -> Result<Decision> {
    let t = &sql.table;
    let mut q = QueryBuilder::<Sqlite>::new(if tx == Transaction::Own {
        "BEGIN IMMEDIATE; "
    } else {
        ""
    });
    // Rows: (0, NULL, version), (1, NULL, last id), (2, key, id) per taken dedup key.
    q.push(format_args!(
        r#"SELECT 0, NULL, version FROM "{t}_streams" WHERE stream = "#
    ))
    .push_bind(stream)
    .push(" UNION ALL SELECT 1, NULL, seq FROM sqlite_sequence WHERE name = ")
    .push_bind(t.as_str());
    if !keys.is_empty() {
        q.push(format_args!(
            r#" UNION ALL SELECT 2, dedup_key, id FROM "{t}" WHERE stream = "#
        ))
        .push_bind(stream)
        .push(" AND dedup_key IN (");
        let mut list = q.separated(", ");
        for key in keys {
            list.push_bind(*key);
        }
        q.push(")");
    }
    let rows = q.build().fetch_all(&mut *conn).await.map_err(backend_err)?;
    let mut decision = Decision {
        version: 0,
        last_id: 0,
        stored: HashMap::new(),
    };
    for row in rows {
        let value: i64 = row.try_get(2).map_err(backend_err)?;
        match row.try_get::<i64, _>(0).map_err(backend_err)? {
            0 => decision.version = value as u64,
            1 => decision.last_id = value,
            _ => {
                let key = row.try_get(1).map_err(backend_err)?;
                decision.stored.insert(key, EntryId::new(value));
            }
        }
    }
    Ok(decision)
}

/// Appends `inputs`; with [`Transaction::Own`] the transaction is ended on every path, and
/// `first`, the append as one command ([`OneCommand::prepare`]), is tried first.
#[allow(clippy::too_many_arguments)]
pub async fn append_on(
    conn: &mut SqliteConnection,
    sql: &Statements,
    change_feed: bool,
    tx: Transaction,
    stream: &str,
    inputs: &[AppendInput],
    expected: ExpectedVersion,
    first: Option<OneCommand<'_>>,
) -> Result<AppendResult> {
    let written =
        decide_and_write(conn, sql, change_feed, tx, stream, inputs, expected, first).await;
    if tx == Transaction::Own && !matches!(written, Ok((_, true))) {
        // Nothing was committed (a conflict, only duplicates, or a failure): end the
        // transaction. After a failure the original error is the one to report (the rollback
        // may fail too, e.g. if BEGIN itself failed); the store's writer settles before its
        // next write.
        let rolled_back = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        if let (Ok(_), Err(e)) = (&written, rolled_back) {
            return Err(backend_err(e));
        }
    }
    written.map(|(outcomes, _)| outcomes)
}

/// Why an optimistic attempt (dedup keys assumed free) gave up.
enum Attempt {
    /// A dedup key may be taken: decide again with a lookup.
    KeyMaybeTaken,
    /// Any other failure.
    Failed(Error),
}

/// The outcomes, and whether a `COMMIT` was sent and succeeded.
#[allow(clippy::too_many_arguments)]
async fn decide_and_write(
    conn: &mut SqliteConnection,
    sql: &Statements,
    change_feed: bool,
    tx: Transaction,
    stream: &str,
    inputs: &[AppendInput],
    expected: ExpectedVersion,
    first: Option<OneCommand<'_>>,
) -> Result<(AppendResult, bool)> {
    let first = first.filter(|_| tx == Transaction::Own);
    // Tried: it already was the guess that every dedup key is free.
    let guessed = first.is_some();
    if let Some(first) = first {
        // The common case in one round trip; anything else is decided below.
        match first.run(conn).await {
            Ok(Some(done)) => return Ok((done, true)),
            // Committed nothing: `expected` did not hold, or all are stored duplicates.
            Ok(None) => {}
            Err(sqlx::Error::Database(db))
                if db.kind() == sqlx::error::ErrorKind::UniqueViolation =>
            {
                sqlx::query("ROLLBACK")
                    .execute(&mut *conn)
                    .await
                    .map_err(backend_err)?;
            }
            Err(e) => return Err(backend_err(e)),
        }
    }
    let keys = dedup_keys(inputs);
    // Retried appends are rare: first assume every dedup key is free and let the dedup index
    // object. Only a transaction of our own can be rolled back to decide again.
    if tx == Transaction::Own && !keys.is_empty() && !guessed {
        let attempt = attempt(conn, sql, change_feed, tx, stream, inputs, expected, None).await;
        match attempt {
            Ok(done) => return Ok(done),
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::KeyMaybeTaken) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut *conn)
                    .await
                    .map_err(backend_err)?;
            }
        }
    }
    let lookup = Some(keys.as_slice());
    attempt(conn, sql, change_feed, tx, stream, inputs, expected, lookup)
        .await
        .map_err(|a| match a {
            Attempt::Failed(e) => e,
            Attempt::KeyMaybeTaken => unreachable!("an attempt with a lookup never guesses"),
        })
}

/// An append as one command of our own transaction, with the database assigning versions after
/// the stream's current one. Prepared under the write lock, so that its `created_at` follows
/// the commits before it.
pub struct OneCommand<'a> {
    query: QueryBuilder<'a, Sqlite>,
    plan: AppendPlan,
}

impl<'a> OneCommand<'a> {
    /// The command for `inputs`, or `None` for appends it does not cover (more rows than one
    /// `INSERT` takes, or inputs the careful way must judge).
    pub fn prepare(
        sql: &Statements,
        change_feed: bool,
        stream: &'a str,
        inputs: &'a [AppendInput],
        expected: ExpectedVersion,
    ) -> Option<Self> {
        let plan = plan_append(stream, inputs, 0, &HashMap::new(), ExpectedVersion::Any).ok()?;
        if plan.is_empty() || plan.rows.len() > ROWS_PER_INSERT {
            return None;
        }
        let micros = now().timestamp_micros();
        let added = plan.rows.len() as i64;
        let rows = encode_rows(inputs, &plan, |_| 0);
        let text = &sql.one_command;
        let mut q = QueryBuilder::<Sqlite>::new(&text.insert_entries);
        q.push_bind(stream)
            .push(", cur.version + r.column1, r.column2, r.column3, r.column4, r.column5, ")
            .push("r.column6, r.column7, ")
            .push_bind(micros)
            .push(" FROM (SELECT ")
            .push(&text.version_of)
            .push_bind(stream)
            .push("), 0) AS version) AS cur, (");
        q.push_values(rows, |mut b, row| {
            b.push_bind(row.version)
                .push_bind(row.payload)
                .push_bind(row.input.order_key.as_deref())
                .push_bind(row.input.dedup_key.as_deref())
                .push_bind(i64::from(row.input.schema_version))
                .push_bind(row.metadata)
                .push_bind(row.tags);
        });
        q.push(") AS r WHERE ");
        match expected {
            ExpectedVersion::Any => q.push("1"),
            ExpectedVersion::NoStream => q.push("cur.version = 0"),
            ExpectedVersion::StreamExists => q.push("cur.version > 0"),
            ExpectedVersion::Exact(v) => q.push("cur.version = ").push_bind(v as i64),
        };
        q.push(" ORDER BY r.column1; ");
        if change_feed {
            // Inserted under the write lock, the entries' ids are consecutive: one run ending at
            // the last rowid. `changes()` still counts the entries' INSERT while this one runs.
            q.push(&text.insert_feed)
                .push_bind(stream)
                .push(
                    ", NULL, json_array(json_array(last_insert_rowid() - changes() + 1, \
                     last_insert_rowid())), ",
                )
                .push(&text.version_of)
                .push_bind(stream)
                .push("), 0) + ")
                .push_bind(added)
                .push(", ")
                .push_bind(micros)
                .push(" WHERE changes() > 0; ");
        }
        // The stream's version rises by the entries written, if any were (`changes()` counts
        // the entries' INSERT, or the feed record's, written exactly when they were), and is
        // returned: the command's one row.
        q.push(&text.raise_version)
            .push_bind(stream)
            .push(", ")
            .push_bind(added)
            .push(
                " WHERE changes() > 0 ON CONFLICT (stream) DO UPDATE \
                 SET version = s.version + excluded.version RETURNING version; COMMIT",
            );
        Some(OneCommand { query: q, plan })
    }

    /// Runs the command: `None` when it committed nothing because `expected` did not admit the
    /// stream's version (a conflict, or a retry of stored duplicates), and a unique violation
    /// (the transaction still open) when a dedup key is taken; both are decided the careful way.
    async fn run(
        mut self,
        conn: &mut SqliteConnection,
    ) -> std::result::Result<Option<AppendResult>, sqlx::Error> {
        let mut plan = self.plan;
        // Every statement's result, in order. The entries' INSERT (after BEGIN) tells how many
        // were written and the last id; the ids before it are consecutive under the write lock.
        let results: Vec<Either<SqliteQueryResult, SqliteRow>> =
            conn.fetch_many(self.query.build()).try_collect().await?;
        let Some(entries) = results.iter().filter_map(|r| r.as_ref().left()).nth(1) else {
            return Err(sqlx::Error::Protocol("an append ran no INSERT".into()));
        };
        let (written, last) = (entries.rows_affected() as i64, entries.last_insert_rowid());
        if written == 0 {
            return Ok(None);
        }
        let version: i64 = match results.iter().find_map(|r| r.as_ref().right()) {
            Some(row) => row.try_get(0)?,
            None => {
                return Err(sqlx::Error::Protocol(
                    "an append returned no version".into(),
                ));
            }
        };
        if written as usize != plan.rows.len() {
            return Err(sqlx::Error::Protocol(format!(
                "an append of {} entries wrote {written}",
                plan.rows.len()
            )));
        }
        let previous = version - written;
        plan.rebase(previous as u64);
        let ids: Vec<EntryId> = (last - written + 1..=last).map(EntryId::new).collect();
        Ok(Some(plan.result(&ids)))
    }
}

/// One decision and write; `lookup` names the dedup keys to look up (`None`: assume free).
#[allow(clippy::too_many_arguments)]
async fn attempt(
    conn: &mut SqliteConnection,
    sql: &Statements,
    change_feed: bool,
    tx: Transaction,
    stream: &str,
    inputs: &[AppendInput],
    expected: ExpectedVersion,
    lookup: Option<&[&str]>,
) -> std::result::Result<(AppendResult, bool), Attempt> {
    let guessing = lookup.is_none();
    let decision = read_decision(conn, sql, tx, stream, lookup.unwrap_or(&[]))
        .await
        .map_err(Attempt::Failed)?;
    let plan = match plan_append(stream, inputs, decision.version, &decision.stored, expected) {
        Ok(plan) => plan,
        // Inputs that are all stored duplicates succeed whatever `expected` says: check.
        Err(Error::Conflict { .. }) if guessing => return Err(Attempt::KeyMaybeTaken),
        Err(e) => return Err(Attempt::Failed(e)),
    };
    if plan.is_empty() {
        return Ok((plan.result(&[]), false));
    }
    write_plan(conn, sql, change_feed, tx, stream, inputs, &decision, plan)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db)
                if guessing && db.kind() == sqlx::error::ErrorKind::UniqueViolation =>
            {
                Attempt::KeyMaybeTaken
            }
            e => Attempt::Failed(backend_err(e)),
        })
}

/// Writes what `plan` decided, in one command (ending with `COMMIT` in our own transaction).
#[allow(clippy::too_many_arguments)]
async fn write_plan(
    conn: &mut SqliteConnection,
    sql: &Statements,
    change_feed: bool,
    tx: Transaction,
    stream: &str,
    inputs: &[AppendInput],
    decision: &Decision,
    plan: AppendPlan,
) -> std::result::Result<(AppendResult, bool), sqlx::Error> {
    // The write lock is held: the next ids are the table's last id + 1, + 2, …
    let ids: Vec<EntryId> = (1..=plan.rows.len() as i64)
        .map(|k| EntryId::new(decision.last_id + k))
        .collect();
    let micros = now().timestamp_micros();
    let rows = encode_rows(inputs, &plan, |row| ids[row].get());

    let mut q = QueryBuilder::<Sqlite>::new("");
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        q.push(&sql.insert_entry_columns);
        q.push_values(chunk, |mut b, row| {
            b.push_bind(row.id)
                .push_bind(stream)
                .push_bind(row.version)
                .push_bind(row.payload.as_str())
                .push_bind(row.input.order_key.as_deref())
                .push_bind(row.input.dedup_key.as_deref())
                .push_bind(i64::from(row.input.schema_version))
                .push_bind(row.metadata.as_str())
                .push_bind(row.tags.as_str())
                .push_bind(micros);
        });
        q.push("; ");
    }
    q.push(&sql.upsert_stream_version_prefix)
        .push_bind(stream)
        .push(", ")
        .push_bind(plan.new_version as i64)
        .push(&sql.upsert_stream_version_suffix)
        .push("; ");
    if change_feed {
        // The record names the entries (their ids are consecutive: one run) instead of copying
        // them; reading the feed joins them back.
        q.push(&sql.insert_feed_prefix)
            .push_bind(stream)
            .push(", NULL, ")
            .push_bind(ledger_sql::json_text(&id_runs(&ids)))
            .push(", ")
            .push_bind(plan.new_version as i64)
            .push(", ")
            .push_bind(micros)
            .push("); ");
    }
    if tx == Transaction::Own {
        q.push("COMMIT");
    }
    q.build().execute(&mut *conn).await?;
    Ok((plan.result(&ids), tx == Transaction::Own))
}

/// The rows of `plan` encoded for binding, the `row`th with id `id(row)`.
fn encode_rows<'a>(
    inputs: &'a [AppendInput],
    plan: &AppendPlan,
    id: impl Fn(usize) -> i64,
) -> Vec<EncodedRow<'a>> {
    plan.rows
        .iter()
        .enumerate()
        .map(|(row, &(index, version))| {
            let input = &inputs[index];
            EncodedRow {
                input,
                id: id(row),
                version: version as i64,
                payload: ledger_sql::json_text(&input.payload),
                metadata: ledger_sql::json_text(&input.metadata),
                tags: ledger_sql::json_text(&input.tags),
            }
        })
        .collect()
}

struct EncodedRow<'a> {
    input: &'a AppendInput,
    id: i64,
    version: i64,
    payload: String,
    metadata: String,
    tags: String,
}
