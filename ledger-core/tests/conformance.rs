//! The conformance suite and model test against the reference `MemoryStore`.

use ledger_core::testkit::StoreFactory;
use ledger_core::{MemoryStore, Result, validate_table_name};

struct Memory;

#[async_trait::async_trait]
impl StoreFactory for Memory {
    type Store = MemoryStore;

    async fn open(&self, table: &str) -> Result<MemoryStore> {
        validate_table_name(table)?;
        Ok(MemoryStore::new())
    }
}

ledger_core::conformance_tests!(Memory);
