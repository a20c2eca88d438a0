//! The rows every system writes: the same payload, metadata and keys for baseline and ledger.

use std::collections::BTreeMap;

use ledger_core::AppendInput;
use serde_json::{Value, json};

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
