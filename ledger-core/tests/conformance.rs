//! The conformance suite and model test against the reference `MemoryStore`.

use std::sync::LazyLock;

use ledger_core::testkit::{StoreFactory, Tables};
use ledger_core::{MemoryStore, Result, Store, validate_table_name};

/// The tables opened so far: opening one again is another handle on the same store, as on a
/// database.
static TABLES: LazyLock<Tables<MemoryStore>> = LazyLock::new(Tables::default);

struct Memory;

/// A `MemoryStore` seen through a layer that does nothing: every behaviour must hold through
/// it, so a layer hides no capability and changes no result.
struct Layered;

struct Passthrough;
impl ledger_core::Layer for Passthrough {}

#[async_trait::async_trait]
impl StoreFactory for Memory {
    type Handle = MemoryStore;

    async fn open(&self, table: &str) -> Result<MemoryStore> {
        validate_table_name(table)?;
        TABLES
            .open(table, || async { Ok(MemoryStore::named(table)) })
            .await
    }
}

#[async_trait::async_trait]
impl StoreFactory for Layered {
    type Handle = Store;

    async fn open(&self, table: &str) -> Result<Store> {
        Ok(Memory.open(table).await?.layer(Passthrough))
    }
}

ledger_core::conformance_main! {
    memory: Memory;
    layered: Layered;
}
