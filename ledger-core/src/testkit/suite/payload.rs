//! Payloads and large batches.

use super::support::*;

/// Unicode, NUL inside strings, integers beyond 2^53, nested values, floats and non-object
/// payloads round-trip exactly.
pub async fn payloads_round_trip_exactly<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let payloads = vec![
        json!({
            "text": "ünïcødé ✓ 日本語 🚀 \u{10FFFF}",
            "nul": "a\u{0000}b",
            "max": u64::MAX,
            "min": i64::MIN,
            "above_2_53": 9_007_199_254_740_993u64,
            "nested": {"a": [1, {"b": [true, false, null]}], "empty": {}, "list": []},
            "floats": [1.5, -0.25, 0.1, 6.02e23, 1e-7],
            "quotes": "it's \"quoted\" \\ back\nslash",
        }),
        json!("just a string"),
        json!([1, "two", 3.5, null]),
        json!(42),
        json!(-1),
        json!(true),
        json!(null),
        json!({}),
        json!(""),
    ];
    let inputs = payloads.iter().cloned().map(AppendInput::new).collect();
    append_all(&store, "payloads", inputs).await;
    let entries = read_all(&store, "payloads").await;
    assert_eq!(entries.len(), payloads.len(), "every payload is stored");
    for (i, (entry, payload)) in entries.iter().zip(&payloads).enumerate() {
        assert_eq!(&entry.payload, payload, "payload {i} round-trips exactly");
    }
}

/// A 1 MiB string payload round-trips exactly.
pub async fn one_mib_payload_round_trips<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let blob: String = (0..1 << 20)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let payload = json!({ "blob": blob });
    append_all(&store, "big", vec![AppendInput::new(payload.clone())]).await;
    let entries = read_all(&store, "big").await;
    assert_eq!(entries.len(), 1, "one entry");
    assert!(
        entries[0].payload == payload,
        "the 1 MiB payload must round-trip exactly (got {} bytes of JSON)",
        entries[0].payload.to_string().len()
    );
}

/// A batch of 10 000 entries appends with versions 1..=10 000 and counts 10 000.
pub async fn ten_thousand_entry_batch_appends_and_counts<F: StoreFactory>(factory: &F) {
    const N: u64 = 10_000;
    let store = factory.fresh().await;
    let outcomes = store
        .append("bulk", items(1..=N), ExpectedVersion::NoStream)
        .await
        .unwrap_or_else(|e| panic!("append of {N} entries failed: {e}"));
    let written = appended(&outcomes, "bulk append");
    assert_eq!(written.len() as u64, N, "one outcome per input");
    assert!(
        written.iter().map(|(_, v)| *v).eq(1..=N),
        "versions of the bulk append are 1..={N}"
    );
    assert_eq!(
        count_of(&store, "bulk").await,
        N,
        "count after the bulk append"
    );
    let entries = read_all(&store, "bulk").await;
    assert_eq!(
        entries.len() as u64,
        N,
        "read of {N} entries with limit {MAX_LIMIT}"
    );
    assert!(ns(&entries).into_iter().eq(1..=N), "payloads in order");
    assert_eq!(
        stat_of(&store, "bulk").await.last_version,
        N,
        "stat after the bulk append"
    );
}
