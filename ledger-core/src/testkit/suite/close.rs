//! Closing.

use super::support::*;

/// After `close()`, every call fails with `StoreClosed`.
pub async fn closed_store_refuses_every_call<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
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
        store.trim("closing", id).await,
        Error::StoreClosed,
        "trim after close"
    );
    // Closing is checked before anything else, whatever the store offers.
    assert_err!(
        store.set_tags("closing", id, tags(&["x"])).await,
        Error::StoreClosed,
        "set_tags after close"
    );
    assert_err!(
        store
            .set_annotations("closing", id, changes(&[("k", Some("v"))]))
            .await,
        Error::StoreClosed,
        "set_annotations after close"
    );
    assert_err!(
        store.rename_stream("closing", "closed").await,
        Error::StoreClosed,
        "rename_stream after close"
    );
    assert_err!(
        store
            .search(Some("closing"), "n", &ReadOptions::new())
            .await,
        Error::StoreClosed,
        "search after close"
    );
    assert_err!(
        store.read_feed(None, 10).await,
        Error::StoreClosed,
        "read_feed after close"
    );
    assert_err!(
        store.get_cursor("c").await,
        Error::StoreClosed,
        "get_cursor after close"
    );
    assert_err!(
        store.set_cursor("c", 1).await,
        Error::StoreClosed,
        "set_cursor after close"
    );
    assert_err!(
        store.health().await,
        Error::StoreClosed,
        "health after close"
    );
    assert_err!(
        store.apply_replicated("c", &[]).await,
        Error::StoreClosed,
        "apply_replicated after close"
    );
    let clone = store.clone();
    assert_err!(
        clone.count("closing").await,
        Error::StoreClosed,
        "a clone of a closed store"
    );
}
