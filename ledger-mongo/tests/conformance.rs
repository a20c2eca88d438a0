//! The conformance suite and model test on MongoDB: on a replica set (transactions, change
//! streams; with and without the change feed) and on a standalone server (neither). Every test
//! opens its own randomly named collection, so the suite can run any number of times against
//! one server.
//!
//! Needs `LEDGER_MONGODB_URL` (a replica set) and `LEDGER_MONGODB_STANDALONE_URL` (a standalone
//! server), or `cargo xtask services up`; `cargo xtask test` provides both.

use ledger_core::testkit::server::server_url;
use ledger_core::testkit::{OpenAppend, StoreFactory, TransactionalFactory};
use ledger_core::{AppendInput, ExpectedVersion, Result};
use ledger_mongo::MongoStore;

fn replica_set() -> String {
    server_url("LEDGER_MONGODB_URL", env!("CARGO_MANIFEST_DIR"))
}

fn standalone() -> String {
    server_url("LEDGER_MONGODB_STANDALONE_URL", env!("CARGO_MANIFEST_DIR"))
}

/// A replica set with the change feed: every capability.
struct ReplicaSet;

/// A replica set without the change feed, so feed behaviours must answer `NotSupported`.
struct ReplicaSetWithoutFeed;

/// A standalone server: no transactions, so no atomic batches, renames, feed or replication.
struct Standalone;

async fn open(url: &str, collection: &str, change_feed: bool) -> Result<MongoStore> {
    MongoStore::builder()
        .collection(collection)
        .change_feed(change_feed)
        .connect(url)
        .await
}

#[async_trait::async_trait]
impl StoreFactory for ReplicaSet {
    type Handle = MongoStore;

    async fn open(&self, collection: &str) -> Result<MongoStore> {
        open(&replica_set(), collection, true).await
    }
}

#[async_trait::async_trait]
impl StoreFactory for ReplicaSetWithoutFeed {
    type Handle = MongoStore;

    async fn open(&self, collection: &str) -> Result<MongoStore> {
        open(&replica_set(), collection, false).await
    }
}

#[async_trait::async_trait]
impl StoreFactory for Standalone {
    type Handle = MongoStore;

    async fn open(&self, collection: &str) -> Result<MongoStore> {
        open(&standalone(), collection, false).await
    }
}

/// A session whose transaction holds one append (and so a feed position).
struct OpenMongoAppend(mongodb::ClientSession);

#[async_trait::async_trait]
impl OpenAppend for OpenMongoAppend {
    async fn commit(mut self: Box<Self>) {
        self.0.commit_transaction().await.expect("commit succeeds");
    }
}

#[async_trait::async_trait]
impl TransactionalFactory for ReplicaSet {
    async fn open_append(
        &self,
        store: &MongoStore,
        stream: &str,
        input: AppendInput,
    ) -> Box<dyn OpenAppend> {
        let mut session = store.client().start_session().await.unwrap();
        session.start_transaction().await.unwrap();
        store
            .append_in(&mut session, stream, vec![input], ExpectedVersion::Any)
            .await
            .expect("append inside the transaction succeeds");
        Box::new(OpenMongoAppend(session))
    }
}

ledger_core::conformance_main! {
    replica_set: ReplicaSet, transactions;
    replica_set_without_change_feed: ReplicaSetWithoutFeed;
    standalone: Standalone;
}
