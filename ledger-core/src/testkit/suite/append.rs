//! Append and read back.

use super::support::*;

/// Append then read returns every field as given, with ids and versions from the append, a
/// recent `created_at` and no `updated_at`.
pub async fn append_then_read_round_trips_every_field<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let mut full = AppendInput::new(json!({"kind": "order", "lines": [1, 2], "total": 12.5}))
        .order_key("customer-7")
        .schema_version(2)
        .metadata("source", "checkout")
        .metadata("region", "eu")
        .tag("priority")
        .tag("paid");
    if store.capabilities().dedup {
        full = full.dedup_key("request-42");
    }
    let inputs = vec![full, AppendInput::new(json!("bare")), item(3)];
    let before = Utc::now() - TimeDelta::seconds(5);
    let outcomes = store
        .append("round-trip", inputs.clone(), ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("append failed: {e}"));
    let after = Utc::now() + TimeDelta::seconds(5);
    let written = appended(&outcomes, "first append");
    assert_eq!(
        written.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        [1, 2, 3],
        "versions of the first append to a new stream"
    );
    let written_ids: Vec<_> = written.iter().map(|(id, _)| *id).collect();
    assert_strictly_ascending(&written_ids, "ids returned by one append");

    let entries = read_all(&store, "round-trip").await;
    assert_eq!(entries.len(), 3, "entries read back: {entries:?}");
    for (i, (entry, input)) in entries.iter().zip(&inputs).enumerate() {
        assert_eq!(
            entry.id, written_ids[i],
            "entry {i}: id must be the one append returned"
        );
        assert_eq!(entry.stream, "round-trip", "entry {i}: stream");
        assert_eq!(entry.version, i as u64 + 1, "entry {i}: version");
        assert_eq!(entry.payload, input.payload, "entry {i}: payload");
        assert_eq!(entry.order_key, input.order_key, "entry {i}: order_key");
        assert_eq!(entry.dedup_key, input.dedup_key, "entry {i}: dedup_key");
        assert_eq!(
            entry.schema_version, input.schema_version,
            "entry {i}: schema_version"
        );
        assert_eq!(entry.metadata, input.metadata, "entry {i}: metadata");
        assert_eq!(entry.tags, input.tags, "entry {i}: tags");
        assert!(
            entry.annotations.is_empty(),
            "entry {i}: annotations must start empty, got {:?}",
            entry.annotations
        );
        assert!(
            entry.created_at >= before && entry.created_at <= after,
            "entry {i}: created_at {} is not within a few seconds of now ({before} .. {after})",
            entry.created_at
        );
        assert_eq!(
            entry.created_at.timestamp_subsec_nanos() % 1_000,
            0,
            "entry {i}: created_at {} has sub-microsecond precision; stores keep microseconds",
            entry.created_at
        );
        assert_eq!(
            entry.updated_at, None,
            "entry {i}: updated_at must be None until tags or annotations change"
        );
    }

    let next = store
        .append("round-trip", vec![item(4)], ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("second append failed: {e}"));
    let next = appended(&next, "second append");
    assert_eq!(next[0].1, 4, "a second append continues the versions");
    assert!(
        next[0].0 > written_ids[2],
        "a later append gets a greater id: {:?} after {:?}",
        next[0].0,
        written_ids[2]
    );
}

/// The schema version given at append is stored and read back.
pub async fn schema_version_is_stored_and_read_back<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let inputs = vec![
        item(1).schema_version(3),
        item(2),
        item(3).schema_version(u32::MAX),
    ];
    append_all(&store, "schemas", inputs).await;
    let entries = read_all(&store, "schemas").await;
    let got: Vec<u32> = entries.iter().map(|e| e.schema_version).collect();
    assert_eq!(
        got,
        [3, 1, u32::MAX],
        "schema versions read back (the whole u32 range must be kept)"
    );
}

/// An empty batch writes nothing and returns no outcomes, whatever the expected version.
pub async fn empty_append_returns_nothing_and_writes_nothing<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let outcomes = store
        .append("empty-batch", Vec::new(), ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("empty append failed: {e}"));
    assert!(
        outcomes.outcomes.is_empty(),
        "an empty batch returns no outcomes"
    );
    assert_eq!(
        count_of(&store, "empty-batch").await,
        0,
        "count after an empty append"
    );
    assert_eq!(
        stat_of(&store, "empty-batch").await.last_version,
        0,
        "an empty append must not create the stream's version"
    );
    assert!(
        list_with(&store, &ListOptions::new()).await.is_empty(),
        "an empty append must not create a stream"
    );

    append_n(&store, "empty-batch", 2).await;
    let outcomes = store
        .append("empty-batch", Vec::new(), ExpectedVersion::Exact(99))
        .await
        .unwrap_or_else(|e| panic!("empty append with a wrong expected version failed: {e}"));
    assert!(
        outcomes.outcomes.is_empty(),
        "an empty batch returns no outcomes"
    );
    assert_eq!(
        count_of(&store, "empty-batch").await,
        2,
        "count after an empty append"
    );

    assert_err!(
        store.append("", Vec::new(), ExpectedVersion::Any).await,
        Error::InvalidName { kind: "stream", .. },
        "an empty batch still validates the stream id"
    );
}

/// Entries of different streams (even ids differing only in case or trailing space) are kept
/// apart, and each stream has its own versions.
pub async fn streams_are_isolated<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let streams = [("iso", 2u64), ("ISO", 1), ("iso ", 3), ("iso-other", 4)];
    for (stream, n) in streams {
        append_n(&store, stream, n).await;
    }
    for (stream, n) in streams {
        let entries = read_all(&store, stream).await;
        assert_eq!(
            versions(&entries),
            (1..=n).collect::<Vec<_>>(),
            "versions of stream {stream:?}"
        );
        assert!(
            entries.iter().all(|e| e.stream == stream),
            "stream {stream:?} returned entries of other streams: {entries:?}"
        );
        assert_eq!(count_of(&store, stream).await, n, "count of {stream:?}");
    }
}

/// `count` and `stat` describe the stream: count, first and last id, last version.
pub async fn count_and_stat_describe_the_stream<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let mut all = append_n(&store, "stats", 3).await;
    append_n(&store, "stats-other", 2).await;
    all.extend(append_n(&store, "stats", 2).await);
    assert_eq!(
        count_of(&store, "stats").await,
        5,
        "count after 3 + 2 entries"
    );
    assert_eq!(
        stat_of(&store, "stats").await,
        StreamStat {
            stream: "stats".to_owned(),
            count: 5,
            first_id: Some(all[0]),
            last_id: Some(all[4]),
            last_version: 5,
        },
        "stat after 3 + 2 entries"
    );
}

/// A stream that was never written reads as empty, counts 0 and has an empty stat.
pub async fn missing_stream_reads_as_empty<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "present", 1).await;
    assert!(
        read_with(&store, "absent", &ReadOptions::new())
            .await
            .is_empty(),
        "reading a missing stream returns no entries"
    );
    assert!(
        read_with(&store, "absent", &ReadOptions::new().descending())
            .await
            .is_empty(),
        "reading a missing stream descending returns no entries"
    );
    assert_eq!(
        count_of(&store, "absent").await,
        0,
        "count of a missing stream"
    );
    assert_eq!(
        stat_of(&store, "absent").await,
        StreamStat {
            stream: "absent".to_owned(),
            count: 0,
            first_id: None,
            last_id: None,
            last_version: 0,
        },
        "stat of a missing stream"
    );
}

/// An append's result carries the stream's version afterwards (also for a batch of duplicates),
/// so the next append of the same writer can expect it.
pub async fn append_result_carries_the_next_expected_version<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let first = store
        .append("next", items(1..=3), ExpectedVersion::NoStream)
        .await
        .unwrap_or_else(|e| panic!("first append failed: {e}"));
    assert_eq!(first.version, 3, "the version after three entries");
    assert_eq!(first.next_expected(), ExpectedVersion::Exact(3));
    let second = store
        .append("next", vec![item(4)], first.next_expected())
        .await
        .unwrap_or_else(|e| panic!("an append expecting the reported version failed: {e}"));
    assert_eq!(second.version, 4, "the version after the second append");
    assert_eq!(second.ids().len(), 1, "one id per input");
    let empty = store
        .append("next", Vec::new(), ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("an empty append failed: {e}"));
    assert_eq!(
        empty.version, 4,
        "an empty append reports the current version"
    );
    if store.capabilities().dedup {
        let keyed = store
            .append(
                "next",
                vec![item(5).dedup_key("k")],
                ExpectedVersion::Exact(4),
            )
            .await
            .unwrap_or_else(|e| panic!("a keyed append failed: {e}"));
        let retry = store
            .append(
                "next",
                vec![item(5).dedup_key("k")],
                ExpectedVersion::Exact(4),
            )
            .await
            .unwrap_or_else(|e| panic!("a retried append failed: {e}"));
        assert_eq!(
            (keyed.version, retry.version),
            (5, 5),
            "a duplicate-only retry reports it too"
        );
    }
}

/// Text fields read back exactly whatever JSON or SQL punctuation, control characters or
/// non-ASCII text they hold: stream id, order and dedup keys, metadata, tags and annotations.
pub async fn text_fields_with_punctuation_round_trip<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let odd = "q\"uote \\ back, ]}[{ 'single' ; -- \n\t\u{1} é 🚀 null";
    let stream = format!("stream {odd}");
    let mut input = AppendInput::new(json!({"odd": odd}))
        .order_key(format!("order {odd}"))
        .metadata(format!("key {odd}"), format!("value {odd}"))
        .tag(format!("tag {odd}"))
        .tag("[]");
    if store.capabilities().dedup {
        input = input.dedup_key(format!("dedup {odd}"));
    }
    let written = append_all(&store, &stream, vec![input.clone()]).await;
    let id = written[0];
    let annotations = BTreeMap::from([(format!("note {odd}"), Some(format!("says {odd}")))]);
    if store.capabilities().annotations {
        store
            .set_annotations(&stream, id, annotations.clone())
            .await
            .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
    }
    let entries = read_all(&store, &stream).await;
    assert_eq!(entries.len(), 1, "one entry in {stream:?}: {entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.stream, stream, "stream id");
    assert_eq!(entry.payload, input.payload, "payload");
    assert_eq!(entry.order_key, input.order_key, "order key");
    assert_eq!(entry.dedup_key, input.dedup_key, "dedup key");
    assert_eq!(entry.metadata, input.metadata, "metadata");
    assert_eq!(entry.tags, input.tags, "tags");
    if store.capabilities().annotations {
        let expected: BTreeMap<String, String> = annotations
            .into_iter()
            .map(|(k, v)| (k, v.expect("set")))
            .collect();
        assert_eq!(entry.annotations, expected, "annotations");
    }
}
