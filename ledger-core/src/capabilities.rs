//! What a store can promise, flag by flag.

/// What a store offers. Users branch on it; the conformance suite requires every behaviour a
/// flag promises, reports the behaviours a missing flag excludes as skipped, and requires the
/// operations a store lacks to answer [`crate::Error::NotSupported`].
///
/// A backend builds its value from [`Capabilities::none`], naming each flag it keeps, so a flag
/// added in a later release reads as "not offered" for a backend written before it, never as
/// a promise the backend did not make.
///
/// ```
/// use ledger_core::{Capabilities, FeedOrder, TimestampPrecision};
/// let caps = Capabilities::none()
///     .expected_version(true)
///     .dedup(true)
///     .change_feed(Some(FeedOrder::CommitOrdered));
/// assert!(caps.dedup && !caps.tags);
/// assert_eq!(caps.timestamp_precision, TimestampPrecision::Seconds);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `ExpectedVersion` conditions are enforced: of two appenders expecting the same version
    /// exactly one wins (among the writers [`Capabilities::conditions`] names). Without it,
    /// appends accept only [`crate::ExpectedVersion::Any`].
    pub expected_version: bool,
    /// Dedup keys are enforced (among the writers [`Capabilities::conditions`] names).
    pub dedup: bool,
    /// Among which writers expected versions, dedup keys, gapless versions and annotation
    /// merges hold.
    pub conditions: Conditions,
    /// Appends are atomic: all entries of a batch are written, or none.
    pub atomic_append: bool,
    /// `set_tags` is supported.
    pub tags: bool,
    /// `set_annotations` and annotation filters are supported.
    pub annotations: bool,
    /// `trim` is supported.
    pub trim: bool,
    /// `rename_stream` is supported.
    pub rename: bool,
    /// The search modes offered ([`crate::Store::search`]).
    pub search: SearchModes,
    /// The change feed is offered and enabled, with this ordering.
    pub change_feed: Option<FeedOrder>,
    /// How precise stored timestamps (`created_at`, `updated_at`) are.
    pub timestamp_precision: TimestampPrecision,
    /// Appends can run inside a caller's database transaction (the backend's `append_in`).
    pub transactions: bool,
    /// Durable named cursors ([`crate::Store::get_cursor`]).
    pub cursor_store: bool,
    /// Health checks ([`crate::Store::health`]).
    pub health: bool,
    /// Replicated feed records can be applied ([`crate::Store::apply_replicated`]), and how the
    /// cursor is kept with them.
    pub replication: Option<Replication>,
}

/// Among which writers a store's write conditions hold: expected versions, dedup keys, versions
/// without gaps or repeats, and annotation merges that lose no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Conditions {
    /// Among the tasks sharing one store handle (it and its clones). The database cannot decide
    /// them (no transactions, no unique constraints), so the handle does: writers through other
    /// handles, in this process or another, must write other streams.
    Handle,
    /// Among every writer of the database, in any process: the database decides them.
    Database,
}

/// The search modes a store offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SearchModes {
    /// [`crate::SearchMode::Substring`].
    pub substring: bool,
    /// [`crate::SearchMode::FullText`].
    pub full_text: bool,
}

impl SearchModes {
    /// No search.
    pub const NONE: SearchModes = SearchModes {
        substring: false,
        full_text: false,
    };
    /// Substring search only.
    pub const SUBSTRING: SearchModes = SearchModes {
        substring: true,
        full_text: false,
    };
    /// Substring and full-text search.
    pub const ALL: SearchModes = SearchModes {
        substring: true,
        full_text: true,
    };

    /// Whether any mode is offered.
    pub fn any(self) -> bool {
        self.substring || self.full_text
    }

    /// Whether `mode` is offered.
    pub fn offers(self, mode: crate::SearchMode) -> bool {
        match mode {
            crate::SearchMode::Substring => self.substring,
            crate::SearchMode::FullText => self.full_text,
        }
    }
}

/// How a store orders its change feed relative to commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedOrder {
    /// Positions are assigned in commit order: a reader never finds a new record below one it saw.
    CommitOrdered,
    /// Positions may be taken out of commit order, but readers stop below uncommitted ones, so a
    /// reader still never finds a new record below one it saw.
    GapSafeWatermark,
}

/// How precise a store's timestamps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TimestampPrecision {
    /// Whole seconds.
    Seconds,
    /// Milliseconds (MongoDB's dates).
    Milliseconds,
    /// Microseconds (the SQL backends and the reference store).
    Microseconds,
}

impl TimestampPrecision {
    /// `time` truncated to this precision.
    pub fn truncate(self, time: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        use chrono::SubsecRound;
        time.trunc_subsecs(match self {
            TimestampPrecision::Seconds => 0,
            TimestampPrecision::Milliseconds => 3,
            TimestampPrecision::Microseconds => 6,
        })
    }
}

/// How a store keeps a replication cursor with the records it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replication {
    /// The records and the cursor commit in one transaction: a batch is applied exactly once.
    Transactional,
    /// The cursor is saved after the records; a batch replayed after a crash in between is
    /// applied again, and every record is idempotent, so replaying changes nothing.
    Idempotent,
}

impl Capabilities {
    /// Nothing offered, seconds-precise timestamps, conditions held by one handle: the start for a backend naming what it keeps.
    pub const fn none() -> Self {
        Capabilities {
            expected_version: false,
            dedup: false,
            conditions: Conditions::Handle,
            atomic_append: false,
            tags: false,
            annotations: false,
            trim: false,
            rename: false,
            search: SearchModes::NONE,
            change_feed: None,
            timestamp_precision: TimestampPrecision::Seconds,
            transactions: false,
            cursor_store: false,
            health: false,
            replication: None,
        }
    }

    /// Sets [`Capabilities::expected_version`].
    pub const fn expected_version(mut self, on: bool) -> Self {
        self.expected_version = on;
        self
    }

    /// Sets [`Capabilities::dedup`].
    pub const fn dedup(mut self, on: bool) -> Self {
        self.dedup = on;
        self
    }

    /// Sets [`Capabilities::conditions`].
    pub const fn conditions(mut self, conditions: Conditions) -> Self {
        self.conditions = conditions;
        self
    }

    /// Sets [`Capabilities::atomic_append`].
    pub const fn atomic_append(mut self, on: bool) -> Self {
        self.atomic_append = on;
        self
    }

    /// Sets [`Capabilities::tags`].
    pub const fn tags(mut self, on: bool) -> Self {
        self.tags = on;
        self
    }

    /// Sets [`Capabilities::annotations`].
    pub const fn annotations(mut self, on: bool) -> Self {
        self.annotations = on;
        self
    }

    /// Sets [`Capabilities::trim`].
    pub const fn trim(mut self, on: bool) -> Self {
        self.trim = on;
        self
    }

    /// Sets [`Capabilities::rename`].
    pub const fn rename(mut self, on: bool) -> Self {
        self.rename = on;
        self
    }

    /// Sets [`Capabilities::search`].
    pub const fn search(mut self, modes: SearchModes) -> Self {
        self.search = modes;
        self
    }

    /// Sets [`Capabilities::change_feed`].
    pub const fn change_feed(mut self, order: Option<FeedOrder>) -> Self {
        self.change_feed = order;
        self
    }

    /// Sets [`Capabilities::timestamp_precision`].
    pub const fn timestamp_precision(mut self, precision: TimestampPrecision) -> Self {
        self.timestamp_precision = precision;
        self
    }

    /// Sets [`Capabilities::transactions`].
    pub const fn transactions(mut self, on: bool) -> Self {
        self.transactions = on;
        self
    }

    /// Sets [`Capabilities::cursor_store`].
    pub const fn cursor_store(mut self, on: bool) -> Self {
        self.cursor_store = on;
        self
    }

    /// Sets [`Capabilities::health`].
    pub const fn health(mut self, on: bool) -> Self {
        self.health = on;
        self
    }

    /// Sets [`Capabilities::replication`].
    pub const fn replication(mut self, replication: Option<Replication>) -> Self {
        self.replication = replication;
        self
    }
}
