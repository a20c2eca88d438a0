//! Capabilities: what a store lacks answers `NotSupported`, whatever the backend.

use super::support::*;

/// Every operation a store's capabilities exclude answers `NotSupported` (and writes nothing);
/// a search mode it offers answers.
pub async fn capabilities_match_what_the_store_does<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let caps = store.capabilities();
    let id = append_n(&store, "probe", 1).await[0];
    if !caps.expected_version {
        let result = store
            .append("probe", vec![item(2)], ExpectedVersion::Exact(1))
            .await;
        assert_not_supported(result, "no expected_version: an append expecting a version");
    }
    if !caps.dedup {
        let result = store
            .append("probe", vec![item(2).dedup_key("k")], ExpectedVersion::Any)
            .await;
        assert_not_supported(result, "no dedup: an append with a dedup key");
    }
    if !caps.tags {
        let result = store.set_tags("probe", id, tags(&["t"])).await;
        assert_not_supported(result, "no tags: set_tags");
    }
    if !caps.annotations {
        let result = store
            .set_annotations("probe", id, changes(&[("k", Some("v"))]))
            .await;
        assert_not_supported(result, "no annotations: set_annotations");
        let result = store
            .read("probe", &ReadOptions::new().annotation("k", "v"))
            .await;
        assert_not_supported(result, "no annotations: a read filtering on one");
    }
    if !caps.trim {
        assert_not_supported(store.trim("probe", id).await, "no trim: trim");
    }
    if !caps.rename {
        let result = store.rename_stream("probe", "probe-2").await;
        assert_not_supported(result, "no rename: rename_stream");
    }
    let substring = store.search(None, "n", &ReadOptions::new()).await;
    if caps.search.substring {
        substring.unwrap_or_else(|e| panic!("substring search is offered but failed: {e}"));
    } else {
        assert_not_supported(substring, "no substring search: search");
    }
    let full_text = store
        .search(
            None,
            crate::SearchQuery::full_text("n"),
            &ReadOptions::new(),
        )
        .await;
    if caps.search.full_text {
        full_text.unwrap_or_else(|e| panic!("full-text search is offered but failed: {e}"));
    } else {
        assert_not_supported(full_text, "no full-text search: search");
    }
    if caps.change_feed.is_none() {
        assert_not_supported(store.read_feed(None, 10).await, "no change feed: read_feed");
        assert_not_supported(store.feed_head().await, "no change feed: feed_head");
        let mut subscription = store.subscribe_feed(None, fast_subscription());
        let first = tokio::time::timeout(ITEM_TIMEOUT, subscription.next())
            .await
            .expect("a feed subscription without a feed answers at once");
        assert!(
            matches!(first, Some(Err(Error::NotSupported(_)))),
            "no change feed: subscribe_feed yields NotSupported, got {first:?}"
        );
    }
    if !caps.cursor_store {
        assert_not_supported(store.get_cursor("c").await, "no cursor store: get_cursor");
        assert_not_supported(
            store.set_cursor("c", 1).await,
            "no cursor store: set_cursor",
        );
    }
    if !caps.health {
        assert_not_supported(store.health().await, "no health check: health");
    }
    if caps.replication.is_none() {
        let record = FeedRecord {
            position: 1,
            stream: "replicated".into(),
            mutation: Mutation::Trim {
                up_to: id,
                deleted: 0,
            },
        };
        let result = store.apply_replicated("c", &[record]).await;
        assert_not_supported(result, "no replication: apply_replicated");
    }
    assert_eq!(
        count_of(&store, "probe").await,
        1,
        "refused operations write nothing"
    );
}
