//! The conformance suite and model test on PostgreSQL: every test opens its own randomly named
//! table, so the suite can run any number of times against one server.
//!
//! Needs `LEDGER_POSTGRES_URL` (or `cargo xtask services up`); `cargo xtask test` provides it.

use ledger_core::testkit::server::server_url;
use ledger_core::testkit::{OpenAppend, StoreFactory, TransactionalFactory};
use ledger_core::{AppendInput, ExpectedVersion, Result};
use ledger_postgres::PostgresStore;

fn url() -> String {
    server_url("LEDGER_POSTGRES_URL", env!("CARGO_MANIFEST_DIR"))
}

/// Every capability, change feed included.
struct Postgres;

/// The default configuration: no change feed, so feed behaviours must answer `NotSupported`.
struct PostgresWithoutFeed;

#[async_trait::async_trait]
impl StoreFactory for Postgres {
    type Handle = PostgresStore;

    async fn open(&self, table: &str) -> Result<PostgresStore> {
        PostgresStore::builder()
            .table(table)
            .change_feed(true)
            .max_connections(20)
            .connect(&url())
            .await
    }
}

#[async_trait::async_trait]
impl StoreFactory for PostgresWithoutFeed {
    type Handle = PostgresStore;

    async fn open(&self, table: &str) -> Result<PostgresStore> {
        PostgresStore::builder()
            .table(table)
            .max_connections(20)
            .connect(&url())
            .await
    }
}

/// A transaction holding one append (and so the stream's lock and a feed position).
struct OpenPostgresAppend(sqlx::Transaction<'static, sqlx::Postgres>);

#[async_trait::async_trait]
impl OpenAppend for OpenPostgresAppend {
    async fn commit(self: Box<Self>) {
        self.0.commit().await.expect("commit succeeds");
    }
}

#[async_trait::async_trait]
impl TransactionalFactory for Postgres {
    async fn open_append(
        &self,
        store: &PostgresStore,
        stream: &str,
        input: AppendInput,
    ) -> Box<dyn OpenAppend> {
        let mut tx = store.pool().begin().await.unwrap();
        store
            .append_in(&mut tx, stream, vec![input], ExpectedVersion::Any)
            .await
            .expect("append inside the transaction succeeds");
        Box::new(OpenPostgresAppend(tx))
    }
}

ledger_core::conformance_main! {
    with_change_feed: Postgres, transactions;
    without_change_feed: PostgresWithoutFeed;
}
