//! Expected version.

use super::support::*;

/// `ExpectedVersion::Any` appends to new and existing streams alike.
pub async fn expected_any_always_appends<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    for round in 1..=3u64 {
        let outcomes = store
            .append("any", vec![item(round)], ExpectedVersion::Any)
            .await
            .unwrap_or_else(|e| panic!("append {round} with Any failed: {e}"));
        assert_eq!(
            appended(&outcomes, "append with Any")[0].1,
            round,
            "version of append {round}"
        );
    }
}

/// `ExpectedVersion::NoStream` appends to a new stream and conflicts on an existing one.
pub async fn expected_no_stream_conflicts_on_existing_stream<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    store
        .append("no-stream", vec![item(1)], ExpectedVersion::NoStream)
        .await
        .unwrap_or_else(|e| panic!("NoStream on a new stream must succeed: {e}"));
    assert_err!(
        store
            .append("no-stream", vec![item(2)], ExpectedVersion::NoStream)
            .await,
        Error::Conflict {
            expected: ExpectedVersion::NoStream,
            actual: 1,
            ..
        },
        "NoStream on a stream at version 1"
    );
    assert_eq!(
        ns(&read_all(&store, "no-stream").await),
        [1],
        "a conflicting append writes nothing"
    );
}

/// `ExpectedVersion::StreamExists` conflicts on a new stream and appends to an existing one.
pub async fn expected_stream_exists_conflicts_on_new_stream<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    assert_err!(
        store
            .append("exists", vec![item(1)], ExpectedVersion::StreamExists)
            .await,
        Error::Conflict {
            expected: ExpectedVersion::StreamExists,
            actual: 0,
            ..
        },
        "StreamExists on a new stream"
    );
    assert_eq!(
        count_of(&store, "exists").await,
        0,
        "a conflicting append writes nothing"
    );
    assert!(
        list_with(&store, &ListOptions::new()).await.is_empty(),
        "a conflicting append creates no stream"
    );
    append_n(&store, "exists", 1).await;
    let outcomes = store
        .append("exists", vec![item(2)], ExpectedVersion::StreamExists)
        .await
        .unwrap_or_else(|e| panic!("StreamExists on an existing stream must succeed: {e}"));
    assert_eq!(appended(&outcomes, "StreamExists")[0].1, 2, "version");
}

/// `ExpectedVersion::Exact(n)` appends when the stream is at `n` (0: new) and conflicts with the
/// actual version otherwise.
pub async fn expected_exact_version_conflicts_when_different<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    store
        .append("exact", vec![item(1)], ExpectedVersion::Exact(0))
        .await
        .unwrap_or_else(|e| panic!("Exact(0) on a new stream must succeed: {e}"));
    store
        .append("exact", vec![item(2), item(3)], ExpectedVersion::Exact(1))
        .await
        .unwrap_or_else(|e| panic!("Exact(1) on a stream at version 1 must succeed: {e}"));
    for stale in [0, 1, 2, 4, 100] {
        assert_err!(
            store
                .append("exact", vec![item(99)], ExpectedVersion::Exact(stale))
                .await,
            Error::Conflict {
                actual: 3,
                expected: ExpectedVersion::Exact(e),
                ..
            } if e == stale,
            "Exact({stale}) on a stream at version 3"
        );
    }
    assert_err!(
        store
            .append("exact-new", vec![item(1)], ExpectedVersion::Exact(2))
            .await,
        Error::Conflict {
            expected: ExpectedVersion::Exact(2),
            actual: 0,
            ..
        },
        "Exact(2) on a new stream"
    );
    assert_eq!(
        ns(&read_all(&store, "exact").await),
        [1, 2, 3],
        "conflicting appends write nothing"
    );
    assert_eq!(count_of(&store, "exact-new").await, 0, "count of exact-new");
    store
        .append("exact", vec![item(4)], ExpectedVersion::Exact(3))
        .await
        .unwrap_or_else(|e| panic!("Exact(3) on a stream at version 3 must succeed: {e}"));
}
