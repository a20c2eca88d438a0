//! Gap safety of the change feed.

use super::support::*;

/// Writer A appends inside an open transaction; writer B appends later. While A is open a reader
/// must not deliver anything past A's position (B may not even have finished); once A commits,
/// the reader delivers A's record, then B's, each exactly once, and so does a live subscriber.
pub async fn feed_is_gap_safe_when_a_later_writer_finishes_first<F>(factory: &F)
where
    F: crate::testkit::TransactionalFactory,
{
    let handle = factory.fresh_handle().await;
    let store = handle.as_ref().clone();
    append_all(&store, "before", vec![item(0)]).await;
    let start = positions(&read_feed_from(&store, None, 100).await)
        .last()
        .copied()
        .expect("the baseline append has a record");
    let mut live = store.subscribe_feed(Some(start), fast_subscription());

    let writer_a = factory.open_append(&handle, "writer-a", item(1)).await;
    let writer_b = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append("writer-b", vec![item(2)], ExpectedVersion::Any)
                .await
        })
    };
    // Give B every chance to commit first, then poll as a tailing reader would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = read_feed_from(&store, Some(start), 100).await;
    assert!(
        early.is_empty(),
        "while writer A's transaction is open the feed delivered {:?} past position {start}",
        early
            .iter()
            .map(|r| (&r.stream, r.position))
            .collect::<Vec<_>>()
    );

    writer_a.commit().await;
    tokio::time::timeout(Duration::from_secs(30), writer_b)
        .await
        .expect("writer B finishes once A committed")
        .expect("writer B's task ran")
        .expect("writer B's append succeeded");

    let records = read_feed_from(&store, Some(start), 100).await;
    let streams: Vec<&str> = records.iter().map(|r| r.stream.as_str()).collect();
    assert_eq!(
        streams,
        ["writer-a", "writer-b"],
        "A's record first, then B's, once each"
    );
    assert_strictly_ascending(&positions(&records), "feed positions");
    let delivered: Vec<FeedRecord> = next_n(&mut live, 2, "live subscription").await;
    let live_streams: Vec<&str> = delivered.iter().map(|r| r.stream.as_str()).collect();
    assert_eq!(live_streams, ["writer-a", "writer-b"], "subscriber order");
    assert_next_record_is_sentinel(&store, &mut live, "subscription after both").await;
}

/// Eight writers append concurrently for a while; a feed subscriber started before them sees
/// every committed record exactly once, in ascending position order.
pub async fn feed_subscriber_sees_every_record_once_under_concurrent_writers<F: StoreFactory>(
    factory: &F,
) {
    let store = factory.fresh().await;
    let mut live = store.subscribe_feed(None, fast_subscription());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut written = Vec::new();
                let mut n = 0u64;
                while tokio::time::Instant::now() < deadline {
                    let stream = format!("load-{w}-{}", n % 3);
                    let batch = vec![item(w * 1_000_000 + n), item(w * 1_000_000 + n + 1)];
                    let outcome = store
                        .append(&stream, batch, ExpectedVersion::Any)
                        .await
                        .expect("concurrent append succeeds");
                    for o in outcome.outcomes {
                        if let AppendOutcome::Appended { version, .. } = o {
                            written.push((stream.clone(), version));
                        }
                    }
                    n += 2;
                }
                written
            })
        })
        .collect();
    let mut expected = BTreeSet::new();
    let mut appends = 0usize;
    for writer in writers {
        let written = writer.await.expect("writer task ran");
        appends += written.len() / 2;
        expected.extend(written);
    }
    assert!(
        appends >= 8,
        "each writer appended at least once ({appends} appends)"
    );

    let records: Vec<FeedRecord> = next_n(&mut live, appends, "subscriber under load").await;
    assert_strictly_ascending(&positions(&records), "delivered positions");
    let mut seen = BTreeSet::new();
    for record in &records {
        let Mutation::Append { entries, .. } = &record.mutation else {
            panic!("only appends happened, got {:?}", record.mutation.kind());
        };
        for e in entries {
            assert!(
                seen.insert((e.stream.clone(), e.version)),
                "entry {}@{} delivered twice",
                e.stream,
                e.version
            );
        }
    }
    assert_eq!(
        seen, expected,
        "the subscriber saw exactly the committed entries"
    );
    assert_next_record_is_sentinel(&store, &mut live, "subscriber after the load").await;
}
