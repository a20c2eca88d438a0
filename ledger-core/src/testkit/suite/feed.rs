//! Change feed.

use super::support::*;

/// Every mutation type writes one feed record, in order, with ascending positions and the
/// changes; an append's record holds its entries as they are when read (later tag changes
/// shown, trimmed entries gone) under the stream it appended to, and the stream's version.
pub async fn change_feed_records_every_mutation_in_order<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let caps = store.capabilities();
    assert!(
        read_feed_from(&store, None, 100).await.is_empty(),
        "the change feed of a fresh store is empty"
    );
    let mut expected: Vec<(String, Mutation)> = Vec::new();

    let all = append_n(&store, "feed", 3).await;
    // Filled in at the end, with the entries as they will be then.
    expected.push((
        "feed".into(),
        Mutation::Append {
            entries: Vec::new(),
            version: 3,
        },
    ));
    append_all(&store, "feed-other", vec![item(7).tag("t")]).await;
    let entries = read_all(&store, "feed-other").await;
    expected.push((
        "feed-other".into(),
        Mutation::Append {
            entries,
            version: 1,
        },
    ));

    if caps.tags {
        store
            .set_tags("feed", all[0], tags(&["x", "y"]))
            .await
            .unwrap_or_else(|e| panic!("set_tags failed: {e}"));
        let entries = read_all(&store, "feed").await;
        let entry = entry_by_id(&entries, &all[0]);
        let updated_at = entry.updated_at.expect("set_tags sets updated_at");
        expected.push((
            "feed".into(),
            Mutation::SetTags {
                id: all[0],
                version: entry.version,
                tags: tags(&["x", "y"]),
                updated_at,
            },
        ));
    }
    if caps.annotations {
        let change = changes(&[("a", Some("1")), ("gone", None)]);
        store
            .set_annotations("feed", all[1], change.clone())
            .await
            .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
        let entries = read_all(&store, "feed").await;
        let entry = entry_by_id(&entries, &all[1]);
        let updated_at = entry.updated_at.expect("set_annotations sets updated_at");
        expected.push((
            "feed".into(),
            Mutation::SetAnnotations {
                id: all[1],
                version: entry.version,
                changes: change,
                annotations: entry.annotations.clone(),
                updated_at,
            },
        ));
    }
    let deleted = store
        .trim("feed", all[1])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_eq!(deleted, 2, "trim deletes 2 entries");
    expected.push((
        "feed".into(),
        Mutation::Trim {
            up_to: all[1],
            deleted: 2,
        },
    ));
    if caps.rename {
        store
            .rename_stream("feed", "feed-renamed")
            .await
            .unwrap_or_else(|e| panic!("rename failed: {e}"));
        expected.push((
            "feed".into(),
            Mutation::Rename {
                to: "feed-renamed".into(),
            },
        ));
    }

    // What is left of the first append: its last entry, renamed, read back under its old name.
    let mut left = read_all(&store, "feed-renamed").await;
    left.iter_mut().for_each(|e| e.stream = "feed".into());
    assert_eq!(ids(&left), [all[2]], "the trim left the third entry");
    expected[0].1 = Mutation::Append {
        entries: left,
        version: 3,
    };

    let records = read_feed_from(&store, None, 100).await;
    let expected_kinds: Vec<_> = expected.iter().map(|(_, m)| m.kind()).collect();
    assert_eq!(kinds(&records), expected_kinds, "kinds of the feed records");
    assert_strictly_ascending(&positions(&records), "feed positions");
    for (i, (record, (stream, mutation))) in records.iter().zip(&expected).enumerate() {
        assert_eq!(
            &record.stream,
            stream,
            "record {i} ({}): stream",
            mutation.kind()
        );
        assert_eq!(
            &record.mutation,
            mutation,
            "record {i} ({}): mutation",
            mutation.kind()
        );
    }
}

/// `read_feed` after a position continues with the records past it, and respects its limit.
pub async fn change_feed_read_after_position_continues<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    for n in 1..=4 {
        append_all(&store, "feed-pages", vec![item(n)]).await;
    }
    let all = read_feed_from(&store, None, 100).await;
    assert_eq!(all.len(), 4, "one record per append: {all:?}");
    assert_eq!(
        read_feed_from(&store, Some(all[0].position), 100).await,
        all[1..],
        "records after the first position"
    );
    assert_eq!(
        read_feed_from(&store, Some(all[1].position), 1).await,
        all[2..3],
        "one record after the second position"
    );
    assert_eq!(
        read_feed_from(&store, None, 2).await,
        all[..2],
        "the first two records"
    );
    let last = all[3].position;
    assert!(
        read_feed_from(&store, Some(last), 100).await.is_empty(),
        "nothing after the last position"
    );
    append_all(&store, "feed-pages", vec![item(5)]).await;
    let next = read_feed_from(&store, Some(last), 100).await;
    assert_eq!(
        next.len(),
        1,
        "one new record after the last position: {next:?}"
    );
    assert!(next[0].position > last, "new positions are greater");
    assert!(
        matches!(&next[0].mutation, Mutation::Append { entries, .. } if ns(entries) == [5]),
        "the new record is the last append: {next:?}"
    );
}

/// An append made only of duplicates writes no feed record; a partly duplicate one records only
/// the new entries.
pub async fn duplicate_only_append_writes_no_feed_record<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let batch = vec![item(1).dedup_key("k1"), item(2).dedup_key("k2")];
    append_all(&store, "feed-dedup", batch.clone()).await;
    let before = read_feed_from(&store, None, 100).await;
    let last = before
        .last()
        .expect("the first append is recorded")
        .position;
    store
        .append("feed-dedup", batch, ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("duplicate retry failed: {e}"));
    assert!(
        read_feed_from(&store, Some(last), 100).await.is_empty(),
        "a duplicate-only append writes no feed record"
    );
    store
        .append(
            "feed-dedup",
            vec![item(1).dedup_key("k1"), item(3).dedup_key("k3")],
            ExpectedVersion::Any,
        )
        .await
        .unwrap_or_else(|e| panic!("partly duplicate append failed: {e}"));
    let after = read_feed_from(&store, Some(last), 100).await;
    assert_eq!(
        after.len(),
        1,
        "a partly duplicate append writes one record: {after:?}"
    );
    assert!(
        matches!(&after[0].mutation, Mutation::Append { entries, .. } if ns(entries) == [3]),
        "the record holds only the new entry: {after:?}"
    );
}

/// The feed's head is `None` on a fresh store, then the position of the last record a read
/// returns, and moves with every new record.
pub async fn feed_head_is_the_last_readable_position<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let head = |store: Store| async move {
        store
            .feed_head()
            .await
            .unwrap_or_else(|e| panic!("feed_head failed: {e}"))
    };
    assert_eq!(head(store.clone()).await, None, "a fresh feed has no head");
    for n in 1..=3 {
        append_all(&store, "feed-head", vec![item(n)]).await;
        let last = read_feed_from(&store, None, 100)
            .await
            .last()
            .map(|r| r.position);
        assert_eq!(
            head(store.clone()).await,
            last,
            "after {n} appends, the head is the last record's position"
        );
    }
}
