//! The conformance suite and model test on SQLite: every test opens its own randomly named table
//! in one shared database file, so tests also contend for the file like separate processes would;
//! also on in-memory databases, and on a pool the caller opened.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use ledger_core::testkit::{OpenAppend, StoreFactory, Tables, TransactionalFactory};
use ledger_core::{AppendInput, ExpectedVersion, Result};
use ledger_sqlite::SqliteStore;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

/// Every capability, change feed included.
struct Sqlite;

/// The default configuration: no change feed, so feed behaviours must answer `NotSupported`.
struct SqliteWithoutFeed;

/// A private in-memory database per store, change feed included.
struct SqliteInMemory;

/// A store on a pool the caller opened on the shared file, change feed included.
struct SqliteWithPool;

/// The directory holding the shared file, removed when the test process exits.
static DIRECTORY: OnceLock<PathBuf> = OnceLock::new();

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn remove_directory() {
    if let Some(dir) = DIRECTORY.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn database() -> PathBuf {
    DIRECTORY
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("ledger-sqlite-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir is writable");
            // SAFETY: registers a plain function that only removes a directory.
            unsafe { atexit(remove_directory) };
            dir
        })
        .join("conformance.db")
}

#[async_trait::async_trait]
impl StoreFactory for Sqlite {
    type Handle = SqliteStore;

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
    type Handle = SqliteStore;

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

#[async_trait::async_trait]
impl StoreFactory for SqliteInMemory {
    type Handle = SqliteStore;

    async fn open(&self, table: &str) -> Result<SqliteStore> {
        // Opening a table again is another handle on its database, as with a file.
        static TABLES: LazyLock<Tables<SqliteStore>> = LazyLock::new(Tables::default);
        TABLES
            .open(table, || {
                SqliteStore::builder()
                    .table(table)
                    .change_feed(true)
                    .open_in_memory()
            })
            .await
    }
}

#[async_trait::async_trait]
impl StoreFactory for SqliteWithPool {
    type Handle = SqliteStore;

    async fn open(&self, table: &str) -> Result<SqliteStore> {
        ledger_core::validate_table_name(table)?;
        let options = SqliteConnectOptions::from_str("sqlite:")
            .expect("options parse")
            .filename(database())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .expect("the caller's pool opens");
        SqliteStore::builder()
            .table(table)
            .change_feed(true)
            .with_pool(pool)
            .await
    }
}

#[async_trait::async_trait]
impl TransactionalFactory for SqliteWithPool {
    async fn open_append(
        &self,
        store: &SqliteStore,
        stream: &str,
        input: AppendInput,
    ) -> Box<dyn OpenAppend> {
        Sqlite.open_append(store, stream, input).await
    }
}

ledger_core::conformance_main! {
    with_change_feed: Sqlite, transactions;
    without_change_feed: SqliteWithoutFeed;
    in_memory: SqliteInMemory;
    with_pool: SqliteWithPool, transactions;
}
