//! What `ledger`'s SQL backends share, written once and generic over the sqlx database:
//! the migration runner, durable cursors, health checks, change-feed reads and search patterns. Each backend supplies its statement
//! texts (placeholders and table names differ); the binding, decoding and error handling live
//! here.
//!
//! This crate has no optional features.
#![deny(missing_docs)]

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use ledger_core::backend::feed::{
    StoredChange, StoredRecord, appended_ids, expand_runs, id_runs, join_entries,
};
use ledger_core::backend::stored_position;
use ledger_core::{
    BackendErrorKind, Entry, EntryId, Error, FeedRecord, ListOptions, Mutation, Result, StreamStat,
};

/// A driver error as the SDK's error, with its kind read from the error (and, for database
/// errors, from the backend's code: see [`database_error_kind`]).
pub fn backend_err(e: sqlx::Error) -> Error {
    use sqlx::Error as E;
    let kind = match &e {
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolClosed | E::WorkerCrashed => {
            BackendErrorKind::Connection
        }
        E::PoolTimedOut => BackendErrorKind::Timeout,
        E::ColumnDecode { .. } | E::Decode(_) => BackendErrorKind::Corrupt,
        E::Database(db) => database_error_kind(db.code().as_deref().unwrap_or(""), db.kind()),
        _ => BackendErrorKind::Other,
    };
    Error::backend(kind, e)
}

/// The kind of a database error from its code: a PostgreSQL SQLSTATE (always five characters,
/// class first) or an SQLite result code (a number below 10 000, whose low byte is the primary
/// code); else from sqlx's reading of it.
pub fn database_error_kind(code: &str, kind: sqlx::error::ErrorKind) -> BackendErrorKind {
    let by_code = if code.len() == 5 {
        match code {
            "40001" | "40P01" => Some(BackendErrorKind::Serialization),
            "57014" | "55P03" => Some(BackendErrorKind::Timeout), // statement timeout, lock wait
            "57P01" | "57P02" | "57P03" => Some(BackendErrorKind::Connection), // shutting down
            "XX001" | "XX002" => Some(BackendErrorKind::Corrupt), // data or index corrupted
            _ if code.starts_with("08") => Some(BackendErrorKind::Connection),
            _ if code.starts_with("23") => Some(BackendErrorKind::Constraint),
            _ => None,
        }
    } else {
        code.parse::<u32>()
            .ok()
            .and_then(|sqlite| match sqlite & 0xff {
                5 | 6 => Some(BackendErrorKind::Timeout), // SQLITE_BUSY, SQLITE_LOCKED
                11 | 26 => Some(BackendErrorKind::Corrupt), // SQLITE_CORRUPT, SQLITE_NOTADB
                19 => Some(BackendErrorKind::Constraint),
                10 | 14 => Some(BackendErrorKind::Connection), // SQLITE_IOERR, SQLITE_CANTOPEN
                _ => None,
            })
    };
    by_code.unwrap_or(match kind {
        sqlx::error::ErrorKind::UniqueViolation
        | sqlx::error::ErrorKind::ForeignKeyViolation
        | sqlx::error::ErrorKind::NotNullViolation
        | sqlx::error::ErrorKind::CheckViolation => BackendErrorKind::Constraint,
        _ => BackendErrorKind::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::error::ErrorKind;

    #[test]
    fn database_codes_map_to_kinds() {
        let cases = [
            ("40001", BackendErrorKind::Serialization),
            ("40P01", BackendErrorKind::Serialization),
            ("08006", BackendErrorKind::Connection),
            ("23505", BackendErrorKind::Constraint),
            ("57014", BackendErrorKind::Timeout),
            ("42P01", BackendErrorKind::Other),
            ("5", BackendErrorKind::Timeout),
            ("517", BackendErrorKind::Timeout),
            ("2067", BackendErrorKind::Constraint),
            ("11", BackendErrorKind::Corrupt),
            ("1", BackendErrorKind::Other),
        ];
        for (code, kind) in cases {
            assert_eq!(
                database_error_kind(code, ErrorKind::Other),
                kind,
                "code {code}"
            );
        }
        assert_eq!(
            database_error_kind("", ErrorKind::UniqueViolation),
            BackendErrorKind::Constraint
        );
    }
}

/// A SQL `LIKE` pattern matching `text` literally anywhere: `%`, `_` and `\` are escaped with
/// `\` (use `ESCAPE '\'`).
pub fn like_contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Whether `text` appears unchanged inside a JSON string as serde_json, SQLite and PostgreSQL
/// write it (no `"`, `\` or control characters, which they escape): then a payload with a
/// string containing `text` has JSON text containing it, a cheap filter before the exact test.
pub fn json_renders_verbatim(text: &str) -> bool {
    !text.chars().any(|c| c == '"' || c == '\\' || c < ' ')
}

/// A version as the SQL backends compare it (`BIGINT`): versions beyond `i64::MAX` cannot be
/// stored, so every stored version is below the largest one.
pub fn stored_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// JSON text of a value that always serializes (maps and sets of strings, JSON values).
pub fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("string maps, string sets and JSON values serialize")
}

/// The [`StreamStat`] of `stream` from a row of `COUNT(*), MIN(id), MAX(id), version` (the
/// version `NULL` for a stream never written).
pub fn stream_stat<R: Row>(stream: &str, row: &R) -> Result<StreamStat>
where
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let count: i64 = row.try_get(0).map_err(backend_err)?;
    let first: Option<i64> = row.try_get(1).map_err(backend_err)?;
    let last: Option<i64> = row.try_get(2).map_err(backend_err)?;
    let version: Option<i64> = row.try_get(3).map_err(backend_err)?;
    Ok(StreamStat {
        stream: stream.to_owned(),
        count: count as u64,
        first_id: first.map(EntryId::new),
        last_id: last.map(EntryId::new),
        last_version: version.unwrap_or(0) as u64,
    })
}

/// `Ok` if entry `id` of `stream` exists, with `exists` selecting a row by stream and id; else
/// [`Error::EntryNotFound`]. For an update that matched no row: nothing to change, or no entry.
pub async fn require_entry<DB>(
    conn: &mut DB::Connection,
    exists: &str,
    stream: &str,
    id: EntryId,
) -> Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let found = sqlx::query(exists)
        .bind(stream)
        .bind(id.get())
        .fetch_optional(conn)
        .await
        .map_err(backend_err)?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::entry_not_found(stream, id)),
    }
}

/// The saved position of cursor `name`, with `get` selecting `position` by `name`.
pub async fn get_cursor<'e, DB, E>(executor: E, get: &str, name: &str) -> Result<Option<u64>>
where
    DB: Database,
    E: Executor<'e, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let row = sqlx::query(get)
        .bind(name)
        .fetch_optional(executor)
        .await
        .map_err(backend_err)?;
    row.map(|r| r.try_get::<i64, _>(0).map(|p| p as u64))
        .transpose()
        .map_err(backend_err)
}

/// Saves `position` for cursor `name` with `set` (an upsert that keeps the greater position).
pub async fn set_cursor<'e, DB, E>(executor: E, set: &str, name: &str, position: u64) -> Result<()>
where
    DB: Database,
    E: Executor<'e, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(set)
        .bind(name)
        .bind(stored_position(position)?)
        .execute(executor)
        .await
        .map_err(backend_err)?;
    Ok(())
}

/// How many entries `stream` holds, with `count` selecting `COUNT(*)` by stream.
pub async fn count<DB>(pool: &Pool<DB>, count: &str, stream: &str) -> Result<u64>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let row = sqlx::query(count)
        .bind(stream)
        .fetch_one(pool)
        .await
        .map_err(backend_err)?;
    let n: i64 = row.try_get(0).map_err(backend_err)?;
    Ok(n as u64)
}

/// The stat of `stream`, with `stat` selecting what [`stream_stat`] decodes, by stream.
pub async fn stat<DB>(pool: &Pool<DB>, stat: &str, stream: &str) -> Result<StreamStat>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let row = sqlx::query(stat)
        .bind(stream)
        .fetch_one(pool)
        .await
        .map_err(backend_err)?;
    stream_stat(stream, &row)
}

/// Streams holding entries, with `list` selecting stream ids after a stream id, ascending,
/// limited.
pub async fn list_streams<DB>(
    pool: &Pool<DB>,
    list: &str,
    options: &ListOptions,
) -> Result<Vec<String>>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let rows = sqlx::query(list)
        // Every valid stream id sorts after "" (ids are never empty).
        .bind(options.after.as_deref().unwrap_or(""))
        .bind(i64::from(options.limit))
        .fetch_all(pool)
        .await
        .map_err(backend_err)?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(backend_err))
        .collect()
}

/// Runs each of `statements` (bound: the new name, then the old) to move a stream's entries
/// and version row from `from` to `to`.
pub async fn move_stream<DB>(
    conn: &mut DB::Connection,
    statements: &[&str],
    from: &str,
    to: &str,
) -> Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    for statement in statements {
        sqlx::query(statement)
            .bind(to)
            .bind(from)
            .execute(&mut *conn)
            .await
            .map_err(backend_err)?;
    }
    Ok(())
}

/// `Ok` if the database answers a trivial query.
pub async fn ping<DB>(pool: &Pool<DB>) -> Result<()>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map_err(backend_err)?;
    Ok(())
}

/// The columns a feed record is stored in.
pub struct FeedColumns {
    /// The mutation as JSON text (none for an append).
    pub mutation: Option<String>,
    /// An append's entry ids as JSON runs `[[first, last], …]`.
    pub ids: Option<String>,
    /// The stream's version after an append.
    pub version: Option<i64>,
}

impl FeedColumns {
    /// How a record of `mutation` is stored.
    pub fn of(mutation: &Mutation) -> Self {
        match StoredChange::of(mutation) {
            StoredChange::Append { ids, version } => FeedColumns {
                mutation: None,
                ids: Some(json_text(&id_runs(&ids))),
                version: Some(version as i64),
            },
            StoredChange::Whole(m) => FeedColumns {
                mutation: Some(json_text(&m)),
                ids: None,
                version: None,
            },
        }
    }
}

/// Up to `limit` feed records after `after` and at most `up_to`, with `read` selecting
/// `position, stream, mutation, ids, version` in `(after, up_to]`, ascending, limited (bound in
/// that order): the mutation as JSON text, or for an append its entries' ids as JSON runs
/// `[[first, last], …]` and the stream's version. `entries` fetches the entries with the given
/// ids (those it does not find were trimmed), which are joined back into their appends.
pub async fn read_feed<DB>(
    pool: &Pool<DB>,
    read: &str,
    after: Option<u64>,
    up_to: u64,
    limit: u32,
    entries: impl AsyncFnOnce(Vec<i64>) -> Result<Vec<Entry>>,
) -> Result<Vec<FeedRecord>>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> &'r str: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let rows = sqlx::query(read)
        .bind(stored_position(after.unwrap_or(0))?)
        .bind(stored_position(up_to.min(i64::MAX as u64))?)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(backend_err)?;
    let records = rows
        .iter()
        .map(|row| {
            let position: i64 = row.try_get(0).map_err(backend_err)?;
            let stream: String = row.try_get(1).map_err(backend_err)?;
            let mutation: Option<&str> = row.try_get(2).map_err(backend_err)?;
            let ids: Option<&str> = row.try_get(3).map_err(backend_err)?;
            let version: Option<i64> = row.try_get(4).map_err(backend_err)?;
            let ids = match ids {
                Some(text) => serde_json::from_str::<Vec<[i64; 2]>>(text)
                    .map_err(|e| e.to_string())
                    .and_then(|runs| expand_runs(&runs))
                    .map_err(|e| {
                        Error::corrupt(format_args!("ids of feed record {position}: {e}"))
                    })?,
                None => Vec::new(),
            };
            Ok(StoredRecord {
                position: position as u64,
                stream,
                change: StoredChange::from_row(position, mutation, ids, version)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<i64> = appended_ids(&records).iter().map(|id| id.get()).collect();
    let entries = if ids.is_empty() {
        Vec::new()
    } else {
        entries(ids).await?
    };
    Ok(join_entries(records, entries))
}

/// One schema migration of a store: its version, what it does, and its statements.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in ascending order; recorded once applied.
    pub version: i64,
    /// What it creates or changes.
    pub description: &'static str,
    /// Its statements, in order, with placeholders such as `{t}` that the backend's `fill`
    /// replaces with validated names.
    pub statements: &'static [&'static str],
}

/// The dialect's statements around migrations.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSql<'a> {
    /// Opens the migration transaction (e.g. `BEGIN IMMEDIATE`, which also serializes them).
    pub begin: &'a str,
    /// Run first in the transaction to serialize concurrent migrators, if `begin` does not.
    pub lock: Option<&'a str>,
    /// Creates `ledger_migrations (store, version, description, applied_at)` if missing.
    pub create_table: &'a str,
    /// Selects the highest applied version of a store (bound: store), 0 if none.
    pub applied: &'a str,
    /// Records one applied migration (bound: store, version, description).
    pub record: &'a str,
}

/// Applies the `migrations` that `store` is missing, in one transaction, and records them, so
/// that processes opening a store at once apply each migration exactly once. A store migrated
/// past the last of `migrations` (by a newer release) is [`Error::IncompatibleSchema`].
pub async fn migrate<DB>(
    pool: &Pool<DB>,
    sql: &MigrationSql<'_>,
    store: &str,
    migrations: &[Migration],
    fill: impl Fn(&str) -> String,
) -> Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let mut tx = pool
        .begin_with(sql.begin.to_owned())
        .await
        .map_err(backend_err)?;
    let setup = sql.lock.into_iter().chain([sql.create_table]);
    for statement in setup {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
    }
    let applied: i64 = sqlx::query(sql.applied)
        .bind(store)
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(backend_err)?;
    let known = migrations.last().map_or(0, |m| m.version);
    if applied > known {
        // A newer release changed the schema: writing with this one could corrupt it.
        return Err(Error::IncompatibleSchema {
            store: store.to_owned(),
            found: applied,
            known,
        });
    }
    for migration in migrations.iter().filter(|m| m.version > applied) {
        for statement in migration.statements {
            sqlx::query(&fill(statement))
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
        }
        sqlx::query(sql.record)
            .bind(store)
            .bind(migration.version)
            .bind(migration.description)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
    }
    tx.commit().await.map_err(backend_err)
}
