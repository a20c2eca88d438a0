//! Dedup.

use super::support::*;

/// A dedup key already in the stream makes the input a duplicate of the stored entry; it is not
/// written.
pub async fn duplicate_dedup_key_in_stream_is_skipped<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let first = append_all(&store, "dedup", vec![item(1).dedup_key("k1")]).await;
    let outcomes = store
        .append("dedup", vec![item(2).dedup_key("k1")], ExpectedVersion::Any)
        .await
        .unwrap_or_else(|e| panic!("append of a duplicate failed: {e}"));
    assert_eq!(
        outcomes.outcomes,
        vec![AppendOutcome::Duplicate { id: first[0] }],
        "a second append with the same dedup key"
    );
    let entries = read_all(&store, "dedup").await;
    assert_eq!(ns(&entries), [1], "only the first entry is stored");
    assert_eq!(
        stat_of(&store, "dedup").await.last_version,
        1,
        "a duplicate does not advance the version"
    );
}

/// Inputs without a dedup key are never duplicates, even when identical.
pub async fn entries_without_dedup_key_are_all_written<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let same = AppendInput::new(json!({"same": true})).order_key("o");
    append_all(&store, "no-key", vec![same.clone(), same.clone()]).await;
    append_all(&store, "no-key", vec![same]).await;
    assert_eq!(
        count_of(&store, "no-key").await,
        3,
        "identical entries without a dedup key are all written"
    );
}

/// The same dedup key in two streams does not collide: both entries are written.
pub async fn same_dedup_key_in_two_streams_is_written_to_both<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(&store, "dedup-a", vec![item(1).dedup_key("shared")]).await;
    append_all(&store, "dedup-b", vec![item(2).dedup_key("shared")]).await;
    assert_eq!(
        ns(&read_all(&store, "dedup-a").await),
        [1],
        "stream dedup-a"
    );
    assert_eq!(
        ns(&read_all(&store, "dedup-b").await),
        [2],
        "stream dedup-b"
    );
}

/// A dedup key repeated inside one batch: the later input is a duplicate of the earlier one.
pub async fn duplicate_dedup_key_in_same_batch_is_skipped<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let outcomes = store
        .append(
            "batch-dedup",
            vec![
                item(1).dedup_key("k1"),
                item(2).dedup_key("k2"),
                item(3).dedup_key("k1"),
                item(4),
            ],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap_or_else(|e| panic!("append failed: {e}"));
    let entries = read_all(&store, "batch-dedup").await;
    assert_eq!(ns(&entries), [1, 2, 4], "entries written by the batch");
    assert_eq!(
        outcomes.outcomes,
        vec![
            AppendOutcome::Appended {
                id: entries[0].id,
                version: 1
            },
            AppendOutcome::Appended {
                id: entries[1].id,
                version: 2
            },
            AppendOutcome::Duplicate { id: entries[0].id },
            AppendOutcome::Appended {
                id: entries[2].id,
                version: 3
            },
        ],
        "outcomes of a batch repeating a dedup key"
    );
}

/// A batch made only of duplicates succeeds whatever the expected version and writes nothing;
/// a batch with one new input still checks it.
pub async fn all_duplicate_retry_succeeds_whatever_expected_version<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let batch = vec![item(1).dedup_key("k1"), item(2).dedup_key("k2")];
    let first = store
        .append("retry", batch.clone(), ExpectedVersion::NoStream)
        .await
        .unwrap_or_else(|e| panic!("first append failed: {e}"));
    let ids: Vec<_> = appended(&first, "first append")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let duplicates: Vec<_> = ids
        .iter()
        .map(|id| AppendOutcome::Duplicate { id: *id })
        .collect();
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(7),
        ExpectedVersion::Exact(0),
        ExpectedVersion::StreamExists,
        ExpectedVersion::Any,
    ] {
        let retry = store
            .append("retry", batch.clone(), expected)
            .await
            .unwrap_or_else(|e| {
                panic!("an all-duplicate retry with {expected:?} must succeed, got: {e}")
            });
        assert_eq!(retry.outcomes, duplicates, "retry with {expected:?}");
    }
    assert_eq!(count_of(&store, "retry").await, 2, "retries write nothing");
    assert_eq!(
        stat_of(&store, "retry").await.last_version,
        2,
        "retries do not advance the version"
    );

    let mixed = vec![item(1).dedup_key("k1"), item(3).dedup_key("k3")];
    assert_err!(
        store
            .append("retry", mixed, ExpectedVersion::Exact(7))
            .await,
        Error::Conflict {
            expected: ExpectedVersion::Exact(7),
            actual: 2,
            ..
        },
        "a batch with a new input and a wrong expected version"
    );
    assert_eq!(
        count_of(&store, "retry").await,
        2,
        "a conflicting batch writes nothing"
    );
}

/// Sixteen tasks append one entry with the same dedup key to one stream at once (a redelivered
/// message handled twice): exactly one is appended, every other is a duplicate of it, and the
/// stream holds one entry.
pub async fn concurrent_appends_with_one_dedup_key_write_it_once<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let barrier = Arc::new(Barrier::new(16));
    let tasks: Vec<_> = (0..16u64)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(
                        "redelivered",
                        vec![item(n).dedup_key("offset-42")],
                        ExpectedVersion::Any,
                    )
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let result = task.await.expect("appender task ran");
        let mut outcome =
            result.unwrap_or_else(|e| panic!("an append with a taken key failed: {e}"));
        outcomes.push(outcome.outcomes.remove(0));
    }
    let winners: Vec<_> = outcomes.iter().filter(|o| o.is_appended()).collect();
    assert_eq!(winners.len(), 1, "exactly one append wins: {outcomes:?}");
    let winner = winners[0].id();
    assert!(
        outcomes.iter().all(|o| o.id() == winner),
        "every duplicate names the winner's id {winner:?}: {outcomes:?}"
    );
    let stored = read_all(&store, "redelivered").await;
    assert_eq!(ids(&stored), [winner], "one entry is stored");
    assert_eq!(versions(&stored), [1], "at version 1");
}
