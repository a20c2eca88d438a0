//! Cursor store and health.

use super::support::*;

/// A missing cursor is `None`; a saved one reads back; a lower value never moves it back.
pub async fn cursor_store_saves_and_never_moves_back<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    // Unique names, in case a backend keeps cursors outside the store's own table.
    let name = format!("cursor_{}", fresh_table());
    let other = format!("other_{}", fresh_table());
    let store = &store;
    let get = |name: String| async move {
        store
            .get_cursor(&name)
            .await
            .unwrap_or_else(|e| panic!("get_cursor({name:?}) failed: {e}"))
    };
    let set = |name: String, position: u64| async move {
        store
            .set_cursor(&name, position)
            .await
            .unwrap_or_else(|e| panic!("set_cursor({name:?}, {position}) failed: {e}"))
    };
    assert_eq!(get(name.clone()).await, None, "a cursor never set");
    set(name.clone(), 5).await;
    assert_eq!(get(name.clone()).await, Some(5), "after set 5");
    set(name.clone(), 3).await;
    assert_eq!(
        get(name.clone()).await,
        Some(5),
        "a lower value does not move it back"
    );
    set(name.clone(), 5).await;
    assert_eq!(get(name.clone()).await, Some(5), "the same value keeps it");
    set(name.clone(), i64::MAX as u64).await;
    assert_eq!(
        get(name.clone()).await,
        Some(i64::MAX as u64),
        "a position of 2^63 - 1"
    );
    assert_eq!(
        get(other.clone()).await,
        None,
        "cursors are independent by name"
    );
    set(other.clone(), 1).await;
    assert_eq!(get(other).await, Some(1), "the other cursor");
    assert_eq!(
        get(name).await,
        Some(i64::MAX as u64),
        "the first cursor is unchanged"
    );
}

/// The health check answers `Ok` on an open store.
pub async fn health_is_ok_on_open_store<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    store
        .health()
        .await
        .unwrap_or_else(|e| panic!("health on an open store failed: {e}"));
}

/// Cursor names follow the stream-id rule (1 to 256 bytes, no NUL): others are `InvalidName`.
pub async fn invalid_cursor_names_are_rejected<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    for name in [String::new(), "a\u{0000}b".to_owned(), "c".repeat(257)] {
        assert_err!(
            store.get_cursor(&name).await,
            Error::InvalidName { kind: "cursor", .. },
            "get_cursor({name:?})"
        );
        assert_err!(
            store.set_cursor(&name, 1).await,
            Error::InvalidName { kind: "cursor", .. },
            "set_cursor({name:?})"
        );
    }
    let longest = "c".repeat(256);
    store
        .set_cursor(&longest, 7)
        .await
        .unwrap_or_else(|e| panic!("a 256-byte cursor name failed: {e}"));
    assert_eq!(
        store.get_cursor(&longest).await.ok().flatten(),
        Some(7),
        "256-byte name"
    );
}
