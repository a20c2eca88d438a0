//! The conformance suite and model test on SQLite: every test opens its own randomly named table
//! in one shared database file, so tests also contend for the file like separate processes would.

use std::path::PathBuf;
use std::sync::OnceLock;

use ledger_core::testkit::{OpenAppend, StoreFactory, TransactionalFactory};
use ledger_core::{AppendInput, ExpectedVersion, Result};
use ledger_sqlite::SqliteStore;

/// Every capability, change feed included.
struct Sqlite;

/// The default configuration: no change feed, so feed behaviours must answer `NotSupported`.
struct SqliteWithoutFeed;

fn database() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ledger-sqlite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        dir.join("conformance.db")
    })
}

#[async_trait::async_trait]
impl StoreFactory for Sqlite {
    type Store = SqliteStore;

    async fn open(&self, table: &str) -> Result<SqliteStore> {
        SqliteStore::builder()
            .table(table)
            .change_feed(true)
            .open(database())
            .await
    }
}

#[async_trait::async_trait]
impl StoreFactory for SqliteWithoutFeed {
    type Store = SqliteStore;

    async fn open(&self, table: &str) -> Result<SqliteStore> {
        SqliteStore::builder().table(table).open(database()).await
    }
}

/// A write transaction (`BEGIN IMMEDIATE`) holding one append.
struct OpenSqliteAppend(sqlx::Transaction<'static, sqlx::Sqlite>);

#[async_trait::async_trait]
impl OpenAppend for OpenSqliteAppend {
    async fn commit(self: Box<Self>) {
        self.0.commit().await.expect("commit succeeds");
    }
}

#[async_trait::async_trait]
impl TransactionalFactory for Sqlite {
    async fn open_append(
        &self,
        store: &SqliteStore,
        stream: &str,
        input: AppendInput,
    ) -> Box<dyn OpenAppend> {
        let mut tx = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
        store
            .append_in(&mut tx, stream, vec![input], ExpectedVersion::Any)
            .await
            .expect("append inside the transaction succeeds");
        Box::new(OpenSqliteAppend(tx))
    }
}

mod with_change_feed {
    ledger_core::conformance_tests!(super::Sqlite, transactions);
}

mod without_change_feed {
    ledger_core::conformance_tests!(super::SqliteWithoutFeed);
}
