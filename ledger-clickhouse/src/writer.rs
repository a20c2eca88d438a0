//! What a store handle decides itself, since ClickHouse has neither transactions nor unique
//! constraints: writes to one stream take turns under the stream's lock, which also keeps what
//! the handle knows of the stream (its tip, and its dedup keys while there are few enough), and
//! ids come from the clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use ledger_core::EntryId;

/// A stream's version and its highest id, as this handle last wrote or read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tip {
    pub version: u64,
    pub last_id: i64,
}

/// What a handle knows of a stream it writes.
#[derive(Debug)]
pub struct StreamState {
    pub tip: Tip,
    pub keys: Keys,
}

/// The dedup keys of a stream, as the handle knows them.
#[derive(Debug)]
pub enum Keys {
    /// Not read yet.
    Unread,
    /// Every key the stream holds, with its entry's id: an append needs no look-up.
    Kept(KeySet),
    /// Too many to keep: each append looks its keys up.
    LookedUp,
}

/// Dedup keys kept in memory, counted against the handle's budget.
#[derive(Debug)]
pub struct KeySet {
    keys: HashMap<String, EntryId>,
    budget: Arc<AtomicUsize>,
}

/// The most dedup keys one stream keeps in memory, and all streams of a handle together.
pub const MAX_STREAM_KEYS: usize = 100_000;
const MAX_HANDLE_KEYS: usize = 1_000_000;

impl KeySet {
    /// The id of the entry holding `key`.
    pub fn get(&self, key: &str) -> Option<EntryId> {
        self.keys.get(key).copied()
    }

    /// Adds `keys`; `false` (and nothing added) if the stream or the handle would keep too many.
    pub fn extend(&mut self, keys: Vec<(String, EntryId)>) -> bool {
        if self.keys.len() + keys.len() > MAX_STREAM_KEYS {
            return false;
        }
        // Reserved before they are added, so concurrent loads cannot overshoot the budget.
        let asked = keys.len();
        let reserved = self
            .budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + asked <= MAX_HANDLE_KEYS).then_some(held + asked)
            });
        if reserved.is_err() {
            return false;
        }
        let before = self.keys.len();
        self.keys.extend(keys);
        // Counted as kept, not as given: an entry's revisions repeat its key.
        let kept = self.keys.len() - before;
        self.budget.fetch_sub(asked - kept, Ordering::AcqRel);
        true
    }

    /// Forgets the keys of entries with id `<= up_to` (trimmed: their keys are free again).
    pub fn trim(&mut self, up_to: EntryId) {
        let before = self.keys.len();
        self.keys.retain(|_, id| *id > up_to);
        self.budget
            .fetch_sub(before - self.keys.len(), Ordering::AcqRel);
    }
}

impl Drop for KeySet {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.keys.len(), Ordering::AcqRel);
    }
}

/// The stream's lock, holding what the handle knows of it (`None`: read it from the database).
pub type StreamGuard = OwnedMutexGuard<Option<StreamState>>;

/// How many idle stream locks a handle keeps before it forgets them (and their tips).
const KEPT_STREAMS: usize = 4096;

/// The per-handle writer state.
#[derive(Debug, Default)]
pub struct Writers {
    streams: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<StreamState>>>>>,
    last_id: AtomicI64,
    /// Dedup keys kept by all streams.
    kept_keys: Arc<AtomicUsize>,
}

/// Microseconds from the Unix epoch to 2025-01-01, where the id clock starts.
const ID_EPOCH_MICROS: i64 = 1_735_689_600_000_000;
/// Low bits of an id drawn at random, so that two handles writing in the same microsecond
/// (to different streams, as they must) almost never draw one id.
const RANDOM_BITS: u32 = 12;

impl Writers {
    /// Waits for `stream`'s lock.
    pub async fn lock(&self, stream: &str) -> StreamGuard {
        let lock = {
            let mut streams = self
                .streams
                .lock()
                .expect("stream lock map is never poisoned");
            if streams.len() >= KEPT_STREAMS && !streams.contains_key(stream) {
                // A lock nobody holds or waits for carries only a cached tip.
                streams.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            streams.entry(stream.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The first of `count` consecutive new ids, all above `floor` and above every id this
    /// handle took or saw: the clock's microseconds since 2025 in the high bits, random low
    /// bits (2^51 µs last until 2096).
    pub fn take_ids(&self, count: u64, floor: i64) -> i64 {
        let now = chrono::Utc::now().timestamp_micros() - ID_EPOCH_MICROS;
        let clock = (now.max(0) << RANDOM_BITS) | fastrand::i64(0..1 << RANDOM_BITS);
        let mut first = 0;
        let _ = self
            .last_id
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                first = clock.max(last + 1).max(floor + 1);
                Some(first + count as i64 - 1)
            });
        first
    }

    /// An empty key set on this handle's budget.
    pub fn key_set(&self) -> KeySet {
        KeySet {
            keys: HashMap::new(),
            budget: self.kept_keys.clone(),
        }
    }

    /// Records that ids up to `id` are taken (replicated entries keep theirs).
    pub fn saw_id(&self, id: i64) {
        self.last_id.fetch_max(id, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_ascend_past_the_floor_and_every_earlier_id() {
        let writers = Writers::default();
        let a = writers.take_ids(3, 0);
        let b = writers.take_ids(1, 0);
        assert!(b > a + 2, "{b} follows the batch {a}..={}", a + 2);
        let far = i64::MAX / 4;
        assert_eq!(writers.take_ids(1, far), far + 1);
        writers.saw_id(far + 10);
        assert_eq!(writers.take_ids(2, 0), far + 11);
    }

    #[tokio::test]
    async fn a_streams_lock_is_shared_and_keeps_its_state() {
        let writers = Writers::default();
        let tip = Tip {
            version: 3,
            last_id: 9,
        };
        *writers.lock("s").await = Some(StreamState {
            tip,
            keys: Keys::Unread,
        });
        assert_eq!(writers.lock("s").await.as_ref().map(|s| s.tip), Some(tip));
        assert!(writers.lock("other").await.is_none());
    }

    #[test]
    fn kept_keys_count_against_the_budget_until_dropped_or_trimmed() {
        let writers = Writers::default();
        let mut set = writers.key_set();
        let key = |n: i64| (format!("k{n}"), EntryId::new(n));
        assert!(set.extend((1..=10).chain([3]).map(key).collect()));
        assert_eq!(set.get("k3"), Some(EntryId::new(3)));
        assert_eq!(writers.kept_keys.load(Ordering::Acquire), 10);
        set.trim(EntryId::new(4));
        assert_eq!(set.get("k3"), None);
        assert_eq!(writers.kept_keys.load(Ordering::Acquire), 6);
        let too_many = (0..MAX_STREAM_KEYS as i64).map(key).collect();
        assert!(!set.extend(too_many), "over the stream's limit");
        drop(set);
        assert_eq!(writers.kept_keys.load(Ordering::Acquire), 0);
    }
}
