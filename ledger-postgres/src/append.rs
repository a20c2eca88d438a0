//! Appends: the per-stream lock, dedup lookup, version check and one multi-row insert.
//!
//! The stream's row in `t_streams` is upserted and locked first (`ON CONFLICT DO UPDATE` takes a
//! row lock held until COMMIT), so concurrent appenders to one stream, from any connection or
//! process, queue there and each sees the version its predecessor committed: expected-version
//! checks cannot race. Ids are allocated while the lock is held, so within a stream ascending ids
//! are ascending versions and commit order. Appends to different streams do not wait for each
//! other, with the change feed on or off (see feed.rs).

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use ledger_core::backend::append::{dedup_keys, now, plan_append};
use ledger_core::{AppendInput, AppendResult, EntryId, ExpectedVersion, Result};

use crate::backend_err;
use crate::sql::Statements;

/// Locks the stream's row (creating it at version 0) and returns its version.
pub async fn lock_stream(conn: &mut PgConnection, sql: &Statements, stream: &str) -> Result<u64> {
    let version: i64 = sqlx::query_scalar(&sql.lock_stream)
        .bind(stream)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend_err)?;
    Ok(version as u64)
}

/// Whether JSONB would not give `v` back exactly, so that its JSON text must be kept beside it:
/// JSONB cannot hold U+0000 in a string or key, has no negative zero, and keeps numbers as
/// decimals, so a float of 1e16 or more (integral, and written with an exponent) would come back
/// as an integer.
fn needs_exact_copy(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .is_some_and(|f| f.abs() >= 1e16 || (f == 0.0 && f.is_sign_negative())),
        Value::Array(items) => items.iter().any(needs_exact_copy),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains('\0') || needs_exact_copy(v)),
        _ => false,
    }
}

/// The value with every U+0000 in strings and keys replaced by U+FFFD (what JSONB can hold).
fn without_nul(v: &Value) -> Value {
    let clean = |s: &str| s.replace('\0', "\u{FFFD}");
    match v {
        Value::String(s) => Value::String(clean(s)),
        Value::Array(items) => Value::Array(items.iter().map(without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (clean(k), without_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Appends in one autocommitted statement, for the common case: returns `None` when the
/// statement did not apply (the stream's version did not satisfy `expected`, or a dedup key is
/// taken) and the append must be decided in a transaction ([`append_on`]).
pub async fn append_in_one_statement(
    pool: &PgPool,
    sql: &Statements,
    stream: &str,
    inputs: &[AppendInput],
    expected: ExpectedVersion,
) -> Result<Option<AppendResult>> {
    // Which inputs to write and their versions relative to the stream's current one.
    let mut plan = plan_append(stream, inputs, 0, &HashMap::new(), ExpectedVersion::Any)?;
    let columns = Columns::of(inputs, &plan.rows);
    let (kind, exact) = match expected {
        ExpectedVersion::Any => (0, 0),
        ExpectedVersion::NoStream => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        ExpectedVersion::Exact(v) => (3, v as i64),
    };
    let statement = if expected.admits(0) {
        &sql.append_admitting_new
    } else {
        &sql.append_existing
    };
    let query = if plan.rows.len() == 1 {
        columns.query_single(&statement.single, stream, now(), plan.new_version)
    } else {
        columns.query(&statement.batch, stream, now(), plan.new_version)
    };
    let rows = query.bind(kind).bind(exact).fetch_all(pool).await;
    let mut rows: Vec<(i64, i64)> = match rows {
        Ok(rows) => rows
            .iter()
            .map(|r| Ok((r.try_get(1)?, r.try_get(0)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(backend_err)?,
        Err(sqlx::Error::Database(db)) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            return Ok(None);
        }
        Err(e) => return Err(backend_err(e)),
    };
    if rows.is_empty() {
        return Ok(None);
    }
    rows.sort_unstable();
    // The database put the rows after the stream's previous version.
    plan.rebase((rows[0].0 - 1) as u64);
    let ids: Vec<EntryId> = rows.into_iter().map(|(_, id)| EntryId::new(id)).collect();
    Ok(Some(plan.result(&ids)))
}

/// Appends inside the caller's transaction; see [`crate::PostgresStore::append_in`].
pub async fn append_on(
    conn: &mut PgConnection,
    sql: &Statements,
    stream: &str,
    inputs: Vec<AppendInput>,
    expected: ExpectedVersion,
) -> Result<AppendResult> {
    let current = lock_stream(conn, sql, stream).await?;
    let keys = dedup_keys(&inputs);
    // A stream that was never written holds no entries, so none of its keys can be taken.
    let stored: HashMap<String, EntryId> = if keys.is_empty() || current == 0 {
        HashMap::new()
    } else {
        let found: Vec<(String, i64)> = sqlx::query_as(&sql.dedup_lookup)
            .bind(stream)
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend_err)?;
        found
            .into_iter()
            .map(|(key, id)| (key, EntryId::new(id)))
            .collect()
    };
    let plan = plan_append(stream, &inputs, current, &stored, expected)?;
    if plan.is_empty() {
        return Ok(plan.result(&[]));
    }

    let created_at = now();
    let columns = Columns::of(&inputs, &plan.rows);
    let bind_rows = |statement| columns.query(statement, stream, created_at, plan.new_version);

    let rows = bind_rows(&sql.insert_entries)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend_err)?;
    let first = plan.rows[0].1;
    let mut ids = vec![EntryId::default(); rows.len()];
    for row in rows {
        let version: i64 = row.try_get(1).map_err(backend_err)?;
        let id: i64 = row.try_get(0).map_err(backend_err)?;
        ids[(version as u64 - first) as usize] = EntryId::new(id);
    }
    Ok(plan.result(&ids))
}

/// An append's rows as parallel arrays, bound to `unnest`.
struct Columns {
    versions: Vec<i64>,
    payloads: Vec<String>,
    order_keys: Vec<Option<String>>,
    dedup_keys: Vec<Option<String>>,
    schema_versions: Vec<i64>,
    exact_payloads: Vec<Option<String>>,
    metadata: Vec<String>,
    tags: Vec<String>,
}

impl Columns {
    /// The rows `(input index, version)` of `inputs`, encoded.
    fn of(inputs: &[AppendInput], rows: &[(usize, u64)]) -> Self {
        let mut columns = Columns::with_capacity(rows.len());
        for &(index, version) in rows {
            columns.push(&inputs[index], version);
        }
        columns
    }

    /// `statement` with $1..=$11 bound: stream, created_at, the eight columns and the stream's
    /// new (or relative) version.
    fn query<'q>(
        &'q self,
        statement: &'q str,
        stream: &'q str,
        created_at: chrono::DateTime<chrono::Utc>,
        new_version: u64,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(statement)
            .bind(stream)
            .bind(created_at)
            .bind(&self.versions)
            .bind(&self.payloads)
            .bind(&self.exact_payloads)
            .bind(&self.order_keys)
            .bind(&self.dedup_keys)
            .bind(&self.schema_versions)
            .bind(&self.metadata)
            .bind(&self.tags)
            .bind(new_version as i64)
    }

    /// [`Columns::query`] for a statement that takes one row's columns as scalars: the first.
    fn query_single<'q>(
        &'q self,
        statement: &'q str,
        stream: &'q str,
        created_at: chrono::DateTime<chrono::Utc>,
        new_version: u64,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(statement)
            .bind(stream)
            .bind(created_at)
            .bind(self.versions[0])
            .bind(&self.payloads[0])
            .bind(&self.exact_payloads[0])
            .bind(&self.order_keys[0])
            .bind(&self.dedup_keys[0])
            .bind(self.schema_versions[0])
            .bind(&self.metadata[0])
            .bind(&self.tags[0])
            .bind(new_version as i64)
    }

    fn with_capacity(n: usize) -> Self {
        Columns {
            versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            order_keys: Vec::with_capacity(n),
            dedup_keys: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            exact_payloads: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, input: &AppendInput, version: u64) {
        self.versions.push(version as i64);
        let (payload, exact) = payload_columns(&input.payload);
        self.payloads.push(payload);
        self.exact_payloads.push(exact);
        self.order_keys.push(input.order_key.clone());
        self.dedup_keys.push(input.dedup_key.clone());
        self.schema_versions.push(i64::from(input.schema_version));
        self.metadata.push(ledger_sql::json_text(&input.metadata));
        self.tags.push(ledger_sql::json_text(&input.tags));
    }
}

/// A payload as its two columns: the JSON text for the JSONB column, and the exact text when
/// JSONB would not give the payload back exactly (see [`needs_exact_copy`]).
pub fn payload_columns(payload: &Value) -> (String, Option<String>) {
    let exact = ledger_sql::json_text(payload);
    if needs_exact_copy(payload) {
        (ledger_sql::json_text(&without_nul(payload)), Some(exact))
    } else {
        (exact, None)
    }
}
