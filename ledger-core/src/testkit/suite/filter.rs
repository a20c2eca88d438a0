//! Reading: filters.

use super::support::*;
use crate::TimestampPrecision;

/// The order-key filter keeps entries with exactly that order key.
pub async fn read_filters_by_order_key<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "by-order",
        vec![
            item(1).order_key("a"),
            item(2).order_key("b"),
            item(3),
            item(4).order_key("a"),
            item(5).order_key("A"),
        ],
    )
    .await;
    for (key, expected) in [
        ("a", vec![1, 4]),
        ("b", vec![2]),
        ("A", vec![5]),
        ("z", vec![]),
    ] {
        let entries = read_with(&store, "by-order", &ReadOptions::new().order_key(key)).await;
        assert_eq!(ns(&entries), expected, "order_key = {key:?}");
    }
}

/// The tag filter keeps entries carrying that tag.
pub async fn read_filters_by_tag<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "by-tag",
        vec![
            item(1).tag("red"),
            item(2).tag("red").tag("big"),
            item(3).tag("big"),
            item(4),
        ],
    )
    .await;
    for (tag, expected) in [("red", vec![1, 2]), ("big", vec![2, 3]), ("re", vec![])] {
        let entries = read_with(&store, "by-tag", &ReadOptions::new().tag(tag)).await;
        assert_eq!(ns(&entries), expected, "tag = {tag:?}");
    }
}

/// The all-tags filter keeps entries carrying every one of the tags.
pub async fn read_filters_by_all_tags<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "by-tags",
        vec![
            item(1).tag("red"),
            item(2).tag("red").tag("big"),
            item(3).tag("big"),
            item(4).tag("red").tag("big").tag("old"),
        ],
    )
    .await;
    for (wanted, expected) in [
        (vec!["red", "big"], vec![2, 4]),
        (vec!["red"], vec![1, 2, 4]),
        (vec!["big", "old", "red"], vec![4]),
        (vec!["red", "big", "new"], vec![]),
    ] {
        let options = ReadOptions::new().all_tags(wanted.clone());
        let entries = read_with(&store, "by-tags", &options).await;
        assert_eq!(ns(&entries), expected, "all tags {wanted:?}");
    }
}

/// Metadata filters keep entries with the key at exactly that value; several are ANDed.
pub async fn read_filters_by_metadata<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_all(
        &store,
        "by-meta",
        vec![
            item(1).metadata("env", "prod").metadata("region", "eu"),
            item(2).metadata("env", "prod").metadata("region", "us"),
            item(3).metadata("env", "dev").metadata("region", "eu"),
            item(4),
        ],
    )
    .await;
    let cases = [
        (vec![("env", "prod")], vec![1, 2]),
        (vec![("region", "eu")], vec![1, 3]),
        (vec![("env", "prod"), ("region", "eu")], vec![1]),
        (vec![("env", "dev"), ("region", "us")], vec![]),
        (vec![("env", "staging")], vec![]),
        (vec![("region", "prod")], vec![]),
    ];
    for (pairs, expected) in cases {
        let options = pairs
            .iter()
            .fold(ReadOptions::new(), |o, (k, v)| o.metadata(*k, *v));
        let entries = read_with(&store, "by-meta", &options).await;
        assert_eq!(ns(&entries), expected, "metadata filter {pairs:?}");
    }
}

/// Annotation filters keep entries whose annotations (set after append) match; several are ANDed.
pub async fn read_filters_by_annotation<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "by-annotation", 3).await;
    store
        .set_annotations(
            "by-annotation",
            all[0],
            changes(&[("status", Some("done")), ("owner", Some("ann"))]),
        )
        .await
        .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
    store
        .set_annotations(
            "by-annotation",
            all[1],
            changes(&[("status", Some("open"))]),
        )
        .await
        .unwrap_or_else(|e| panic!("set_annotations failed: {e}"));
    let cases = [
        (vec![("status", "done")], vec![1]),
        (vec![("status", "open")], vec![2]),
        (vec![("status", "done"), ("owner", "ann")], vec![1]),
        (vec![("status", "done"), ("owner", "bob")], vec![]),
        (vec![("status", "closed")], vec![]),
    ];
    for (pairs, expected) in cases {
        let options = pairs
            .iter()
            .fold(ReadOptions::new(), |o, (k, v)| o.annotation(*k, *v));
        let entries = read_with(&store, "by-annotation", &options).await;
        assert_eq!(ns(&entries), expected, "annotation filter {pairs:?}");
    }
}

/// The created-at range includes `created_from` and excludes `created_before`.
pub async fn read_filters_by_created_at_range<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    // Apart by more than the store's precision, so each append has a timestamp of its own.
    let apart = match store.capabilities().timestamp_precision {
        TimestampPrecision::Seconds => Duration::from_millis(1005),
        _ => Duration::from_millis(5),
    };
    for n in 1..=4 {
        append_all(&store, "by-time", vec![item(n)]).await;
        tokio::time::sleep(apart).await;
    }
    let entries = read_all(&store, "by-time").await;
    let created: Vec<_> = entries.iter().map(|e| e.created_at).collect();
    assert_strictly_ascending(
        &created,
        "created_at of appends made apart by more than the store's precision (precondition of \
         this test)",
    );
    let cases = [
        (Some(created[1]), None, vec![2, 3, 4]),
        (None, Some(created[2]), vec![1, 2]),
        (Some(created[1]), Some(created[3]), vec![2, 3]),
        (Some(created[2]), Some(created[2]), vec![]),
        (
            Some(created[0]),
            Some(created[3] + TimeDelta::microseconds(1)),
            vec![1, 2, 3, 4],
        ),
    ];
    for (from, before, expected) in cases {
        let mut options = ReadOptions::new();
        options.filter.created_from = from;
        options.filter.created_before = before;
        let got = read_with(&store, "by-time", &options).await;
        assert_eq!(
            ns(&got),
            expected,
            "created_from {from:?} (inclusive), created_before {before:?} (exclusive)"
        );
    }
}

/// Filters of different kinds are ANDed, and combine with cursor, direction and limit.
pub async fn read_filters_combine_with_and<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let inputs = (1..=8u64)
        .map(|n| {
            let mut input = item(n).order_key(if n % 2 == 1 { "odd" } else { "even" });
            if [1, 3, 4, 5, 7].contains(&n) {
                input = input.tag("x");
            }
            if [3, 5, 6, 7].contains(&n) {
                input = input.metadata("m", "1");
            }
            input
        })
        .collect();
    let all = append_all(&store, "combined", inputs).await;
    let filtered = || {
        ReadOptions::new()
            .order_key("odd")
            .tag("x")
            .metadata("m", "1")
    };
    let cases = [
        (filtered(), vec![3, 5, 7]),
        (filtered().limit(2), vec![3, 5]),
        (filtered().after(all[2]), vec![5, 7]),
        (filtered().descending(), vec![7, 5, 3]),
        (filtered().descending().after(all[6]), vec![5, 3]),
        (filtered().all_tags(["x", "y"]), vec![]),
        (filtered().order_key("even"), vec![]),
    ];
    for (options, expected) in cases {
        let got = read_with(&store, "combined", &options).await;
        assert_eq!(ns(&got), expected, "read with {options:?}");
    }
}
