//! Rename.

use super::support::*;

/// `rename_stream` moves entries with ids and versions unchanged; the version continues under
/// the new name and the old name is empty.
pub async fn rename_stream_moves_entries_and_version<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "old", 3).await;
    let before = read_all(&store, "old").await;
    store
        .rename_stream("old", "new")
        .await
        .unwrap_or_else(|e| panic!("rename failed: {e}"));
    let after = read_all(&store, "new").await;
    assert_eq!(after.len(), 3, "entries under the new name: {after:?}");
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        assert_eq!(new.id, old.id, "entry {i}: id unchanged");
        assert_eq!(new.version, old.version, "entry {i}: version unchanged");
        assert_eq!(new.payload, old.payload, "entry {i}: payload unchanged");
        assert_eq!(
            new.created_at, old.created_at,
            "entry {i}: created_at unchanged"
        );
        assert_eq!(new.stream, "new", "entry {i}: stream is the new name");
    }
    assert!(
        read_all(&store, "old").await.is_empty(),
        "old name reads empty"
    );
    assert_eq!(
        stat_of(&store, "old").await,
        StreamStat {
            stream: "old".to_owned(),
            count: 0,
            first_id: None,
            last_id: None,
            last_version: 0,
        },
        "the old name keeps no entries and no version"
    );
    assert_eq!(
        list_with(&store, &ListOptions::new()).await,
        strings(&["new"]),
        "streams after rename"
    );
    let outcomes = store
        .append("new", vec![item(4)], ExpectedVersion::Exact(3))
        .await
        .unwrap_or_else(|e| panic!("Exact(3) on the renamed stream: {e}"));
    assert_eq!(
        appended(&outcomes, "append after rename")[0].1,
        4,
        "version continues"
    );
    let outcomes = store
        .append("old", vec![item(1)], ExpectedVersion::NoStream)
        .await
        .unwrap_or_else(|e| panic!("NoStream on the freed old name: {e}"));
    assert_eq!(
        appended(&outcomes, "append to the old name")[0].1,
        1,
        "old name restarts"
    );
}

/// Renaming a stream that was never written is `StreamNotFound`.
pub async fn rename_of_missing_stream_is_stream_not_found<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    assert_err!(
        store.rename_stream("ghost", "target").await,
        Error::StreamNotFound(_),
        "rename of a missing stream"
    );
    assert_eq!(count_of(&store, "target").await, 0, "nothing is created");
}

/// Renaming onto an existing stream is `StreamExists` and moves nothing.
pub async fn rename_onto_existing_stream_is_stream_exists<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "src", 2).await;
    append_n(&store, "dst", 1).await;
    assert_err!(
        store.rename_stream("src", "dst").await,
        Error::StreamExists(_),
        "rename onto an existing stream"
    );
    assert_eq!(count_of(&store, "src").await, 2, "source unchanged");
    assert_eq!(count_of(&store, "dst").await, 1, "target unchanged");
    assert!(
        read_all(&store, "dst")
            .await
            .iter()
            .all(|e| e.stream == "dst"),
        "target entries unchanged"
    );
}

/// A stream trimmed to empty still exists (its version survives): renaming onto it is
/// `StreamExists`, and renaming it moves its version, so the new name continues after it.
pub async fn rename_onto_a_fully_trimmed_stream_is_stream_exists<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "src", 1).await;
    let emptied = append_n(&store, "emptied", 2).await;
    store
        .trim("emptied", emptied[1])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_err!(
        store.rename_stream("src", "emptied").await,
        Error::StreamExists(_),
        "rename onto a stream trimmed to empty"
    );
    assert_eq!(count_of(&store, "src").await, 1, "source unchanged");
    store
        .rename_stream("emptied", "moved")
        .await
        .unwrap_or_else(|e| panic!("rename of a stream trimmed to empty failed: {e}"));
    assert_eq!(
        stat_of(&store, "moved").await.last_version,
        2,
        "its version moved"
    );
    let outcomes = store
        .append("moved", vec![item(3)], ExpectedVersion::Exact(2))
        .await
        .unwrap_or_else(|e| panic!("Exact(2) on the renamed stream: {e}"));
    assert_eq!(
        appended(&outcomes, "append after rename")[0].1,
        3,
        "versions continue"
    );
    assert_eq!(
        stat_of(&store, "emptied").await.last_version,
        0,
        "the old name is free"
    );
}

/// A rename whose target receives its first append at the same moment (held open in a
/// transaction while the rename runs): once the append commits, the rename fails with
/// `StreamExists` and moves nothing, whichever reached the target first.
pub async fn rename_racing_a_first_append_to_the_target_is_stream_exists<F>(factory: &F)
where
    F: crate::testkit::TransactionalFactory,
{
    let handle = factory.fresh_handle().await;
    let store = handle.as_ref().clone();
    append_n(&store, "from", 2).await;
    let first_append = factory.open_append(&handle, "to", item(9)).await;
    let rename = {
        let store = store.clone();
        tokio::spawn(async move { store.rename_stream("from", "to").await })
    };
    // Give the rename time to reach the target while the append is open; the outcome must be
    // the same if it gets there only after the commit.
    tokio::time::sleep(Duration::from_millis(100)).await;
    first_append.commit().await;
    let renamed = tokio::time::timeout(Duration::from_secs(40), rename)
        .await
        .expect("the rename finishes once the append committed")
        .expect("rename task ran");
    assert_err!(
        renamed,
        Error::StreamExists(_),
        "rename onto a stream created meanwhile"
    );
    assert_eq!(count_of(&store, "from").await, 2, "the source is unchanged");
    assert_eq!(
        ns(&read_all(&store, "to").await),
        [9],
        "the target holds only its append"
    );
}
