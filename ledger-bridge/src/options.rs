//! How a bridge runs.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry::metrics::Meter;

use ledger_core::{MAX_LIMIT, MutationKind};

/// How a [`crate::Bridge`] reads, applies and retries.
///
/// ```
/// use std::time::Duration;
/// use ledger_bridge::BridgeOptions;
/// use ledger_core::MutationKind;
/// let options = BridgeOptions::new("orders-to-warehouse")
///     .batch(1000)
///     .poll_interval(Duration::from_secs(5))
///     .parallel(4)
///     .skip([MutationKind::Rename]);
/// assert_eq!(options.name(), "orders-to-warehouse");
/// ```
#[derive(Clone)]
pub struct BridgeOptions {
    pub(crate) name: String,
    pub(crate) batch: u32,
    pub(crate) poll_interval: Duration,
    pub(crate) skip: BTreeSet<MutationKind>,
    pub(crate) parallel: usize,
    pub(crate) max_retry_delay: Duration,
    pub(crate) replay_from_start: bool,
    pub(crate) meter: Option<Meter>,
}

impl std::fmt::Debug for BridgeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeOptions")
            .field("name", &self.name)
            .field("batch", &self.batch)
            .field("poll_interval", &self.poll_interval)
            .field("skip", &self.skip)
            .field("parallel", &self.parallel)
            .field("max_retry_delay", &self.max_retry_delay)
            .field("replay_from_start", &self.replay_from_start)
            .field("meter", &self.meter.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl BridgeOptions {
    /// A bridge named `name`: the cursor it keeps in the sink, and the `bridge.name` of its
    /// metrics. Two bridges with one name on one sink share their progress. Reads pages of 500
    /// records, polls every second when the source has no commit signal (and as a fallback when
    /// it has one), applies one page at a time in one transaction, skips nothing, backs off up
    /// to 30 seconds between retries, and reports to the global meter provider.
    pub fn new(name: impl Into<String>) -> Self {
        BridgeOptions {
            name: name.into(),
            batch: 500,
            poll_interval: Duration::from_secs(1),
            skip: BTreeSet::new(),
            parallel: 1,
            max_retry_delay: Duration::from_secs(30),
            replay_from_start: false,
            meter: None,
        }
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records per read of the source's feed, and so per page applied: 1 to 10 000.
    pub fn batch(mut self, batch: u32) -> Self {
        self.batch = batch;
        self
    }

    /// Longest wait for new records once caught up. A source with a commit signal (every
    /// store's own commits; PostgreSQL's LISTEN/NOTIFY, MongoDB's change streams across
    /// processes) wakes the bridge sooner.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Mutation kinds not to apply, for a sink that cannot (ClickHouse has no rename). Each
    /// one passed over is counted ([`crate::Stats::skipped`], `ledger.bridge.records.skipped`);
    /// the sink then differs from the source where those records would have changed it.
    pub fn skip(mut self, kinds: impl IntoIterator<Item = MutationKind>) -> Self {
        self.skip = kinds.into_iter().collect();
        self
    }

    /// How many lanes of a page are applied at once (1 to 16; 1, the default, applies a page
    /// in one call). Above 1, a page's records are split by [`ledger_core::Lane`] (a stream's
    /// records are all in one lane, in order) and each lane's part is its own transaction, so
    /// a sink that takes concurrent writers (PostgreSQL, MongoDB) applies them side by side.
    /// A rename waits for every record before it and is applied alone.
    pub fn parallel(mut self, lanes: usize) -> Self {
        self.parallel = lanes;
        self
    }

    /// Longest pause between retries of a failing read or apply (the pauses grow
    /// exponentially to it, with jitter).
    pub fn max_retry_delay(mut self, delay: Duration) -> Self {
        self.max_retry_delay = delay;
        self
    }

    /// Reads the source's feed from its first record instead of from the sink's cursor: the
    /// records the sink has applied are read again and passed over, changing nothing (a check
    /// that replays are harmless, or a full pass after the sink's cursors were lost).
    pub fn replay_from_start(mut self, replay: bool) -> Self {
        self.replay_from_start = replay;
        self
    }

    /// Reports metrics to `meter` instead of the global meter provider's `ledger-bridge`.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        ledger_core::validate_replication_cursor(&self.name).map_err(|e| e.to_string())?;
        if !(1..=MAX_LIMIT).contains(&self.batch) {
            return Err(format!(
                "batch must be 1 to {MAX_LIMIT} records, not {}",
                self.batch
            ));
        }
        if self.poll_interval.is_zero() {
            return Err("poll interval must be longer than zero".into());
        }
        let lanes = usize::from(ledger_core::Lane::COUNT);
        if !(1..=lanes).contains(&self.parallel) {
            return Err(format!(
                "parallel must be 1 to {lanes} lanes, not {}",
                self.parallel
            ));
        }
        if self.max_retry_delay.is_zero() {
            return Err("max retry delay must be longer than zero".into());
        }
        Ok(())
    }
}
