//! Appends: dedup lookup, version check and multi-row inserts in one write transaction.
//!
//! The caller holds the write lock (`BEGIN IMMEDIATE`, or its own transaction), so the version
//! read here cannot change before the insert; the `UNIQUE (stream, version)` and dedup indexes
//! would reject a racing writer anyway.

use std::collections::{BTreeMap, HashMap};

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use ledger_core::append::{dedup_keys, now, plan_append};
use ledger_core::{AppendInput, AppendOutcome, Entry, Error, ExpectedVersion, Mutation, Result};

use crate::backend_err;
use crate::feed::record;
use crate::sql::Statements;

/// SQLite allows 32 766 bound values per statement; an entry row binds 9.
const ROWS_PER_INSERT: usize = 3_000;

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

/// Ids of the entries in `stream` holding any of `keys`.
async fn stored_dedup_keys(
    conn: &mut SqliteConnection,
    sql: &Statements,
    stream: &str,
    keys: &[&str],
) -> Result<HashMap<String, i64>> {
    let mut stored = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            r#"SELECT dedup_key, id FROM "{}" WHERE stream = "#,
            sql.table
        ));
        q.push_bind(stream).push(" AND dedup_key IN (");
        let mut list = q.separated(", ");
        for key in chunk {
            list.push_bind(*key);
        }
        q.push(")");
        let rows = q.build().fetch_all(&mut *conn).await.map_err(backend_err)?;
        for row in rows {
            stored.insert(row.get::<String, _>(0), row.get::<i64, _>(1));
        }
    }
    Ok(stored)
}

/// Appends inside the caller's write transaction; see [`crate::SqliteStore::append_in`].
pub async fn append_on(
    conn: &mut SqliteConnection,
    sql: &Statements,
    change_feed: bool,
    stream: &str,
    inputs: Vec<AppendInput>,
    expected: ExpectedVersion,
) -> Result<Vec<AppendOutcome<i64>>> {
    let current = stream_version(conn, sql, stream).await?;
    let keys = dedup_keys(&inputs);
    // A stream that was never written holds no entries, so none of its keys can be taken.
    let stored = if keys.is_empty() || current == 0 {
        HashMap::new()
    } else {
        stored_dedup_keys(conn, sql, stream, &keys).await?
    };
    let plan = plan_append(stream, &inputs, current, &stored, expected)?;
    if plan.is_empty() {
        return Ok(plan.outcomes(&[]));
    }

    let created_at = now();
    let micros = created_at.timestamp_micros();
    let rows = plan
        .rows
        .iter()
        .map(|&(index, version)| {
            let input = &inputs[index];
            Ok(EncodedRow {
                input,
                version: version as i64,
                payload: serde_json::to_string(&input.payload).map_err(Error::Encode)?,
                metadata: serde_json::to_string(&input.metadata).map_err(Error::Encode)?,
                tags: serde_json::to_string(&input.tags).map_err(Error::Encode)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let mut ids = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Sqlite>::new(&sql.insert_entry_columns);
        q.push_values(chunk, |mut b, row| {
            b.push_bind(stream)
                .push_bind(row.version)
                .push_bind(row.payload.as_str())
                .push_bind(row.input.order_key.as_deref())
                .push_bind(row.input.dedup_key.as_deref())
                .push_bind(i64::from(row.input.schema_version))
                .push_bind(row.metadata.as_str())
                .push_bind(row.tags.as_str())
                .push_bind(micros);
        });
        let done = q.build().execute(&mut *conn).await.map_err(backend_err)?;
        // One statement under the write lock: AUTOINCREMENT gives its rows consecutive ids in
        // VALUES order, ending at the last inserted rowid (cheaper than RETURNING every row).
        let last = done.last_insert_rowid();
        let n = chunk.len() as i64;
        debug_assert_eq!(done.rows_affected(), n as u64);
        ids.extend(last - n + 1..=last);
    }

    sqlx::query(&sql.upsert_stream_version)
        .bind(stream)
        .bind(plan.new_version as i64)
        .execute(&mut *conn)
        .await
        .map_err(backend_err)?;

    if change_feed {
        let entries = rows
            .iter()
            .zip(&ids)
            .map(|(row, &id)| Entry {
                id,
                stream: stream.to_owned(),
                version: row.version as u64,
                payload: row.input.payload.clone(),
                order_key: row.input.order_key.clone(),
                dedup_key: row.input.dedup_key.clone(),
                schema_version: row.input.schema_version,
                metadata: row.input.metadata.clone(),
                tags: row.input.tags.clone(),
                annotations: BTreeMap::new(),
                created_at,
                updated_at: None,
            })
            .collect();
        record(conn, sql, stream, &Mutation::Append { entries }).await?;
    }
    Ok(plan.outcomes(&ids))
}

struct EncodedRow<'a> {
    input: &'a AppendInput,
    version: i64,
    payload: String,
    metadata: String,
    tags: String,
}
