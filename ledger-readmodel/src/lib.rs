//! Read models beside a `ledger` store on SQLite or PostgreSQL: the tables an application
//! projects the ledger's change feed into, in the same database as the ledger.
//!
//! [`open`] opens the ledger and the pool its read model shares from one URL. [`Db`] and
//! [`Tx`] are one interface over both databases; a [`Sql`] statement is written once with `?`
//! placeholders (numbered for PostgreSQL when run) and portable SQL, and values are always
//! bound, never spliced into the text.
//!
//! ```
//! use ledger_readmodel::{Kind, Sql};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ledger_core::Result<()> {
//! let (ledger, db) = ledger_readmodel::open("sqlite::memory:", "orders_ledger").await?;
//! db.execute(&Sql::new("CREATE TABLE totals (id TEXT PRIMARY KEY, total BIGINT NOT NULL)")).await?;
//! let mut insert = Sql::new("INSERT INTO totals (id, total) VALUES (");
//! insert.bind("a").push(", ").bind(5i64).push(")");
//! db.execute(&insert).await?;
//! let rows = db.fetch(&Sql::new("SELECT total FROM totals"), &[Kind::Int]).await?;
//! assert_eq!(rows[0][0].int(), 5);
//! assert_eq!(ledger.backend_kind(), "sqlite");
//! # Ok(())
//! # }
//! ```
//!
//! Features: `testkit` (fresh databases for applications' tests).
#![deny(missing_docs)]

#[cfg(feature = "testkit")]
pub mod testkit;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, Row, Sqlite, Transaction};

use ledger_core::{Error, Result, Store};
use ledger_sql::backend_err;

/// Opens the ledger at `url` with its entries in `table`, and the pool its read model shares:
/// `sqlite:PATH` (the file is created if missing), `sqlite::memory:`, or `postgres://…`. The
/// ledger's change feed is on, since read models follow it.
pub async fn open(url: &str, table: &str) -> Result<(Store, Db)> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let builder = ledger_sqlite::SqliteStore::builder()
            .table(table)
            .change_feed(true);
        let store = match rest.strip_prefix("//").unwrap_or(rest) {
            ":memory:" => builder.open_in_memory().await?,
            "" => {
                return Err(Error::InvalidArgument(format!(
                    "database url {url:?} names no file"
                )));
            }
            path => builder.open(path).await?,
        };
        let db = Db::Sqlite(store.pool().clone());
        Ok((Store::from(store), db))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = ledger_postgres::PostgresStore::builder()
            .table(table)
            .change_feed(true)
            .connect(url)
            .await?;
        let db = Db::Postgres(store.pool().clone());
        Ok((Store::from(store), db))
    } else {
        Err(Error::InvalidArgument(format!(
            "database url {url:?}: expected sqlite:PATH, sqlite::memory: or postgres://…"
        )))
    }
}

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// An integer.
    Int(i64),
    /// A float or NULL.
    Float(Option<f64>),
    /// A text or NULL.
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
pub struct Sql {
    text: String,
    params: Vec<Param>,
}

impl Sql {
    /// A statement starting with `text`.
    pub fn new(text: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            params: Vec::new(),
        }
    }

    /// Appends SQL text (never a value).
    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Param>) -> &mut Sql {
        self.text.push('?');
        self.params.push(value.into());
        self
    }

    /// Appends `(?, ?, …)` bound to `values`.
    pub fn bind_list<P: Into<Param>>(&mut self, values: impl IntoIterator<Item = P>) {
        self.push("(");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(v);
        }
        self.push(")");
    }

    /// The statement text with `dialect`'s placeholders.
    pub fn text_for(&self, dialect: Dialect) -> String {
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
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The type of a selected column.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A 64-bit integer.
    Int,
    /// A double.
    Float,
    /// A text.
    Text,
}

/// A selected value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// An integer or NULL.
    Int(Option<i64>),
    /// A double or NULL.
    Float(Option<f64>),
    /// A text or NULL.
    Text(Option<String>),
}

impl Cell {
    /// The value as an integer (NULL and text read as 0).
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(v) => v.unwrap_or(0),
            Cell::Float(v) => v.unwrap_or(0.0) as i64,
            Cell::Text(_) => 0,
        }
    }

    /// The value as a double, if it is a number.
    pub fn float(&self) -> Option<f64> {
        match self {
            Cell::Float(v) => *v,
            Cell::Int(v) => v.map(|v| v as f64),
            Cell::Text(_) => None,
        }
    }

    /// The value, if it is a text.
    pub fn text(self) -> Option<String> {
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
pub enum Db {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// An open transaction.
pub enum Tx {
    /// SQLite.
    Sqlite(Transaction<'static, Sqlite>),
    /// PostgreSQL.
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
        Ok::<u64, ledger_core::Error>(
            query
                .execute($executor)
                .await
                .map_err(backend_err)?
                .rows_affected(),
        )
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
        let rows = query.fetch_all($executor).await.map_err(backend_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut cells = Vec::with_capacity($kinds.len());
            for (i, kind) in $kinds.iter().enumerate() {
                cells.push(match kind {
                    Kind::Int => Cell::Int(row.try_get(i).map_err(backend_err)?),
                    Kind::Float => Cell::Float(row.try_get(i).map_err(backend_err)?),
                    Kind::Text => Cell::Text(row.try_get(i).map_err(backend_err)?),
                });
            }
            out.push(cells);
        }
        Ok::<Vec<Vec<Cell>>, ledger_core::Error>(out)
    }};
}

impl Db {
    /// The database's dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns the rows it affected.
    pub async fn execute(&self, sql: &Sql) -> Result<u64> {
        match self {
            Db::Sqlite(pool) => run!(execute pool, sql, Dialect::Sqlite),
            Db::Postgres(pool) => run!(execute pool, sql, Dialect::Postgres),
        }
    }

    /// Runs a query whose columns are of `kinds`.
    pub async fn fetch(&self, sql: &Sql, kinds: &[Kind]) -> Result<Vec<Vec<Cell>>> {
        match self {
            Db::Sqlite(pool) => run!(fetch pool, sql, Dialect::Sqlite, kinds),
            Db::Postgres(pool) => run!(fetch pool, sql, Dialect::Postgres, kinds),
        }
    }

    /// The values of a query's one text column.
    pub async fn fetch_texts(&self, sql: &Sql) -> Result<Vec<String>> {
        Ok(texts(self.fetch(sql, &[Kind::Text]).await?))
    }

    /// A write transaction; on SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so
    /// two writers queue instead of failing.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(
                pool.begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(backend_err)?,
            ),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await.map_err(backend_err)?),
        })
    }

    /// A read-only transaction over one snapshot, so that the queries run in it agree.
    pub async fn snapshot(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin().await.map_err(backend_err)?),
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(backend_err)?,
            ),
        })
    }
}

impl Tx {
    /// The database's dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns the rows it affected.
    pub async fn execute(&mut self, sql: &Sql) -> Result<u64> {
        match self {
            Tx::Sqlite(tx) => run!(execute &mut **tx, sql, Dialect::Sqlite),
            Tx::Postgres(tx) => run!(execute &mut **tx, sql, Dialect::Postgres),
        }
    }

    /// Runs a query whose columns are of `kinds`.
    pub async fn fetch(&mut self, sql: &Sql, kinds: &[Kind]) -> Result<Vec<Vec<Cell>>> {
        match self {
            Tx::Sqlite(tx) => run!(fetch &mut **tx, sql, Dialect::Sqlite, kinds),
            Tx::Postgres(tx) => run!(fetch &mut **tx, sql, Dialect::Postgres, kinds),
        }
    }

    /// The values of a query's one text column.
    pub async fn fetch_texts(&mut self, sql: &Sql) -> Result<Vec<String>> {
        Ok(texts(self.fetch(sql, &[Kind::Text]).await?))
    }

    /// Commits the transaction.
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await.map_err(backend_err)?,
            Tx::Postgres(tx) => tx.commit().await.map_err(backend_err)?,
        }
        Ok(())
    }
}

/// A read model's position in the change feed, kept in a table of its own database
/// (`name TEXT PRIMARY KEY, position BIGINT`), so that a projection commits its effects and its
/// position in one transaction and applies each record exactly once, whatever crashes.
///
/// A projection's transaction calls [`TableCheckpoint::lock`] first (which also serialises two
/// processes projecting at once) and [`TableCheckpoint::save_in`] last; as a
/// [`Checkpoint`](ledger_core::Checkpoint) for a [`FeedConsumer`](ledger_core::FeedConsumer),
/// `save` only moves it further past records the consumer filtered out.
#[derive(Debug, Clone)]
pub struct TableCheckpoint {
    db: Db,
    table: &'static str,
    name: String,
}

impl TableCheckpoint {
    /// The checkpoint `name` in `table` (a plain SQL identifier: letters, digits, `_`).
    pub fn new(db: Db, table: &'static str, name: impl Into<String>) -> Result<TableCheckpoint> {
        let plain = !table.is_empty()
            && !table.starts_with(|c: char| c.is_ascii_digit())
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(Error::InvalidArgument(format!(
                "checkpoint table {table:?}: expected letters, digits and _"
            )));
        }
        Ok(TableCheckpoint {
            db,
            table,
            name: name.into(),
        })
    }

    /// Creates the table if missing, and this checkpoint's row.
    pub async fn migrate(&self) -> Result<()> {
        self.db
            .execute(&Sql::new(format!(
                "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, position BIGINT NOT NULL)",
                self.table
            )))
            .await?;
        let mut init = Sql::new(format!(
            "INSERT INTO {} (name, position) VALUES (",
            self.table
        ));
        init.bind(self.name.as_str())
            .push(", 0) ON CONFLICT (name) DO NOTHING");
        self.db.execute(&init).await?;
        Ok(())
    }

    fn select(&self) -> Sql {
        let mut sql = Sql::new(format!("SELECT position FROM {} WHERE name = ", self.table));
        sql.bind(self.name.as_str());
        sql
    }

    /// The position in `tx`, locked until it ends (0 before the first record).
    pub async fn lock(&self, tx: &mut Tx) -> Result<u64> {
        let mut sql = self.select();
        if tx.dialect() == Dialect::Postgres {
            sql.push(" FOR UPDATE");
        }
        let rows = tx.fetch(&sql, &[Kind::Int]).await?;
        Ok(rows.first().map_or(0, |r| r[0].int() as u64))
    }

    /// Moves the position to `position` in `tx` (never back).
    pub async fn save_in(&self, tx: &mut Tx, position: u64) -> Result<()> {
        let mut sql = Sql::new(format!("UPDATE {} SET position = ", self.table));
        sql.bind(position as i64)
            .push(" WHERE name = ")
            .bind(self.name.as_str())
            .push(" AND position < ")
            .bind(position as i64);
        tx.execute(&sql).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ledger_core::Checkpoint for TableCheckpoint {
    async fn load(&self) -> Result<Option<u64>> {
        let rows = self.db.fetch(&self.select(), &[Kind::Int]).await?;
        Ok(rows.first().map(|r| r[0].int() as u64).filter(|&p| p > 0))
    }

    async fn save(&self, position: u64) -> Result<()> {
        let mut tx = self.db.begin().await?;
        self.save_in(&mut tx, position).await?;
        tx.commit().await
    }
}

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
