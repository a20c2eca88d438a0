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
        json!({"a\u{0000}b": 1, "": "empty key", "x": {"\u{0000}": "\u{0000}"}}),
    ];
    let inputs = payloads.iter().cloned().map(AppendInput::new).collect();
    append_all(&store, "payloads", inputs).await;
    let entries = read_all(&store, "payloads").await;
    assert_eq!(entries.len(), payloads.len(), "every payload is stored");
    for (i, (entry, payload)) in entries.iter().zip(&payloads).enumerate() {
        assert_same_json(&entry.payload, payload, &format!("payload {i}"));
    }
}

/// Floats come back as floats with their exact value and sign, whatever their size: integral
/// floats from 1e16 up (which decimal storage could turn into integers), negative zero, the
/// extremes of `f64`; and integers stay integers.
pub async fn floats_round_trip_with_their_type_value_and_sign<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let floats = [
        1e15,
        1e16,
        1e17,
        -1e16,
        1.2345678901234568e17,
        9.223372036854776e18,
        1.8446744073709552e19,
        1e300,
        -0.0,
        0.0,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        0.1,
        -2.5e-10,
    ];
    let payloads: Vec<Value> = floats
        .iter()
        .map(|f| json!({ "f": f }))
        .chain([
            json!({"i": 10_000_000_000_000_000u64}),
            json!([-0.0, 1e16, 7]),
        ])
        .collect();
    let inputs = payloads.iter().cloned().map(AppendInput::new).collect();
    append_all(&store, "floats", inputs).await;
    let entries = read_all(&store, "floats").await;
    assert_eq!(entries.len(), payloads.len(), "every payload is stored");
    for (entry, payload) in entries.iter().zip(&payloads) {
        assert_same_json(&entry.payload, payload, &format!("payload {payload}"));
    }
}

/// A payload nested [`crate::MAX_PAYLOAD_DEPTH`] levels deep is stored and read back
/// (also through the change feed and a subscription); one level deeper is `InvalidArgument`
/// and writes nothing, alone or at the end of a batch.
pub async fn payloads_deeper_than_the_limit_are_refused<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let nested = |depth: usize| {
        (1..depth).fold(json!([]), |inner, level| {
            if level % 2 == 0 {
                json!([inner])
            } else {
                json!({ "k": inner })
            }
        })
    };
    let limit = crate::MAX_PAYLOAD_DEPTH;
    let deepest = nested(limit);
    append_all(&store, "deep", vec![AppendInput::new(deepest.clone())]).await;
    assert_eq!(
        read_all(&store, "deep").await[0].payload,
        deepest,
        "deepest payload reads back"
    );
    if store.capabilities().change_feed.is_some() {
        let records = read_feed_from(&store, None, 10).await;
        assert_eq!(
            records.len(),
            1,
            "the deepest payload's feed record reads back"
        );
    }
    let mut subscription = Stream::<Value>::new(&store, "deep")
        .expect("valid stream id")
        .subscribe(0, fast_subscription());
    let delivered = next_n(&mut subscription, 1, "subscription to the deepest payload").await;
    assert_eq!(delivered[0].payload, deepest, "delivered deepest payload");

    let too_deep = AppendInput::new(nested(limit + 1));
    assert_err!(
        store
            .append("too-deep", vec![too_deep.clone()], ExpectedVersion::Any)
            .await,
        Error::InvalidArgument(_),
        "a payload {} levels deep",
        limit + 1
    );
    assert_err!(
        store
            .append(
                "too-deep",
                vec![item(1), item(2), too_deep],
                ExpectedVersion::Any
            )
            .await,
        Error::InvalidArgument(_),
        "a batch whose last payload is too deep"
    );
    assert_eq!(
        count_of(&store, "too-deep").await,
        0,
        "nothing of the refused batches was written"
    );
    assert_eq!(
        stat_of(&store, "too-deep").await.last_version,
        0,
        "the stream was never written"
    );
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
