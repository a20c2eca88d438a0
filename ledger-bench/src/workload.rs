//! The rows every system writes: the same payload, metadata and keys for baseline and ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ledger_core::{AppendInput, EntryId, ReadOptions, Store};
use serde_json::{Value, json};

use crate::Sizes;

/// Errors of a benchmark run.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What a baseline decodes each row into: the same fields ledger returns.
#[allow(dead_code)]
pub struct RawEntry {
    pub id: i64,
    pub stream: String,
    pub version: i64,
    pub payload: Value,
    pub order_key: Option<String>,
    pub dedup_key: Option<String>,
    pub schema_version: i64,
    pub metadata: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
    pub annotations: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Reads stream `big` page by page with both systems in turn (the baseline's page after `id`,
/// then the same page through ledger), so that drift in the machine's state affects both alike.
/// Returns `(baseline, ledger)` entries per second.
pub async fn read_both(
    store: &Store,
    sizes: Sizes,
    mut raw_page: impl AsyncFnMut(i64) -> Result<Vec<RawEntry>>,
) -> Result<(f64, f64)> {
    let (mut raw_time, mut ledger_time) = (Duration::ZERO, Duration::ZERO);
    let (mut after, mut seen) = (0i64, 0usize);
    loop {
        let started = Instant::now();
        let raw = raw_page(after).await?;
        raw_time += started.elapsed();
        let started = Instant::now();
        let options = ReadOptions::new()
            .after(EntryId::new(after))
            .limit(sizes.page);
        let page = store.read("big", &options).await?;
        ledger_time += started.elapsed();
        assert_eq!(
            raw.iter().map(|e| e.id).collect::<Vec<_>>(),
            page.iter().map(|e| e.id.get()).collect::<Vec<_>>(),
            "both systems read the same page"
        );
        let Some(last) = page.last() else { break };
        after = last.id.get();
        seen += page.len();
    }
    assert_eq!(seen, sizes.read_entries, "every entry was read");
    Ok((rate(seen, raw_time), rate(seen, ledger_time)))
}

/// Payload of event `n` (about 200 bytes of JSON, like an order line).
pub fn payload(n: usize) -> Value {
    json!({
        "order_id": format!("order-{:08}", n / 10),
        "sku": format!("SKU-{:05}", n % 5_000),
        "quantity": (n % 7) + 1,
        "price_cents": 1_000 + (n % 9_000),
        "currency": "EUR",
        "note": "standard delivery, leave at the front desk if nobody answers",
    })
}

/// Metadata of event `n` (two keys).
pub fn metadata(n: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("correlation_id".to_owned(), format!("corr-{n:010}")),
        ("user_id".to_owned(), format!("user-{:06}", n % 1_000)),
    ])
}

/// Dedup key of event `n`.
pub fn dedup_key(n: usize) -> String {
    format!("evt-{n:012}")
}

/// The ledger input for event `n`.
pub fn input(n: usize) -> AppendInput {
    let mut input = AppendInput::new(payload(n)).dedup_key(dedup_key(n));
    input.metadata = metadata(n);
    input
}

/// Median of measurements (events per second).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Events per second.
pub fn rate(events: usize, elapsed: std::time::Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}
