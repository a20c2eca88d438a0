//! The change feed: one row per mutation, written in the mutation's transaction.
//!
//! Positions come from an `AUTOINCREMENT` key, assigned under SQLite's single write lock, so
//! they are commit-ordered: a reader that has seen position `p` can never later find a newly
//! committed record below `p` (gap safety for free).

use sqlx::SqliteConnection;

use ledger_core::backend::append::now;
use ledger_core::{Mutation, Result};

use crate::backend_err;
use crate::sql::Statements;

/// Writes one feed record for `mutation` on `stream`.
pub async fn record(
    conn: &mut SqliteConnection,
    sql: &Statements,
    stream: &str,
    mutation: &Mutation,
) -> Result<()> {
    let text = ledger_sql::json_text(mutation);
    sqlx::query(&sql.insert_feed)
        .bind(stream)
        .bind(text)
        .bind(now().timestamp_micros())
        .execute(conn)
        .await
        .map_err(backend_err)?;
    Ok(())
}
