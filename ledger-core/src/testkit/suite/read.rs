//! Reading: cursors and direction.

use super::support::*;

/// Pages of 2 over 5 entries, each continuing after the last id, have sizes 2, 2, 1, 0.
pub async fn read_pages_with_after_cursor<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "pages", 5).await;
    append_n(&store, "pages-other", 3).await;
    let mut cursor = None;
    let mut pages = Vec::new();
    for _ in 0..4 {
        let mut options = ReadOptions::new().limit(2);
        options.after = cursor;
        let page = read_with(&store, "pages", &options).await;
        cursor = page.last().map(|e| e.id).or(cursor);
        pages.push(ids(&page));
    }
    assert_eq!(
        pages,
        vec![
            all[0..2].to_vec(),
            all[2..4].to_vec(),
            all[4..5].to_vec(),
            Vec::new()
        ],
        "pages of 2 over 5 entries"
    );
}

/// A descending read returns the newest entry first, entry by entry.
pub async fn read_descending_returns_newest_first<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "desc", 5).await;
    let entries = read_with(&store, "desc", &ReadOptions::new().descending()).await;
    assert_eq!(entries.len(), 5, "descending read of 5 entries");
    for (i, entry) in entries.iter().enumerate() {
        let expected = 5 - i as u64;
        assert_eq!(entry.id, all[4 - i], "descending entry {i}: id");
        assert_eq!(entry.version, expected, "descending entry {i}: version");
        assert_eq!(
            entry.payload,
            json!({ "n": expected }),
            "descending entry {i}: payload"
        );
    }
    let newest = read_with(&store, "desc", &ReadOptions::new().descending().limit(2)).await;
    assert_eq!(ids(&newest), [all[4], all[3]], "descending, limit 2");
}

/// A descending read after a cursor returns the ids below it, newest first.
pub async fn read_descending_after_cursor_returns_lower_ids<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "desc-after", 5).await;
    let below = read_with(
        &store,
        "desc-after",
        &ReadOptions::new().descending().after(all[3]),
    )
    .await;
    assert_eq!(
        ids(&below),
        [all[2], all[1], all[0]],
        "descending after the 4th id"
    );
    let page = read_with(
        &store,
        "desc-after",
        &ReadOptions::new().descending().after(all[3]).limit(2),
    )
    .await;
    assert_eq!(
        ids(&page),
        [all[2], all[1]],
        "descending after the 4th id, limit 2"
    );
    let none = read_with(
        &store,
        "desc-after",
        &ReadOptions::new().descending().after(all[0]),
    )
    .await;
    assert!(none.is_empty(), "descending after the first id: {none:?}");
}

/// `after_version` continues past a version in the read direction, alone or with an id cursor
/// (both apply), whatever the ids are.
pub async fn read_after_version_continues_by_version_both_ways<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "by-version", 5).await;
    append_n(&store, "other", 3).await;
    let read =
        async |options: ReadOptions| versions(&read_with(&store, "by-version", &options).await);
    assert_eq!(
        read(ReadOptions::new().after_version(0)).await,
        [1, 2, 3, 4, 5],
        "after 0"
    );
    assert_eq!(
        read(ReadOptions::new().after_version(3)).await,
        [4, 5],
        "after 3"
    );
    assert_eq!(
        read(ReadOptions::new().after_version(5)).await,
        Vec::<u64>::new(),
        "after 5"
    );
    assert_eq!(
        read(ReadOptions::new().after_version(2).limit(2)).await,
        [3, 4],
        "a page"
    );
    assert_eq!(
        read(ReadOptions::new().descending().after_version(3)).await,
        [2, 1],
        "below 3"
    );
    assert_eq!(
        read(ReadOptions::new().after_version(1).after(all[2])).await,
        [4, 5],
        "both cursors apply"
    );
}

/// `read_all` yields every entry a filter selects, page after page, in order, and ends.
pub async fn read_all_pages_through_a_whole_stream<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let inputs = (1..=25).map(|n| {
        if n % 5 == 0 {
            item(n).tag("fifth")
        } else {
            item(n)
        }
    });
    append_all(&store, "whole", inputs.collect()).await;
    let everything: Vec<Entry> = store
        .read_all("whole", ReadOptions::new().limit(4))
        .map(|e| e.unwrap_or_else(|e| panic!("read_all failed: {e}")))
        .collect()
        .await;
    assert_eq!(
        ns(&everything),
        (1..=25).collect::<Vec<_>>(),
        "every entry in order"
    );
    let tagged: Vec<Entry> = store
        .read_all("whole", ReadOptions::new().limit(2).tag("fifth"))
        .map(|e| e.unwrap_or_else(|e| panic!("read_all failed: {e}")))
        .collect()
        .await;
    assert_eq!(
        ns(&tagged),
        [5, 10, 15, 20, 25],
        "the filter applies to every page"
    );
    let newest_first: Vec<u64> = store
        .read_all("whole", ReadOptions::new().limit(10).descending())
        .map(|e| {
            e.map(|e| e.version)
                .unwrap_or_else(|e| panic!("read_all failed: {e}"))
        })
        .collect()
        .await;
    assert_eq!(
        newest_first,
        (1..=25).rev().collect::<Vec<_>>(),
        "descending"
    );
    let missing = store.read_all("missing", ReadOptions::new()).count().await;
    assert_eq!(missing, 0, "a missing stream yields nothing");
}

/// `read_json` returns the entries `read` does, each payload as JSON text that parses to the
/// same value (floats, large integers, U+0000 and nesting included); `read_all_json` pages the
/// same way as `read_all`; and a typed stream decodes those texts to the same values.
pub async fn read_json_returns_what_read_does_with_payloads_as_text<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let payloads = [
        json!({"f": 1e16, "z": -0.0, "tiny": 5e-324}),
        json!({"big": 18_446_744_073_709_551_615u64, "neg": -9_223_372_036_854_775_808i64}),
        json!({"text": "nul \u{0000} and é and \"quotes\"", "list": [1, [2, {"three": null}]]}),
        json!("a plain string"),
        json!([]),
    ];
    let inputs = payloads
        .iter()
        .cloned()
        .map(|p| AppendInput::new(p).tag("t").metadata("k", "v"))
        .collect();
    append_all(&store, "json", inputs).await;
    let values = store
        .read("json", &ReadOptions::new())
        .await
        .expect("read succeeds");
    let texts = store
        .read_json("json", &ReadOptions::new())
        .await
        .expect("read_json succeeds");
    assert_eq!(texts.len(), payloads.len(), "every entry");
    for ((value, text), payload) in values.iter().zip(&texts).zip(&payloads) {
        let parsed: Value = serde_json::from_str(text.payload.get())
            .unwrap_or_else(|e| panic!("payload text {:?} parses: {e}", text.payload.get()));
        assert_same_json(&parsed, payload, &format!("read_json payload {payload}"));
        let without_payload = |e: &Entry<_>| (e.id, e.version, e.stream.clone());
        assert_eq!(
            without_payload(value),
            (text.id, text.version, text.stream.clone())
        );
        assert_eq!(
            (&value.metadata, &value.tags, &value.created_at),
            (&text.metadata, &text.tags, &text.created_at),
            "the other fields are the same"
        );
    }
    let paged: Vec<EntryId> = store
        .read_all_json("json", ReadOptions::new().limit(2))
        .map(|e| e.unwrap_or_else(|e| panic!("read_all_json failed: {e}")).id)
        .collect()
        .await;
    assert_eq!(
        paged,
        values.iter().map(|e| e.id).collect::<Vec<_>>(),
        "read_all_json pages through every entry"
    );
    let typed: Vec<Value> = Stream::<Value>::new(&store, "json")
        .expect("valid stream id")
        .read(&ReadOptions::new())
        .await
        .expect("typed read succeeds")
        .into_iter()
        .map(|e| e.payload)
        .collect();
    for (got, payload) in typed.iter().zip(&payloads) {
        assert_same_json(got, payload, &format!("typed payload {payload}"));
    }
    let missing = store.read_json("missing", &ReadOptions::new()).await;
    assert!(
        missing.expect("a missing stream reads").is_empty(),
        "a missing stream has no entries"
    );
}
