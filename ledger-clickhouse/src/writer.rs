//! What a store handle decides itself, since ClickHouse has neither transactions nor unique
//! constraints: writes to one stream take turns under the stream's lock, which also keeps the
//! stream's tip (version and last id) once read, and ids come from the clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// A stream's version and its highest id, as this handle last wrote or read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tip {
    pub version: u64,
    pub last_id: i64,
}

/// The stream's lock, holding its tip once known (`None`: read it from the database).
pub type StreamGuard = OwnedMutexGuard<Option<Tip>>;

/// How many idle stream locks a handle keeps before it forgets them (and their tips).
const KEPT_STREAMS: usize = 4096;

/// The per-handle writer state.
#[derive(Debug, Default)]
pub struct Writers {
    streams: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Tip>>>>>,
    last_id: AtomicI64,
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
    async fn a_streams_lock_is_shared_and_keeps_its_tip() {
        let writers = Writers::default();
        {
            let mut guard = writers.lock("s").await;
            *guard = Some(Tip {
                version: 3,
                last_id: 9,
            });
        }
        assert_eq!(
            *writers.lock("s").await,
            Some(Tip {
                version: 3,
                last_id: 9
            })
        );
        assert_eq!(*writers.lock("other").await, None);
    }
}
