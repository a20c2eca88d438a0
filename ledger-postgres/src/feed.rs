//! The change feed, gap-safe by serialized positions.
//!
//! Sequence values are taken at insert and become visible at commit, in any order, so a reader
//! tailing by a sequence can pass a value whose transaction commits later and miss it forever.
//! Here every mutation that records a feed entry takes its position from one counter row
//! (`t_feed_head`) in its last statement, and the row lock is held until COMMIT. The next
//! position can only be taken after the previous holder committed (or rolled back, which also
//! returns its position), so positions are contiguous and assigned in commit order: a reader that
//! has seen position `p` can never later find a newly committed record below `p`.
//!
//! The cost: feed-recording transactions of one store serialize for the span of their final
//! statement and COMMIT (about one commit latency each). Appends without the change feed do not
//! touch the counter. The alternatives (a visibility fence on `pg_snapshot_xmin`, an
//! advisory-lock watermark) keep writers parallel but stall readers behind any long transaction
//! in the cluster, and order records by transaction instead of by a plain position.

use sqlx::PgConnection;

use ledger_core::{Mutation, Result};

use crate::backend_err;
use crate::sql::Statements;

/// Writes one feed record for `mutation` on `stream` and notifies listeners at COMMIT.
pub async fn record(
    conn: &mut PgConnection,
    sql: &Statements,
    stream: &str,
    mutation: &Mutation,
) -> Result<()> {
    sqlx::query(&sql.record_feed)
        .bind(stream)
        .bind(ledger_sql::json_text(mutation))
        .bind(&sql.names.table)
        .execute(conn)
        .await
        .map_err(backend_err)?;
    Ok(())
}
