//! The conformance suite: one public async function per behaviour of the [`Store`] contract,
//! run by every backend through [`conformance_tests!`](crate::conformance_tests).
//!
//! Every test opens a fresh store in a randomly named table ([`fresh_table`]), so the suite can run
//! any number of times against one database. Behaviours a store's [`Capabilities`] mark as absent
//! must answer [`crate::Error::NotSupported`]. The model-based property test ([`model`]) drives
//! random operation sequences against the backend and against [`crate::MemoryStore`] and requires
//! identical observable results.
//!
//! A backend's `tests/conformance.rs` is a few lines:
//!
//! ```ignore
//! struct Sqlite;
//! #[async_trait::async_trait]
//! impl ledger_core::testkit::StoreFactory for Sqlite {
//!     type Store = ledger_sqlite::SqliteStore;
//!     async fn open(&self, table: &str) -> ledger_core::Result<Self::Store> { /* … */ }
//! }
//! ledger_core::conformance_tests!(Sqlite);
//! ```
//!
//! [`Capabilities`]: crate::Capabilities

use std::future::Future;

use async_trait::async_trait;

use crate::error::Result;
use crate::store::Store;

pub mod model;
pub mod suite;

/// Opens stores for the suite.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// The store type under test.
    type Store: Store + Clone + 'static;

    /// Opens (creating if needed) a store on table `table`. Must validate the name like the
    /// backend's public constructor does.
    async fn open(&self, table: &str) -> Result<Self::Store>;

    /// A store on a fresh, randomly named table.
    async fn fresh(&self) -> Self::Store {
        let table = fresh_table();
        match self.open(&table).await {
            Ok(store) => store,
            Err(e) => panic!("cannot open a store on table {table}: {e}"),
        }
    }
}

/// A random table name, unique per call: `t_` followed by 16 random lowercase letters/digits.
pub fn fresh_table() -> String {
    let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("t_{suffix}")
}

/// Runs one async test body on a fresh multi-threaded runtime (2 workers, time enabled).
pub fn run<F: Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime starts")
        .block_on(test)
}

/// Instantiates the whole conformance suite (and the model test) as `#[test]`s for a backend,
/// given an expression whose type implements [`StoreFactory`].
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            // Keep in the order of `testkit::suite`.
            append_and_read,
        );
        #[test]
        fn model_matches_memory_store() {
            $crate::testkit::model::check(&$factory);
        }
    };
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::testkit::run($crate::testkit::suite::$name(&$factory));
            }
        )*
    };
}
