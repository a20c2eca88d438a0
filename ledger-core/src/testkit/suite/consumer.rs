//! The checkpointed feed consumer.

use super::support::*;
use crate::FeedConsumer;

/// A consumer hands over the records its filters keep, saves its checkpoint past every record
/// it has seen, resumes from it, delivers a batch again when its handler failed, and follows
/// live records.
pub async fn feed_consumer_resumes_from_its_checkpoint<F: StoreFactory>(factory: &F) {
    let store = factory.fresh().await;
    append_n(&store, "kept", 2).await;
    append_n(&store, "other", 1).await;
    let consumer = FeedConsumer::new(&store, format!("consumer_{}", fresh_table()))
        .expect("a valid cursor name")
        .streams(["kept"])
        .kinds([MutationKind::Append])
        .options(fast_subscription());
    let mut handled = Vec::new();
    let reached = consumer
        .run_once(|records| {
            handled.extend(records);
            async { Ok(()) }
        })
        .await
        .unwrap_or_else(|e| panic!("run_once failed: {e}"));
    let feed = read_feed_from(&store, None, MAX_LIMIT).await;
    assert_eq!(
        reached,
        feed.last().map(|r| r.position),
        "the checkpoint is past every record"
    );
    assert_eq!(
        handled.len(),
        1,
        "one append record of the kept stream: {handled:?}"
    );
    assert!(
        handled.iter().all(|r| r.stream == "kept"),
        "only the kept stream"
    );

    let failed = consumer
        .run_once(|_| async { Err(Error::InvalidArgument("nothing new yet".into())) })
        .await;
    assert!(
        failed.is_ok(),
        "nothing to hand over, so the handler is not called: {failed:?}"
    );

    append_n(&store, "kept", 1).await;
    let failed = consumer
        .run_once(|_| async { Err(Error::InvalidArgument("handler failed".into())) })
        .await;
    assert_err!(
        failed,
        Error::InvalidArgument(_),
        "a failing handler's error is returned"
    );
    let mut again = Vec::new();
    consumer
        .run_once(|records| {
            again.extend(records);
            async { Ok(()) }
        })
        .await
        .unwrap_or_else(|e| panic!("run_once after a failure failed: {e}"));
    assert_eq!(
        again.len(),
        1,
        "the failed batch is delivered again: {again:?}"
    );

    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let live = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            consumer
                .run(|records| {
                    let sent = records.into_iter().try_for_each(|r| sender.send(r));
                    async move { sent.map_err(|_| Error::InvalidArgument("receiver gone".into())) }
                })
                .await
        })
    };
    let id = append_all(&store, "kept", vec![item(9)]).await[0];
    let record = tokio::time::timeout(ITEM_TIMEOUT, received.recv())
        .await
        .expect("the running consumer hands over a live record")
        .expect("a record");
    assert!(
        matches!(&record.mutation, Mutation::Append { entries, .. } if entries[0].id == id),
        "the live append: {record:?}"
    );
    live.abort();
}
