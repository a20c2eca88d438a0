//! The change feed, gap-safe by a watermark of feed writers still in flight.
//!
//! Sequence values are taken at insert and become visible at commit, in any order, so a reader
//! tailing by a sequence can pass a value whose transaction commits later and miss it forever.
//! Here a feed writer first takes a shared transaction-scoped advisory lock (its *fence*) tagged
//! with the last position taken so far, then takes its own position from the sequence
//! `t_feed_pos`, and holds the fence until COMMIT or ROLLBACK. Every position above a fence's tag
//! may therefore still be uncommitted, and every position at or below the lowest tag of the
//! fences still held (or, with none held, below the last position taken) belongs to a finished
//! transaction. A reader computes that *horizon* in one statement (the sequence, then
//! `pg_locks`) and reads records up to it in the next, whose snapshot is newer than the locks it
//! saw: it can never find a newly committed record below one it has read.
//!
//! Writers never wait for each other: shared locks do not conflict, so concurrent appends to
//! different streams commit in parallel and share WAL flushes. What a writer pays is one
//! advisory lock and one `nextval`; what a reader pays is one scan of `pg_locks` per page.
//! Readers wait only for feed writers of this store that are still open (an unrelated long
//! transaction, in another table or database, does not hold a fence), and a record committed
//! after a writer that rolled back is read at the next commit or poll (the rollback notifies
//! nobody). Lock tags are positions modulo 2^31, which is exact while fewer than 2^31 positions
//! are taken during one writer's transaction.

use sqlx::{PgConnection, PgPool};

use ledger_core::{FeedRecord, Mutation, Result};

use crate::sql::Statements;
use crate::{backend_err, read};

/// Writes one feed record for `mutation` on `stream`.
pub async fn record(
    conn: &mut PgConnection,
    sql: &Statements,
    stream: &str,
    mutation: &Mutation,
) -> Result<()> {
    let columns = ledger_sql::FeedColumns::of(mutation);
    sqlx::query(&sql.record_feed)
        .bind(stream)
        .bind(columns.mutation)
        .bind(columns.ids)
        .bind(columns.version)
        .execute(conn)
        .await
        .map_err(backend_err)?;
    Ok(())
}

/// The horizon: the highest position a reader may read now (every position up to it has
/// committed or never will); 0 while none has.
pub async fn horizon(pool: &PgPool, sql: &Statements) -> Result<u64> {
    let horizon: Option<i64> = sqlx::query_scalar(&sql.feed_horizon)
        .fetch_one(pool)
        .await
        .map_err(backend_err)?;
    Ok(horizon.unwrap_or(0).max(0) as u64)
}

/// Up to `limit` records after `after` and below the horizon, their appends' entries joined
/// back.
pub async fn read(
    pool: &PgPool,
    sql: &Statements,
    after: Option<u64>,
    limit: u32,
) -> Result<Vec<FeedRecord>> {
    // Its own statement, so that the records' snapshot is taken after it (see the module docs).
    let horizon = horizon(pool, sql).await?;
    if horizon <= after.unwrap_or(0) {
        return Ok(Vec::new());
    }
    ledger_sql::read_feed(pool, &sql.read_feed, after, horizon, limit, async |ids| {
        let rows = sqlx::query(&sql.entries_by_ids)
            .bind(ids)
            .fetch_all(pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(read::entry_from_row).collect()
    })
    .await
}
