//! Reading: cursors and direction.

use super::support::*;

/// Pages of 2 over 5 entries, each continuing after the last id, have sizes 2, 2, 1, 0.
pub async fn read_pages_with_after_cursor<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "pages", 5).await;
    append_n(&store, "pages-other", 3).await;
    let mut cursor = None;
    let mut pages = Vec::new();
    for _ in 0..4 {
        let mut options = ReadOptions::new().limit(2);
        options.after = cursor.clone();
        let page = read_with(&store, "pages", &options).await;
        cursor = page.last().map(|e| e.id.clone()).or(cursor);
        pages.push(ids(&page));
    }
    assert_eq!(
        pages,
        vec![
            all[0..2].to_vec(),
            all[2..4].to_vec(),
            all[4..5].to_vec(),
            Vec::new()
        ],
        "pages of 2 over 5 entries"
    );
}

/// A descending read returns the newest entry first, entry by entry.
pub async fn read_descending_returns_newest_first<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "desc", 5).await;
    let entries = read_with(&store, "desc", &ReadOptions::new().descending()).await;
    assert_eq!(entries.len(), 5, "descending read of 5 entries");
    for (i, entry) in entries.iter().enumerate() {
        let expected = 5 - i as u64;
        assert_eq!(entry.id, all[4 - i], "descending entry {i}: id");
        assert_eq!(entry.version, expected, "descending entry {i}: version");
        assert_eq!(
            entry.payload,
            json!({ "n": expected }),
            "descending entry {i}: payload"
        );
    }
    let newest = read_with(&store, "desc", &ReadOptions::new().descending().limit(2)).await;
    assert_eq!(
        ids(&newest),
        [all[4].clone(), all[3].clone()],
        "descending, limit 2"
    );
}

/// A descending read after a cursor returns the ids below it, newest first.
pub async fn read_descending_after_cursor_returns_lower_ids<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    let all = append_n(&store, "desc-after", 5).await;
    let below = read_with(
        &store,
        "desc-after",
        &ReadOptions::new().descending().after(all[3].clone()),
    )
    .await;
    assert_eq!(
        ids(&below),
        [all[2].clone(), all[1].clone(), all[0].clone()],
        "descending after the 4th id"
    );
    let page = read_with(
        &store,
        "desc-after",
        &ReadOptions::new()
            .descending()
            .after(all[3].clone())
            .limit(2),
    )
    .await;
    assert_eq!(
        ids(&page),
        [all[2].clone(), all[1].clone()],
        "descending after the 4th id, limit 2"
    );
    let none = read_with(
        &store,
        "desc-after",
        &ReadOptions::new().descending().after(all[0].clone()),
    )
    .await;
    assert!(none.is_empty(), "descending after the first id: {none:?}");
}
