//! The conformance suite and model test on ClickHouse: on a current engine and on 18.16, the
//! oldest server generation the backend supports. Every test opens its own randomly named
//! table, so the suite can run any number of times against one server.
//!
//! Needs `LEDGER_CLICKHOUSE_URL` (a current ClickHouse) and `LEDGER_CLICKHOUSE_LEGACY_URL`
//! (ClickHouse 18.16), or `cargo xtask services up`; `cargo xtask test` provides both.

use ledger_clickhouse::ClickHouseStore;
use ledger_core::Result;
use ledger_core::testkit::StoreFactory;
use ledger_core::testkit::server::server_url;

/// A ClickHouse server, by the variable naming its URL.
struct Server(&'static str);

#[async_trait::async_trait]
impl StoreFactory for Server {
    type Handle = ClickHouseStore;

    async fn open(&self, table: &str) -> Result<ClickHouseStore> {
        let url = server_url(self.0, env!("CARGO_MANIFEST_DIR"));
        ClickHouseStore::builder().table(table).connect(&url).await
    }
}

ledger_core::conformance_main! {
    current: Server("LEDGER_CLICKHOUSE_URL");
    legacy: Server("LEDGER_CLICKHOUSE_LEGACY_URL");
}
