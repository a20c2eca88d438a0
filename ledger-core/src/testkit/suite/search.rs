//! Search.

use super::support::*;

/// Search finds a case-insensitive substring of the payload, in one stream or in all.
pub async fn search_finds_case_insensitive_substring<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let a = append_all(
        &store,
        "search-a",
        vec![
            AppendInput::new(json!({"msg": "Hello World"})),
            AppendInput::new(json!({"msg": "goodbye"})),
        ],
    )
    .await;
    let b = append_all(
        &store,
        "search-b",
        vec![AppendInput::new(json!({"msg": "HELLO there"}))],
    )
    .await;
    let store = &store;
    let run = |stream: Option<&'static str>, text: &'static str| async move {
        store
            .search(stream, text, &ReadOptions::new())
            .await
            .unwrap_or_else(|e| panic!("search {text:?} in {stream:?} failed: {e}"))
    };
    assert_eq!(
        ids(&run(Some("search-a"), "hello").await),
        [a[0]],
        "hello in a"
    );
    assert_eq!(
        ids(&run(Some("search-a"), "WORLD").await),
        [a[0]],
        "WORLD in a"
    );
    assert_eq!(
        ids(&run(Some("search-a"), "lo wo").await),
        [a[0]],
        "lo wo in a"
    );
    assert_eq!(
        ids(&run(Some("search-b"), "hello").await),
        [b[0]],
        "hello in b"
    );
    assert_eq!(
        ids(&run(None, "hElLo").await),
        [a[0], b[0]],
        "hElLo in every stream, ascending by id"
    );
    assert!(run(None, "absent").await.is_empty(), "a word in no payload");
    assert!(
        run(Some("search-c"), "hello").await.is_empty(),
        "a missing stream"
    );
}

/// Search applies filters, cursor, direction and limit like `read`.
pub async fn search_respects_filters_and_limit<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let inputs = (1..=6u64)
        .map(|n| {
            let text = if n == 6 { "pear" } else { "apple" };
            AppendInput::new(json!({"n": n, "fruit": text})).order_key(if n % 2 == 1 {
                "odd"
            } else {
                "even"
            })
        })
        .collect();
    let all = append_all(&store, "search-f", inputs).await;
    append_all(
        &store,
        "search-g",
        vec![AppendInput::new(json!({"n": 7, "fruit": "apple"})).order_key("odd")],
    )
    .await;
    let cases = [
        (Some("search-f"), ReadOptions::new(), vec![1, 2, 3, 4, 5]),
        (
            Some("search-f"),
            ReadOptions::new().order_key("odd"),
            vec![1, 3, 5],
        ),
        (None, ReadOptions::new().order_key("odd"), vec![1, 3, 5, 7]),
        (Some("search-f"), ReadOptions::new().limit(2), vec![1, 2]),
        (None, ReadOptions::new().limit(2), vec![1, 2]),
        (
            Some("search-f"),
            ReadOptions::new().after(all[1]).limit(2),
            vec![3, 4],
        ),
        (
            Some("search-f"),
            ReadOptions::new().descending().limit(2),
            vec![5, 4],
        ),
        (None, ReadOptions::new().descending().limit(2), vec![7, 5]),
        (
            Some("search-f"),
            ReadOptions::new().order_key("none"),
            vec![],
        ),
    ];
    for (stream, options, expected) in cases {
        let found = store
            .search(stream, "APPLE", &options)
            .await
            .unwrap_or_else(|e| panic!("search in {stream:?} with {options:?} failed: {e}"));
        assert_eq!(
            ns(&found),
            expected,
            "search APPLE in {stream:?} with {options:?}"
        );
    }
}

/// `%` and `_` in a search text are literal characters, not wildcards.
pub async fn search_treats_percent_and_underscore_literally<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let texts = ["100% sure", "1000 sure", "snake_case", "snakeXcase"];
    let inputs = texts
        .iter()
        .map(|t| AppendInput::new(json!({ "msg": t })))
        .collect();
    append_all(&store, "search-w", inputs).await;
    let cases = [
        ("100%", vec!["100% sure"]),
        ("%", vec!["100% sure"]),
        ("e_c", vec!["snake_case"]),
        ("_", vec!["snake_case"]),
        ("%_%", vec![]),
    ];
    for (text, expected) in cases {
        let found = store
            .search(Some("search-w"), text, &ReadOptions::new())
            .await
            .unwrap_or_else(|e| panic!("search {text:?} failed: {e}"));
        let msgs: Vec<&str> = found
            .iter()
            .map(|e| e.payload["msg"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(msgs, expected, "search {text:?} must match literally");
    }
}

/// Search looks inside string values only, at any depth, so every backend matches alike: text
/// that spans JSON punctuation, keys, numbers and booleans finds nothing; quotes, backslashes
/// and control characters inside a string are matched as the characters they are; only ASCII
/// letters fold case.
pub async fn search_matches_string_values_alike_on_every_backend<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let payloads = [
        json!({"msg": "he said \"hi\", then left", "n": 1250, "flag": true}),
        json!({"a": 1, "bb": "x", "list": [1, 2]}),
        json!(["Mixed CASE", {"deep": {"deeper": ["needle in a haystack"]}}]),
        json!({"path": "C:\\dir\\file", "tab": "a\tb"}),
        json!({"ünï": "çødé ÄB"}),
    ];
    let inputs = payloads.iter().cloned().map(AppendInput::new).collect();
    let ids_by_payload = append_all(&store, "search-s", inputs).await;
    let cases: [(&str, &[usize]); 20] = [
        ("\"hi\", t", &[0]),
        ("said \"HI\"", &[0]),
        ("\"msg\"", &[]),
        ("msg", &[]),
        ("1250", &[]),
        ("true", &[]),
        (":1", &[]),
        (", \"", &[]),
        ("{\"", &[]),
        ("\"a\":1", &[]),
        ("1,2", &[]),
        ("needle IN", &[2]),
        ("mixed case", &[2]),
        ("x", &[1, 2]),
        ("c:\\dir\\", &[3]),
        ("a\tb", &[3]),
        ("ÄB", &[4]),
        ("äb", &[]),
        ("çøDé", &[4]),
        ("çødÉ", &[]),
    ];
    for (text, expected) in cases {
        let found = store
            .search(Some("search-s"), text, &ReadOptions::new())
            .await
            .unwrap_or_else(|e| panic!("search {text:?} failed: {e}"));
        let want: Vec<_> = expected.iter().map(|&i| ids_by_payload[i]).collect();
        assert_eq!(
            ids(&found),
            want,
            "search {text:?} (expected payloads {expected:?})"
        );
    }
}

/// An empty search text, or one with NUL, is `InvalidArgument`.
pub async fn search_text_must_not_be_empty_or_contain_nul<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "search-e", 1).await;
    for text in ["", "a\u{0000}b"] {
        assert_err!(
            store
                .search(Some("search-e"), text, &ReadOptions::new())
                .await,
            Error::InvalidArgument(_),
            "search text {text:?}"
        );
    }
}
