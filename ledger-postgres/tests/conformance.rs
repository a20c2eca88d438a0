//! The conformance suite and model test on PostgreSQL: every test opens its own randomly named
//! table, so the suite can run any number of times against one server.
//!
//! Needs `LEDGER_POSTGRES_URL` (or `cargo xtask services up`); `cargo xtask test` provides it.

use ledger_core::Result;
use ledger_core::testkit::StoreFactory;
use ledger_core::testkit::server::server_url;
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
    type Store = PostgresStore;

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
    type Store = PostgresStore;

    async fn open(&self, table: &str) -> Result<PostgresStore> {
        PostgresStore::builder()
            .table(table)
            .max_connections(20)
            .connect(&url())
            .await
    }
}

mod with_change_feed {
    ledger_core::conformance_tests!(super::Postgres);
}

mod without_change_feed {
    ledger_core::conformance_tests!(super::PostgresWithoutFeed);
}
