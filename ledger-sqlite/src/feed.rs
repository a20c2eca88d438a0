//! The change feed: one row per mutation, written in the mutation's transaction. An append's
//! row names its entries (runs of ids, and the stream's version) instead of copying them;
//! reading joins the entries back ([`ledger_core::backend::feed`]).
//!
//! Positions come from an `AUTOINCREMENT` key, assigned under SQLite's single write lock, so
//! they are commit-ordered: a reader that has seen position `p` can never later find a newly
//! committed record below `p` (gap safety for free).

use sqlx::{SqliteConnection, SqlitePool};

use ledger_core::backend::append::now;
use ledger_core::{FeedRecord, Mutation, Result};

use crate::sql::Statements;
use crate::{backend_err, read};

/// Writes one feed record for `mutation` on `stream`.
pub async fn record(
    conn: &mut SqliteConnection,
    sql: &Statements,
    stream: &str,
    mutation: &Mutation,
) -> Result<()> {
    let columns = ledger_sql::FeedColumns::of(mutation);
    sqlx::query(&sql.insert_feed)
        .bind(stream)
        .bind(columns.mutation)
        .bind(columns.ids)
        .bind(columns.version)
        .bind(now().timestamp_micros())
        .execute(conn)
        .await
        .map_err(backend_err)?;
    Ok(())
}

/// Up to `limit` records after `after`, their appends' entries joined back.
pub async fn read(
    pool: &SqlitePool,
    sql: &Statements,
    after: Option<u64>,
    limit: u32,
) -> Result<Vec<FeedRecord>> {
    // Every stored record is committed: positions are commit-ordered (see the module docs).
    ledger_sql::read_feed(pool, &sql.read_feed, after, u64::MAX, limit, async |ids| {
        let rows = sqlx::query(&sql.entries_by_ids)
            .bind(ledger_sql::json_text(&ids))
            .fetch_all(pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(read::entry_from_row).collect()
    })
    .await
}
