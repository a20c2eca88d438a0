//! Wake-ups from LISTEN/NOTIFY: appends and feed records notify the store's channel at COMMIT;
//! one listener connection per store turns notifications into commit signals for subscriptions.
//!
//! A lost connection is re-established by the listener; since notifications sent meanwhile are
//! lost, every reconnect also signals, so subscribers re-read from their cursors (they never rely
//! on a notification for correctness, only for promptness; polling remains the fallback).

use std::sync::Weak;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use ledger_core::Lifecycle;

/// Listens on `channel` until the store (its lifecycle) is dropped.
pub fn spawn(
    pool: PgPool,
    channel: String,
    lifecycle: Weak<Lifecycle>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(100);
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            if let Err(e) = listener.listen(&channel).await {
                tracing::warn!(error = %e, channel, "LISTEN failed; retrying");
                tokio::time::sleep(pause).await;
                continue;
            }
            pause = Duration::from_millis(100);
            loop {
                let Some(lifecycle) = lifecycle.upgrade() else {
                    return;
                };
                // Listening (again): anything may have happened while we were not.
                lifecycle.committed();
                drop(lifecycle);
                match listener.try_recv().await {
                    Ok(Some(_)) => {}
                    // The connection dropped; the next try_recv reconnects and re-listens.
                    Ok(None) => tracing::debug!(channel, "LISTEN connection lost; reconnecting"),
                    Err(e) => {
                        tracing::warn!(error = %e, channel, "LISTEN failed; reconnecting");
                        break;
                    }
                }
            }
        }
    })
}
