//! Trim.

use super::support::*;

/// Trim deletes the entries up to and including the id and returns how many it deleted.
pub async fn trim_deletes_up_to_id_inclusive<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "trim", 5).await;
    let other = append_n(&store, "trim-other", 2).await;
    let deleted = store
        .trim("trim", all[1])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_eq!(deleted, 2, "trim up to the 2nd id deletes 2 entries");
    let remaining = read_all(&store, "trim").await;
    assert_eq!(
        ids(&remaining),
        all[2..].to_vec(),
        "entries left after trim"
    );
    assert_eq!(versions(&remaining), [3, 4, 5], "versions left after trim");
    assert_eq!(
        stat_of(&store, "trim").await,
        StreamStat {
            stream: "trim".to_owned(),
            count: 3,
            first_id: Some(all[2]),
            last_id: Some(all[4]),
            last_version: 5,
        },
        "stat after trim"
    );
    let again = store
        .trim("trim", all[1])
        .await
        .unwrap_or_else(|e| panic!("second trim failed: {e}"));
    assert_eq!(again, 0, "trimming the same prefix again deletes nothing");
    assert_eq!(
        ids(&read_all(&store, "trim-other").await),
        other,
        "trim leaves other streams alone"
    );
}

/// Trim keeps the stream's version: the next append continues after it, even when every entry
/// was deleted, and the stream still counts as existing for expected-version checks.
pub async fn trim_keeps_stream_version<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "trim-all", 3).await;
    let deleted = store
        .trim("trim-all", all[2])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_eq!(deleted, 3, "trim up to the last id deletes everything");
    assert_eq!(
        stat_of(&store, "trim-all").await,
        StreamStat {
            stream: "trim-all".to_owned(),
            count: 0,
            first_id: None,
            last_id: None,
            last_version: 3,
        },
        "stat of a fully trimmed stream"
    );
    assert_err!(
        store
            .append("trim-all", vec![item(4)], ExpectedVersion::NoStream)
            .await,
        Error::Conflict {
            expected: ExpectedVersion::NoStream,
            actual: 3,
            ..
        },
        "NoStream on a fully trimmed stream"
    );
    let outcomes = store
        .append("trim-all", vec![item(4)], ExpectedVersion::Exact(3))
        .await
        .unwrap_or_else(|e| panic!("Exact(3) after trimming a stream at version 3: {e}"));
    let (id, version) = appended(&outcomes, "append after trim").remove(0);
    assert_eq!(version, 4, "the version continues after a trim");
    assert!(
        id > all[2],
        "ids are not reused after a trim: {id:?} vs {:?}",
        all[2]
    );
    assert_eq!(
        stat_of(&store, "trim-all").await.last_version,
        4,
        "stat.last_version after append"
    );
}

/// Trimming a stream that was never written deletes nothing.
pub async fn trim_of_unknown_stream_deletes_nothing<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "known", 2).await;
    let deleted = store
        .trim("unknown", all[1])
        .await
        .unwrap_or_else(|e| panic!("trim of an unknown stream failed: {e}"));
    assert_eq!(deleted, 0, "trim of an unknown stream");
    assert_eq!(
        count_of(&store, "known").await,
        2,
        "other streams are untouched"
    );
}
