//! Listing streams.

use super::support::*;

/// `list_streams` is ascending bytewise and continues strictly after its cursor.
pub async fn list_streams_is_ascending_and_strictly_after_cursor<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let names = ["beta", "Alpha", "gamma", "a_b", "alpha", "delta", "a-b"];
    for name in names {
        append_n(&store, name, 1).await;
    }
    let mut sorted = strings(&names);
    sorted.sort();
    assert_eq!(
        list_with(&store, &ListOptions::new()).await,
        sorted,
        "all streams, ascending bytewise"
    );
    let cases = [
        ("alpha", strings(&["beta", "delta", "gamma"])),
        ("b", strings(&["beta", "delta", "gamma"])),
        ("beta", strings(&["delta", "gamma"])),
        (
            "Alpha",
            strings(&["a-b", "a_b", "alpha", "beta", "delta", "gamma"]),
        ),
        ("gamma", Vec::new()),
        ("zzz", Vec::new()),
    ];
    for (after, expected) in cases {
        assert_eq!(
            list_with(&store, &ListOptions::new().after(after)).await,
            expected,
            "streams strictly after {after:?}"
        );
    }
}

/// `list_streams` pages with a limit: 2, 2, 1, then nothing past the end.
pub async fn list_streams_pages_with_limit<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    for name in ["s3", "s1", "s5", "s2", "s4"] {
        append_n(&store, name, 2).await;
    }
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..4 {
        let mut options = ListOptions::new().limit(2);
        options.after = cursor.clone();
        let page = list_with(&store, &options).await;
        cursor = page.last().cloned().or(cursor);
        pages.push(page);
    }
    assert_eq!(
        pages,
        vec![
            strings(&["s1", "s2"]),
            strings(&["s3", "s4"]),
            strings(&["s5"]),
            Vec::new()
        ],
        "pages of 2 over 5 streams"
    );
}

/// A fully trimmed stream is absent from `list_streams`; a partly trimmed one stays.
pub async fn list_streams_omits_fully_trimmed_streams<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "a", 1).await;
    let b = append_n(&store, "b", 2).await;
    let c = append_n(&store, "c", 2).await;
    store
        .trim("b", b[1])
        .await
        .unwrap_or_else(|e| panic!("trim b failed: {e}"));
    store
        .trim("c", c[0])
        .await
        .unwrap_or_else(|e| panic!("trim c failed: {e}"));
    assert_eq!(
        list_with(&store, &ListOptions::new()).await,
        strings(&["a", "c"]),
        "b was fully trimmed, c only partly"
    );
}
