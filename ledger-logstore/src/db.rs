//! The read model's database: SQLite or PostgreSQL behind one small interface. Statements are
//! written once with `?` placeholders (numbered for PostgreSQL when run) and portable SQL; values
//! are always bound.

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, Row, Sqlite, Transaction};

use crate::error::Result;

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Int(i64),
    Float(Option<f64>),
    Text(Option<String>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Param {
        Param::Int(v)
    }
}

impl From<Option<f64>> for Param {
    fn from(v: Option<f64>) -> Param {
        Param::Float(v)
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Param {
        Param::Text(Some(v.to_owned()))
    }
}

impl From<String> for Param {
    fn from(v: String) -> Param {
        Param::Text(Some(v))
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Param {
        Param::Text(v)
    }
}

/// A statement and its values.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    text: String,
    params: Vec<Param>,
}

impl Sql {
    pub(crate) fn new(text: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            params: Vec::new(),
        }
    }

    /// Appends SQL text (never a value).
    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Param>) -> &mut Sql {
        self.text.push('?');
        self.params.push(value.into());
        self
    }

    /// Appends `(?, ?, …)` bound to `values`.
    pub(crate) fn bind_list<P: Into<Param>>(&mut self, values: impl IntoIterator<Item = P>) {
        self.push("(");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(v);
        }
        self.push(")");
    }

    fn text_for(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Sqlite => self.text.clone(),
            Dialect::Postgres => {
                let mut out = String::with_capacity(self.text.len() + 16);
                let mut n = 0;
                for c in self.text.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

/// The SQL dialect of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The type of a selected column.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Int,
    Float,
    Text,
}

/// A selected value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
}

impl Cell {
    pub(crate) fn int(&self) -> i64 {
        match self {
            Cell::Int(v) => v.unwrap_or(0),
            Cell::Float(v) => v.unwrap_or(0.0) as i64,
            Cell::Text(_) => 0,
        }
    }

    pub(crate) fn float(&self) -> Option<f64> {
        match self {
            Cell::Float(v) => *v,
            Cell::Int(v) => v.map(|v| v as f64),
            Cell::Text(_) => None,
        }
    }

    pub(crate) fn text(self) -> Option<String> {
        match self {
            Cell::Text(v) => v,
            _ => None,
        }
    }
}

fn texts(rows: Vec<Vec<Cell>>) -> Vec<String> {
    rows.into_iter()
        .filter_map(|mut row| row.pop().and_then(Cell::text))
        .collect()
}

/// A read model's connection pool.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$sql` on `$executor`: a statement (`execute`) or a query decoding `$kinds`.
macro_rules! run {
    (execute $executor:expr, $sql:expr, $dialect:expr) => {{
        let text = $sql.text_for($dialect);
        let mut query = sqlx::query(&text);
        for p in &$sql.params {
            query = match p {
                Param::Int(v) => query.bind(*v),
                Param::Float(v) => query.bind(*v),
                Param::Text(v) => query.bind(v.as_deref()),
            };
        }
        Ok::<u64, crate::error::Error>(query.execute($executor).await?.rows_affected())
    }};
    (fetch $executor:expr, $sql:expr, $dialect:expr, $kinds:expr) => {{
        let text = $sql.text_for($dialect);
        let mut query = sqlx::query(&text);
        for p in &$sql.params {
            query = match p {
                Param::Int(v) => query.bind(*v),
                Param::Float(v) => query.bind(*v),
                Param::Text(v) => query.bind(v.as_deref()),
            };
        }
        let rows = query.fetch_all($executor).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut cells = Vec::with_capacity($kinds.len());
            for (i, kind) in $kinds.iter().enumerate() {
                cells.push(match kind {
                    Kind::Int => Cell::Int(row.try_get(i)?),
                    Kind::Float => Cell::Float(row.try_get(i)?),
                    Kind::Text => Cell::Text(row.try_get(i)?),
                });
            }
            out.push(cells);
        }
        Ok::<Vec<Vec<Cell>>, crate::error::Error>(out)
    }};
}

impl Db {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    pub(crate) async fn execute(&self, sql: &Sql) -> Result<u64> {
        match self {
            Db::Sqlite(pool) => run!(execute pool, sql, Dialect::Sqlite),
            Db::Postgres(pool) => run!(execute pool, sql, Dialect::Postgres),
        }
    }

    pub(crate) async fn fetch(&self, sql: &Sql, kinds: &[Kind]) -> Result<Vec<Vec<Cell>>> {
        match self {
            Db::Sqlite(pool) => run!(fetch pool, sql, Dialect::Sqlite, kinds),
            Db::Postgres(pool) => run!(fetch pool, sql, Dialect::Postgres, kinds),
        }
    }

    /// The values of a query's one text column.
    pub(crate) async fn fetch_texts(&self, sql: &Sql) -> Result<Vec<String>> {
        Ok(texts(self.fetch(sql, &[Kind::Text]).await?))
    }

    /// A write transaction; on SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so
    /// two writers queue instead of failing.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A read-only transaction over one snapshot, so that the queries run in it agree.
    pub(crate) async fn snapshot(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }
}

impl Tx {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    pub(crate) async fn execute(&mut self, sql: &Sql) -> Result<u64> {
        match self {
            Tx::Sqlite(tx) => run!(execute &mut **tx, sql, Dialect::Sqlite),
            Tx::Postgres(tx) => run!(execute &mut **tx, sql, Dialect::Postgres),
        }
    }

    pub(crate) async fn fetch(&mut self, sql: &Sql, kinds: &[Kind]) -> Result<Vec<Vec<Cell>>> {
        match self {
            Tx::Sqlite(tx) => run!(fetch &mut **tx, sql, Dialect::Sqlite, kinds),
            Tx::Postgres(tx) => run!(fetch &mut **tx, sql, Dialect::Postgres, kinds),
        }
    }

    /// The values of a query's one text column.
    pub(crate) async fn fetch_texts(&mut self, sql: &Sql) -> Result<Vec<String>> {
        Ok(texts(self.fetch(sql, &[Kind::Text]).await?))
    }

    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

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
    "CREATE TABLE IF NOT EXISTS logstore_checkpoint (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    )",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_in_order() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.bind(1i64).push(" AND b IN ");
        sql.bind_list(["x", "y"]);
        assert_eq!(
            sql.text_for(Dialect::Postgres),
            "SELECT 1 WHERE a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(
            sql.text_for(Dialect::Sqlite),
            "SELECT 1 WHERE a = ? AND b IN (?, ?)"
        );
        assert_eq!(sql.params.len(), 3);
    }
}
