//! Retention and clean-up on a schedule: one place to configure how long logs are kept.

use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;

use crate::store::LogStore;

/// How long logs are kept and how they are removed. The only retention setting there is:
/// [`crate::LogStoreOptions::retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Logs accepted more than this many days ago are deleted (at least 1).
    pub days: u32,
    /// Logs deleted per transaction, so a sweep never holds the database for long.
    pub batch: u32,
    /// Time between sweeps (the first runs at start).
    pub interval: Duration,
}

impl Retention {
    /// Keep `days` days, sweeping hourly, 1000 logs per transaction.
    pub fn days(days: u32) -> Retention {
        Retention {
            days: days.max(1),
            batch: 1000,
            interval: Duration::from_secs(3600),
        }
    }
}

/// How often abandoned `processing` logs are flushed.
const FLUSH_EVERY: Duration = Duration::from_secs(60);

impl LogStore {
    /// Starts the store's upkeep in the background: the retention sweep (if configured) and,
    /// every minute, the flush of `processing` logs older than the processing timeout. Abort
    /// the handle to stop it.
    pub fn start_upkeep(&self) -> JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let retention = store.options().retention;
            let mut next_sweep = tokio::time::Instant::now();
            loop {
                let now = Utc::now();
                // A timeout or retention too long to subtract from now removes nothing.
                let stale = chrono::Duration::from_std(store.options().processing_timeout)
                    .ok()
                    .and_then(|t| now.checked_sub_signed(t));
                if let Some(before) = stale
                    && let Err(e) = store.flush(before).await
                {
                    tracing::warn!(error = %e, "flushing stale processing logs failed");
                }
                let cutoff = retention.and_then(|r| {
                    chrono::Duration::try_days(i64::from(r.days))
                        .and_then(|d| now.checked_sub_signed(d))
                        .map(|cutoff| (r, cutoff))
                });
                if let Some((r, cutoff)) = cutoff
                    && tokio::time::Instant::now() >= next_sweep
                {
                    match store.delete_older_than(cutoff, r.batch).await {
                        Ok(n) => tracing::info!(deleted = n, %cutoff, "retention sweep"),
                        Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                    }
                    next_sweep = tokio::time::Instant::now() + r.interval;
                }
                let wake = retention.map_or(FLUSH_EVERY, |r| r.interval.min(FLUSH_EVERY));
                tokio::time::sleep(wake).await;
            }
        })
    }
}
