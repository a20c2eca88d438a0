//! Concurrency.

use super::support::*;

/// Of 16 concurrent appenders expecting the same exact version, exactly one wins; the others
/// get `Conflict` and write nothing.
pub async fn concurrent_exact_appends_have_exactly_one_winner<F: StoreFactory>(factory: &F) {
    const TASKS: u64 = 16;
    let store = factory.fresh().await;
    append_n(&store, "race", 3).await;
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append("race", vec![item(100 + i)], ExpectedVersion::Exact(3))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("appender task panicked") {
            Ok(outcomes) => {
                let written = appended(&outcomes, "winning append");
                assert_eq!(written[0].1, 4, "task {i}: the winner writes version 4");
                winners.push(i);
            }
            Err(Error::Conflict {
                expected, actual, ..
            }) => {
                assert_eq!(
                    expected,
                    ExpectedVersion::Exact(3),
                    "task {i}: conflict's expected"
                );
                assert_eq!(actual, 4, "task {i}: conflict's actual version");
            }
            Err(e) => panic!("task {i}: expected Ok or Conflict, got {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {TASKS} appenders wins: {winners:?}"
    );
    assert_eq!(
        count_of(&store, "race").await,
        4,
        "the stream holds n + 1 entries"
    );
    assert_eq!(
        versions(&read_all(&store, "race").await),
        [1, 2, 3, 4],
        "versions"
    );
}

/// Appenders through two handles opened separately on one table, expecting the same version,
/// have exactly one winner: the database decides, not the handle.
pub async fn exact_appends_through_two_handles_have_exactly_one_winner<F: StoreFactory>(
    factory: &F,
) {
    const TASKS: u64 = 8;
    let table = crate::testkit::fresh_table();
    let mut handles = Vec::new();
    for i in 0..2 {
        let handle = factory
            .open(&table)
            .await
            .unwrap_or_else(|e| panic!("handle {i} on table {table}: {e}"));
        handles.push(handle.as_ref().clone());
    }
    let barrier = Arc::new(Barrier::new(2 * TASKS as usize));
    let tasks: Vec<_> = (0..2 * TASKS)
        .map(|i| {
            let store = handles[(i % 2) as usize].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append("shared", vec![item(i)], ExpectedVersion::NoStream)
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("appender task panicked") {
            Ok(_) => winners.push(i),
            Err(Error::Conflict { .. }) => {}
            Err(e) => panic!("task {i}: expected Ok or Conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one appender wins: {winners:?}");
    for (i, store) in handles.iter().enumerate() {
        assert_eq!(
            versions(&read_all(store, "shared").await),
            [1],
            "handle {i} reads the one winning entry"
        );
    }
}

/// 16 concurrent appenders with `Any`, several batches each, produce versions 1..=N without
/// gaps or duplicates, in id order, each batch contiguous.
pub async fn concurrent_any_appends_produce_gapless_versions<F: StoreFactory>(factory: &F) {
    const TASKS: u64 = 16;
    const ROUNDS: u64 = 4;
    const BATCH: u64 = 2;
    let store = factory.fresh().await;
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut written = Vec::new();
                for round in 0..ROUNDS {
                    let first = (task * ROUNDS + round) * BATCH;
                    let batch = items(first..=first + BATCH - 1);
                    let outcomes = store
                        .append("crowd", batch, ExpectedVersion::Any)
                        .await
                        .unwrap_or_else(|e| panic!("task {task} round {round}: {e}"));
                    written.push(appended(&outcomes, "append with Any"));
                }
                written
            })
        })
        .collect();
    let mut from_outcomes = Vec::new();
    for (task, handle) in tasks.into_iter().enumerate() {
        for batch in handle.await.expect("appender task panicked") {
            let batch_versions: Vec<u64> = batch.iter().map(|(_, v)| *v).collect();
            let contiguous: Vec<u64> = (batch_versions[0]..batch_versions[0] + BATCH).collect();
            assert_eq!(
                batch_versions, contiguous,
                "task {task}: one batch's versions are contiguous"
            );
            from_outcomes.extend(batch);
        }
    }
    let total = TASKS * ROUNDS * BATCH;
    let entries = read_all(&store, "crowd").await;
    assert_eq!(entries.len() as u64, total, "every entry is stored");
    assert_eq!(
        versions(&entries),
        (1..=total).collect::<Vec<_>>(),
        "versions in id order are exactly 1..={total}"
    );
    assert_strictly_ascending(&ids(&entries), "ids in read order");
    from_outcomes.sort();
    let from_read: Vec<_> = entries.iter().map(|e| (e.id, e.version)).collect();
    assert_eq!(
        from_outcomes, from_read,
        "outcomes match the stored entries"
    );
}

/// Concurrent `set_annotations` calls on one entry, each setting its own key, lose no key.
pub async fn concurrent_set_annotations_lose_no_key<F: StoreFactory>(factory: &F) {
    const TASKS: usize = 16;
    let store = factory.fresh().await;
    let id = append_n(&store, "busy", 1).await.remove(0);
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let change = BTreeMap::from([(format!("k{i:02}"), Some(format!("v{i}")))]);
                store.set_annotations("busy", id, change).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        task.await
            .expect("annotating task panicked")
            .unwrap_or_else(|e| panic!("task {i}: set_annotations failed: {e}"));
    }
    let expected: BTreeMap<String, String> = (0..TASKS)
        .map(|i| (format!("k{i:02}"), format!("v{i}")))
        .collect();
    let entries = read_all(&store, "busy").await;
    assert_eq!(entries[0].annotations, expected, "every task's key is kept");
}
