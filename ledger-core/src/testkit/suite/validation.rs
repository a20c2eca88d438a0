//! Limits, names and input validation.

use super::support::*;

/// Page sizes 0 and 10 001 are `InvalidArgument` for read, list_streams and search; 1 and
/// 10 000 are accepted.
pub async fn limits_outside_1_to_10000_are_invalid_argument<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "limits", 3).await;
    for limit in [0, MAX_LIMIT + 1] {
        assert_err!(
            store.read("limits", &ReadOptions::new().limit(limit)).await,
            Error::InvalidArgument(_),
            "read with limit {limit}"
        );
        assert_err!(
            store
                .read("limits-missing", &ReadOptions::new().limit(limit))
                .await,
            Error::InvalidArgument(_),
            "read of a missing stream with limit {limit}"
        );
        assert_err!(
            store.list_streams(&ListOptions::new().limit(limit)).await,
            Error::InvalidArgument(_),
            "list_streams with limit {limit}"
        );
        if store.capabilities().search.substring {
            assert_err!(
                store
                    .search(None, "n", &ReadOptions::new().limit(limit))
                    .await,
                Error::InvalidArgument(_),
                "search with limit {limit}"
            );
        }
    }
    let max = read_with(&store, "limits", &ReadOptions::new().limit(MAX_LIMIT)).await;
    assert_eq!(max.len(), 3, "read with limit {MAX_LIMIT}");
    let one = read_with(&store, "limits", &ReadOptions::new().limit(1)).await;
    assert_eq!(ns(&one), [1], "read with limit 1");
    assert_eq!(
        list_with(&store, &ListOptions::new().limit(MAX_LIMIT)).await,
        strings(&["limits"]),
        "list_streams with limit {MAX_LIMIT}"
    );
}

/// Table names outside `^[A-Za-z_][A-Za-z0-9_]{0,62}$` are `InvalidName`.
pub async fn invalid_table_names_are_rejected<F: StoreFactory>(factory: &F) {
    let too_long = "x".repeat(MAX_TABLE_LEN + 1);
    for name in [
        "",
        "1abc",
        "a-b",
        "a b",
        "a.b",
        "a;drop table x",
        "a\0b",
        "é",
        "tablé",
        too_long.as_str(),
    ] {
        assert_err!(
            factory.open(name).await,
            Error::InvalidName { kind: "table", .. },
            "opening table {name:?}"
        );
    }
}

/// A table name of the maximum length (63 bytes, mixed case) is accepted and usable.
pub async fn table_name_of_63_characters_is_accepted<F: StoreFactory>(factory: &F) {
    let mut name = fresh_table().to_uppercase();
    while name.len() < MAX_TABLE_LEN {
        name.push('x');
    }
    let store: Store = factory
        .open(&name)
        .await
        .unwrap_or_else(|e| panic!("opening a store on 63-byte table {name:?} failed: {e}"))
        .as_ref()
        .clone();
    append_n(&store, "long-table", 2).await;
    assert_eq!(
        count_of(&store, "long-table").await,
        2,
        "count in table {name:?}"
    );
    assert_eq!(
        ns(&read_all(&store, "long-table").await),
        [1, 2],
        "entries in table {name:?}"
    );
}

/// Stream ids that are empty, contain NUL or exceed 256 bytes are `InvalidName`.
pub async fn invalid_stream_names_are_rejected<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let too_long = "s".repeat(MAX_STREAM_LEN + 1);
    // 129 characters but 258 bytes: the limit is in bytes.
    let too_many_bytes = "é".repeat(129);
    for name in ["", "a\0b", too_long.as_str(), too_many_bytes.as_str()] {
        assert_err!(
            store
                .append(name, vec![item(1)], ExpectedVersion::Any)
                .await,
            Error::InvalidName { kind: "stream", .. },
            "append to stream {name:?}"
        );
        assert_err!(
            store.read(name, &ReadOptions::new()).await,
            Error::InvalidName { kind: "stream", .. },
            "read of stream {name:?}"
        );
        assert_err!(
            store.count(name).await,
            Error::InvalidName { kind: "stream", .. },
            "count of stream {name:?}"
        );
        assert_err!(
            store.stat(name).await,
            Error::InvalidName { kind: "stream", .. },
            "stat of stream {name:?}"
        );
    }
    assert!(
        list_with(&store, &ListOptions::new()).await.is_empty(),
        "rejected appends create no stream"
    );
}

/// Stream ids of 256 bytes, with unicode, or with SQL metacharacters are stored and read back.
pub async fn long_unicode_and_sql_metacharacter_stream_ids_work<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let ascii = "s".repeat(MAX_STREAM_LEN);
    let unicode = "é".repeat(MAX_STREAM_LEN / 2);
    let names = [
        ascii.as_str(),
        unicode.as_str(),
        "'; DROP TABLE x; --",
        "ストリーム/ü \"dq\" 'sq' %_\\ 🚀",
        "a\tb\nc",
    ];
    for name in names {
        store
            .append(name, vec![item(1), item(2)], ExpectedVersion::NoStream)
            .await
            .unwrap_or_else(|e| panic!("append to stream {name:?} failed: {e}"));
    }
    for name in names {
        let entries = read_all(&store, name).await;
        assert_eq!(ns(&entries), [1, 2], "entries of stream {name:?}");
        assert!(
            entries.iter().all(|e| e.stream == name),
            "entries of {name:?} carry their stream id exactly: {entries:?}"
        );
        assert_eq!(count_of(&store, name).await, 2, "count of {name:?}");
        assert_eq!(
            stat_of(&store, name).await.last_version,
            2,
            "stat of {name:?}"
        );
    }
    let mut sorted = strings(&names);
    sorted.sort();
    assert_eq!(
        list_with(&store, &ListOptions::new()).await,
        sorted,
        "list_streams returns the ids exactly, ascending bytewise"
    );
}

/// Schema version 0 and empty dedup or order keys are `InvalidArgument`; nothing of the batch
/// is written.
pub async fn invalid_inputs_are_rejected_and_nothing_written<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let cases = [
        ("schema version 0", vec![item(1).schema_version(0)]),
        ("empty order key", vec![item(1).order_key("")]),
        (
            "a valid input followed by schema version 0",
            vec![item(1), item(2).schema_version(0)],
        ),
    ];
    for (what, batch) in cases {
        assert_err!(
            store.append("invalid", batch, ExpectedVersion::Any).await,
            Error::InvalidArgument(_),
            "append with {what}"
        );
    }
    let empty_key = store
        .append(
            "invalid",
            vec![item(1), item(2).dedup_key("")],
            ExpectedVersion::Any,
        )
        .await;
    if store.capabilities().dedup {
        assert_err!(
            empty_key,
            Error::InvalidArgument(_),
            "append with an empty dedup key"
        );
    } else {
        assert_err!(
            empty_key,
            Error::InvalidArgument(_) | Error::NotSupported(_),
            "append with an empty dedup key"
        );
    }
    assert_eq!(count_of(&store, "invalid").await, 0, "nothing is written");
    assert_eq!(
        stat_of(&store, "invalid").await.last_version,
        0,
        "the version does not move"
    );
}

/// A batch of 6 001 entries (more than one insert statement holds) whose last entry is refused
/// writes nothing at all: no entry, no version, no feed record.
pub async fn batch_refused_at_its_last_entry_writes_nothing<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let deep = (0..=crate::MAX_PAYLOAD_DEPTH).fold(json!(1), |inner, _| json!([inner]));
    let refused = [
        ("a tag with NUL", item(0).tag("a\u{0000}b")),
        ("metadata with NUL", item(0).metadata("k\u{0000}", "v")),
        ("schema version 0", item(0).schema_version(0)),
        ("a payload nested too deep", AppendInput::new(deep)),
    ];
    for (what, last) in refused {
        let mut batch = items(1..=6_000);
        batch.push(last);
        assert_err!(
            store.append("atomic", batch, ExpectedVersion::Any).await,
            Error::InvalidArgument(_),
            "a batch ending with {what}"
        );
    }
    assert_eq!(
        count_of(&store, "atomic").await,
        0,
        "no entry of a refused batch is written"
    );
    assert_eq!(
        stat_of(&store, "atomic").await.last_version,
        0,
        "the version does not move"
    );
    if store.capabilities().change_feed.is_some() {
        assert!(
            read_feed_from(&store, None, 10).await.is_empty(),
            "no feed record"
        );
    }
}
