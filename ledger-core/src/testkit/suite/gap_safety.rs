//! Gap safety of the change feed.

use super::support::*;

/// Writer A appends inside an open transaction; writer B appends later, autocommitted. A reader
/// tailing the feed meanwhile must never later find a new record below one it has read. Where
/// the feed is a watermark ([`crate::FeedOrder::GapSafeWatermark`]) writers do not wait for
/// each other, so B must really commit while A is open, and the reader must hold B's record
/// back (A's position is below it and in flight). Where positions are commit-ordered, B either
/// waits for A or commits first with the lower position. Once A commits, the reader and a live
/// subscriber deliver both records, each once, in ascending positions.
pub async fn feed_is_gap_safe_when_a_later_writer_finishes_first<F>(factory: &F)
where
    F: crate::testkit::TransactionalFactory,
{
    let handle = factory.fresh_handle().await;
    let store = handle.as_ref().clone();
    let order = store
        .capabilities()
        .change_feed
        .expect("the behaviour requires a change feed");
    append_all(&store, "before", vec![item(0)]).await;
    let start = positions(&read_feed_from(&store, None, 100).await)
        .last()
        .copied()
        .expect("the baseline append has a record");
    let mut live = store.subscribe_feed(Some(start), fast_subscription());

    let writer_a = factory.open_append(&handle, "writer-a", item(1)).await;
    let mut writer_b = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append("writer-b", vec![item(2)], ExpectedVersion::Any)
                .await
        })
    };
    // Give B every chance to commit first.
    let b_first = tokio::time::timeout(Duration::from_secs(2), &mut writer_b).await;
    let b_committed_first = match b_first {
        Ok(joined) => {
            joined
                .expect("writer B's task ran")
                .expect("writer B's append succeeded");
            true
        }
        Err(_) => false,
    };
    if order == FeedOrder::GapSafeWatermark {
        assert!(
            b_committed_first,
            "writer B waited for writer A: a watermark feed must let writers commit in parallel"
        );
    }
    // Poll as a tailing reader would.
    let early = read_feed_from(&store, Some(start), 100).await;
    let early_streams: Vec<&str> = early.iter().map(|r| r.stream.as_str()).collect();
    match order {
        FeedOrder::GapSafeWatermark => assert!(
            early.is_empty(),
            "while writer A's transaction is open the feed delivered {early_streams:?} past \
             position {start}, above A's position in flight"
        ),
        _ if b_committed_first => assert_eq!(
            early_streams,
            ["writer-b"],
            "a commit-ordered feed delivers B, committed first, and nothing of A"
        ),
        _ => assert!(
            early.is_empty(),
            "nothing committed past {start} while A is open, yet the feed delivered \
             {early_streams:?}"
        ),
    }

    writer_a.commit().await;
    if !b_committed_first {
        tokio::time::timeout(Duration::from_secs(30), writer_b)
            .await
            .expect("writer B finishes once A committed")
            .expect("writer B's task ran")
            .expect("writer B's append succeeded");
    }

    let records = read_feed_from(&store, Some(start), 100).await;
    assert_strictly_ascending(&positions(&records), "feed positions");
    assert_eq!(
        records[..early.len()],
        early[..],
        "records read while A was open keep their place: nothing new appeared below them"
    );
    let mut streams: Vec<&str> = records.iter().map(|r| r.stream.as_str()).collect();
    if order == FeedOrder::GapSafeWatermark || !b_committed_first {
        assert_eq!(
            streams,
            ["writer-a", "writer-b"],
            "A's record first, then B's"
        );
    }
    streams.sort_unstable();
    assert_eq!(streams, ["writer-a", "writer-b"], "each record once");
    let delivered: Vec<FeedRecord> = next_n(&mut live, 2, "live subscription").await;
    assert_eq!(
        positions(&delivered),
        positions(&records),
        "the subscriber delivers what the reader reads, in order"
    );
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
