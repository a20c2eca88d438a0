//! Closing.

use super::support::*;

/// After `close()`, every call fails with `StoreClosed`.
pub async fn closed_store_refuses_every_call<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let caps: Capabilities = store.capabilities();
    let id = append_n(&store, "closing", 2).await.remove(0);
    store
        .close()
        .await
        .unwrap_or_else(|e| panic!("close failed: {e}"));

    assert_err!(
        store
            .append("closing", vec![item(3)], ExpectedVersion::Any)
            .await,
        Error::StoreClosed,
        "append after close"
    );
    assert_err!(
        store.read("closing", &ReadOptions::new()).await,
        Error::StoreClosed,
        "read after close"
    );
    assert_err!(
        store.count("closing").await,
        Error::StoreClosed,
        "count after close"
    );
    assert_err!(
        store.stat("closing").await,
        Error::StoreClosed,
        "stat after close"
    );
    assert_err!(
        store.list_streams(&ListOptions::new()).await,
        Error::StoreClosed,
        "list_streams after close"
    );
    assert_err!(
        store.trim("closing", &id).await,
        Error::StoreClosed,
        "trim after close"
    );
    // An unsupported operation may answer NotSupported before noticing the store is closed.
    let set_tags = store.set_tags("closing", &id, tags(&["x"])).await;
    if caps.tags {
        assert_err!(set_tags, Error::StoreClosed, "set_tags after close");
    } else {
        assert_err!(
            set_tags,
            Error::StoreClosed | Error::NotSupported(_),
            "set_tags after close"
        );
    }
    let set_annotations = store
        .set_annotations("closing", &id, changes(&[("k", Some("v"))]))
        .await;
    if caps.annotations {
        assert_err!(
            set_annotations,
            Error::StoreClosed,
            "set_annotations after close"
        );
    } else {
        assert_err!(
            set_annotations,
            Error::StoreClosed | Error::NotSupported(_),
            "set_annotations after close"
        );
    }
    let rename = store.rename_stream("closing", "closed").await;
    if caps.rename {
        assert_err!(rename, Error::StoreClosed, "rename_stream after close");
    } else {
        assert_err!(
            rename,
            Error::StoreClosed | Error::NotSupported(_),
            "rename_stream after close"
        );
    }
    if let Some(search) = search_of(&store) {
        assert_err!(
            search
                .search(Some("closing"), "n", &ReadOptions::new())
                .await,
            Error::StoreClosed,
            "search after close"
        );
    }
    if let Some(feed) = change_feed_of(&store) {
        assert_err!(
            feed.read_feed(None, 10).await,
            Error::StoreClosed,
            "read_feed after close"
        );
    }
    if let Some(cursors) = cursor_store_of(&store) {
        assert_err!(
            cursors.get_cursor("c").await,
            Error::StoreClosed,
            "get_cursor after close"
        );
        assert_err!(
            cursors.set_cursor("c", 1).await,
            Error::StoreClosed,
            "set_cursor after close"
        );
    }
    if let Some(health) = health_of(&store) {
        assert_err!(
            health.health().await,
            Error::StoreClosed,
            "health after close"
        );
    }
}
