//! Subscriptions.

use super::support::*;

/// `Stream::subscribe(0, …)` delivers the existing entries, then entries appended while it
/// runs, in order, with nothing lost or repeated.
pub async fn subscribe_delivers_existing_then_live_entries<F: StoreFactory>(factory: &F) {
    const LIVE: u64 = 12;
    let store = factory.fresh().await;
    append_n(&store, "sub", 3).await;
    let stream = Stream::<Value>::new(&store, "sub").expect("valid stream id");
    let mut subscription = stream.subscribe(0, fast_subscription());
    let existing = next_n(&mut subscription, 3, "existing entries").await;
    assert_eq!(versions(&existing), [1, 2, 3], "existing entries' versions");
    assert_eq!(ns(&existing), [1, 2, 3], "existing entries' payloads");

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 4..4 + LIVE {
                append_all(&store, "sub", vec![item(n)]).await;
                append_n(&store, "sub-other", 1).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let live = next_n(&mut subscription, LIVE as usize, "live entries").await;
    writer.await.expect("writer task panicked");
    assert_eq!(
        versions(&live),
        (4..4 + LIVE).collect::<Vec<_>>(),
        "live entries' versions"
    );
    assert_eq!(
        ns(&live),
        (4..4 + LIVE).collect::<Vec<_>>(),
        "live entries' payloads"
    );
    assert!(
        live.iter().all(|e| e.stream == "sub"),
        "only this stream's entries"
    );
    assert_next_is_sentinel(
        &store,
        "sub",
        &mut subscription,
        "after the last live entry",
    )
    .await;
}

/// `Stream::subscribe(v, …)` starts after version `v`, then continues live.
pub async fn subscribe_from_middle_version_skips_earlier_entries<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "sub-mid", 5).await;
    let stream = Stream::<Value>::new(&store, "sub-mid").expect("valid stream id");
    let mut subscription = stream.subscribe(2, fast_subscription());
    let existing = next_n(&mut subscription, 3, "entries after version 2").await;
    assert_eq!(versions(&existing), [3, 4, 5], "entries after version 2");
    append_all(&store, "sub-mid", vec![item(6)]).await;
    let live = next_n(&mut subscription, 1, "live entry").await;
    assert_eq!(versions(&live), [6], "live entry's version");
    assert_eq!(ns(&live), [6], "live entry's payload");
    assert_next_is_sentinel(&store, "sub-mid", &mut subscription, "after the live entry").await;
}

/// `subscribe_feed` delivers existing feed records, then live ones, in order, and can resume
/// from a position.
pub async fn subscribe_feed_delivers_existing_then_live_records<F: StoreFactory>(factory: &F) {
    const LIVE: u64 = 10;
    let store = factory.fresh().await;
    append_n(&store, "sub-feed", 2).await;
    let mut subscription = store.subscribe_feed(None, fast_subscription());
    let existing = next_n(&mut subscription, 1, "existing feed record").await;
    assert!(
        matches!(&existing[0].mutation, Mutation::Append { entries, .. } if ns(entries) == [1, 2]),
        "the existing record is the first append: {existing:?}"
    );
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 3..3 + LIVE {
                append_all(&store, "sub-feed", vec![item(n)]).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let live = next_n(&mut subscription, LIVE as usize, "live feed records").await;
    writer.await.expect("writer task panicked");
    let appended_ns: Vec<Vec<u64>> = live
        .iter()
        .map(|r| match &r.mutation {
            Mutation::Append { entries, .. } => ns(entries),
            other => panic!("expected only append records, got {other:?}"),
        })
        .collect();
    let expected: Vec<Vec<u64>> = (3..3 + LIVE).map(|n| vec![n]).collect();
    assert_eq!(appended_ns, expected, "live records in append order");
    let mut all_positions = positions(&existing);
    all_positions.extend(positions(&live));
    assert_strictly_ascending(&all_positions, "positions delivered by the subscription");
    assert_next_record_is_sentinel(&store, &mut subscription, "after the last live record").await;

    let middle = live[4].position;
    let mut resumed = store.subscribe_feed(Some(middle), fast_subscription());
    // The live records after `middle`, then the sentinel appended above.
    let mut rest = next_n(&mut resumed, live.len() - 4, "records after a position").await;
    rest.pop();
    assert_eq!(
        rest,
        live[5..],
        "resumed subscription delivers the records after {middle}"
    );
    assert_next_record_is_sentinel(&store, &mut resumed, "after the resumed records").await;
}

/// A subscription that polls only once a minute still gets a new entry within seconds: the
/// store's commit signal ([`Store::commits`]) wakes it. The entry is appended only after the
/// subscription's read found nothing, so no read under way can pick it up by chance.
pub async fn subscriptions_wake_on_the_commit_signal_long_before_polling<F: StoreFactory>(
    factory: &F,
) {
    let store = factory.fresh().await;
    let slow = fast_subscription().poll_interval(Duration::from_secs(60));
    let (counted_store, counted) = ReadCounter::wrap(&store);
    let stream = Stream::<Value>::new(&counted_store, "wake").expect("valid stream id");
    let mut entries = stream.subscribe(0, slow);
    let first = tokio::spawn(async move {
        let entry = entries.next().await;
        (entry, entries)
    });
    counted.reads_reach(1).await;
    let id = append_all(&store, "wake", vec![item(1)]).await.remove(0);
    let (entry, _entries) = tokio::time::timeout(ITEM_TIMEOUT, first)
        .await
        .unwrap_or_else(|_| panic!("the commit signal did not wake the stream subscription within {ITEM_TIMEOUT:?} (it polls every 60 s)"))
        .expect("subscription task ran");
    let entry = entry
        .expect("subscription is open")
        .expect("entry delivered");
    assert_eq!(entry.id, id, "the appended entry");

    if store.capabilities().change_feed.is_none() {
        return;
    }
    let start = positions(&read_feed_from(&store, None, MAX_LIMIT).await)
        .last()
        .copied();
    let (counted_store, counted) = ReadCounter::wrap(&store);
    let mut records = counted_store.subscribe_feed(start, slow);
    let first = tokio::spawn(async move {
        let record = records.next().await;
        (record, records)
    });
    counted.reads_reach(1).await;
    let id = append_all(&store, "wake", vec![item(2)]).await.remove(0);
    let (record, _records) = tokio::time::timeout(ITEM_TIMEOUT, first)
        .await
        .unwrap_or_else(|_| panic!("the commit signal did not wake the feed subscription within {ITEM_TIMEOUT:?} (it polls every 60 s)"))
        .expect("subscription task ran");
    let record = record
        .expect("subscription is open")
        .expect("record delivered");
    assert!(
        matches!(&record.mutation, Mutation::Append { entries, .. } if entries[0].id == id),
        "the appended entry's record: {record:?}"
    );
}
