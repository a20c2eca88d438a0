//! Tags and annotations.

use super::support::*;

/// `set_tags` replaces the entry's tags and sets its `updated_at`; other entries are untouched.
pub async fn set_tags_replaces_tags_and_sets_updated_at<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_all(
        &store,
        "tagged",
        vec![item(1).tag("a").tag("b"), item(2).tag("a").tag("b")],
    )
    .await;
    store
        .set_tags("tagged", all[0], tags(&["c", "d"]))
        .await
        .unwrap_or_else(|e| panic!("set_tags failed: {e}"));
    let entries = read_all(&store, "tagged").await;
    let changed = entry_by_id(&entries, &all[0]);
    assert_eq!(
        changed.tags,
        tags(&["c", "d"]),
        "tags are replaced, not merged"
    );
    let updated = changed
        .updated_at
        .unwrap_or_else(|| panic!("set_tags must set updated_at: {changed:?}"));
    assert!(
        updated >= changed.created_at,
        "updated_at {updated} is before created_at {}",
        changed.created_at
    );
    let untouched = entry_by_id(&entries, &all[1]);
    assert_eq!(untouched.tags, tags(&["a", "b"]), "other entry's tags");
    assert_eq!(untouched.updated_at, None, "other entry's updated_at");

    store
        .set_tags("tagged", all[0], BTreeSet::new())
        .await
        .unwrap_or_else(|e| panic!("set_tags to no tags failed: {e}"));
    let entries = read_all(&store, "tagged").await;
    let cleared = entry_by_id(&entries, &all[0]);
    assert!(
        cleared.tags.is_empty(),
        "tags after set_tags(empty): {:?}",
        cleared.tags
    );
    assert!(
        cleared.updated_at >= Some(updated),
        "updated_at must not go back: {:?} after {updated}",
        cleared.updated_at
    );
    assert_eq!(
        ns(&read_with(&store, "tagged", &ReadOptions::new().tag("a")).await),
        [2],
        "the tag filter sees replaced tags"
    );
}

/// `set_annotations` merges: `Some` sets a key, `None` deletes one, other keys are kept, and
/// `updated_at` is set.
pub async fn set_annotations_merges_and_none_deletes<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "annotated", 2).await;
    store
        .set_annotations(
            "annotated",
            all[0],
            changes(&[("x", Some("1")), ("y", Some("2"))]),
        )
        .await
        .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
    let entries = read_all(&store, "annotated").await;
    let first = entry_by_id(&entries, &all[0]);
    assert_eq!(
        first.annotations,
        annotations(&[("x", "1"), ("y", "2")]),
        "annotations after the first change"
    );
    let updated = first
        .updated_at
        .unwrap_or_else(|| panic!("set_annotations must set updated_at: {first:?}"));
    assert!(updated >= first.created_at, "updated_at before created_at");

    store
        .set_annotations(
            "annotated",
            all[0],
            changes(&[("x", None), ("z", Some("3")), ("never-set", None)]),
        )
        .await
        .unwrap_or_else(|e| panic!("second set_annotations failed: {e}"));
    let entries = read_all(&store, "annotated").await;
    let merged = entry_by_id(&entries, &all[0]);
    assert_eq!(
        merged.annotations,
        annotations(&[("y", "2"), ("z", "3")]),
        "None deletes x, z is added, y is kept"
    );
    assert!(
        merged.updated_at >= Some(updated),
        "updated_at must not go back: {:?} after {updated}",
        merged.updated_at
    );
    let untouched = entry_by_id(&entries, &all[1]);
    assert!(
        untouched.annotations.is_empty(),
        "other entry's annotations"
    );
    assert_eq!(untouched.updated_at, None, "other entry's updated_at");
}

/// `set_tags` on an entry that is not in the stream (another stream's id, a trimmed id, a
/// stream never written) is `EntryNotFound` and changes nothing.
pub async fn set_tags_on_unknown_entry_is_entry_not_found<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let mine = append_n(&store, "nf", 2).await;
    let theirs = append_all(&store, "nf-other", vec![item(9).tag("keep")]).await;
    assert_err!(
        store.set_tags("nf", theirs[0], tags(&["x"])).await,
        Error::EntryNotFound { .. },
        "set_tags with another stream's id"
    );
    let other = read_all(&store, "nf-other").await;
    assert_eq!(
        other[0].tags,
        tags(&["keep"]),
        "the other stream's entry is unchanged"
    );
    assert_eq!(
        other[0].updated_at, None,
        "the other stream's entry is unchanged"
    );

    store
        .trim("nf", mine[0])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_err!(
        store.set_tags("nf", mine[0], tags(&["x"])).await,
        Error::EntryNotFound { .. },
        "set_tags with a trimmed id"
    );
    assert_err!(
        store.set_tags("nf-never", mine[1], tags(&["x"])).await,
        Error::EntryNotFound { .. },
        "set_tags on a stream that was never written"
    );
}

/// `set_annotations` on an entry that is not in the stream is `EntryNotFound` and changes
/// nothing.
pub async fn set_annotations_on_unknown_entry_is_entry_not_found<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let mine = append_n(&store, "nf", 2).await;
    let theirs = append_n(&store, "nf-other", 1).await;
    let set = changes(&[("k", Some("v"))]);
    assert_err!(
        store.set_annotations("nf", theirs[0], set.clone()).await,
        Error::EntryNotFound { .. },
        "set_annotations with another stream's id"
    );
    let other = read_all(&store, "nf-other").await;
    assert!(
        other[0].annotations.is_empty(),
        "the other stream's entry is unchanged"
    );
    assert_eq!(
        other[0].updated_at, None,
        "the other stream's entry is unchanged"
    );

    store
        .trim("nf", mine[0])
        .await
        .unwrap_or_else(|e| panic!("trim failed: {e}"));
    assert_err!(
        store.set_annotations("nf", mine[0], set.clone()).await,
        Error::EntryNotFound { .. },
        "set_annotations with a trimmed id"
    );
    assert_err!(
        store.set_annotations("nf-never", mine[1], set).await,
        Error::EntryNotFound { .. },
        "set_annotations on a stream that was never written"
    );
}

/// Changes that change nothing (the same tags; no annotation changes, a key set to its value, a
/// missing key deleted) leave `updated_at` unset and write no change-feed record; an unknown
/// entry is still `EntryNotFound`.
pub async fn unchanged_tags_and_annotations_write_nothing<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let id = append_all(&store, "steady", vec![item(1).tag("a")]).await[0];
    let records = async |store: &Store| match store.capabilities().change_feed {
        Some(_) => read_feed_from(store, None, 100).await.len(),
        None => 0,
    };
    let before = records(&store).await;
    store
        .set_tags("steady", id, tags(&["a"]))
        .await
        .unwrap_or_else(|e| panic!("set_tags to the same tags failed: {e}"));
    store
        .set_annotations("steady", id, BTreeMap::new())
        .await
        .unwrap_or_else(|e| panic!("set_annotations with no changes failed: {e}"));
    store
        .set_annotations("steady", id, changes(&[("gone", None)]))
        .await
        .unwrap_or_else(|e| panic!("deleting a missing annotation failed: {e}"));
    let entry = read_all(&store, "steady").await.remove(0);
    assert_eq!(
        entry.updated_at, None,
        "nothing changed, so updated_at stays unset: {entry:?}"
    );
    assert_eq!(
        records(&store).await,
        before,
        "nothing changed, so no feed record"
    );

    store
        .set_annotations("steady", id, changes(&[("k", Some("v"))]))
        .await
        .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
    let changed = read_all(&store, "steady").await.remove(0).updated_at;
    assert!(changed.is_some(), "a real change sets updated_at");
    let after_change = records(&store).await;
    store
        .set_annotations("steady", id, changes(&[("k", Some("v"))]))
        .await
        .unwrap_or_else(|e| panic!("setting an annotation to its value failed: {e}"));
    let entry = read_all(&store, "steady").await.remove(0);
    assert_eq!(
        entry.updated_at, changed,
        "setting a key to its value changes nothing"
    );
    assert_eq!(records(&store).await, after_change, "no feed record for it");

    let ghost = append_all(&store, "other", vec![item(2)]).await[0];
    assert_err!(
        store
            .set_annotations("steady", ghost, BTreeMap::new())
            .await,
        Error::EntryNotFound { .. },
        "empty changes on an entry of another stream"
    );
    assert_err!(
        store.set_tags("steady", ghost, tags(&["a"])).await,
        Error::EntryNotFound { .. },
        "set_tags on an entry of another stream"
    );
}
