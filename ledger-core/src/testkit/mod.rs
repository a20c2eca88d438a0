//! The conformance suite: one public async function per behaviour of the [`Store`] contract,
//! run by every backend through [`conformance_main!`](crate::conformance_main).
//!
//! Every behaviour opens a fresh store in a randomly named table ([`fresh_table`]), so the suite
//! can run any number of times against one database. Each behaviour names the capability it
//! needs ([`Requires`]); on a store whose [`Capabilities`] lack it, the
//! behaviour is reported as skipped, with the reason, in the test output (never as passed), and
//! the behaviour `capabilities_match_what_the_store_does` checks that every operation the store
//! lacks answers [`crate::Error::NotSupported`]. The model-based property test ([`model`]) drives
//! random operation sequences against the backend and against [`crate::MemoryStore`] and
//! requires identical observable results.
//!
//! A backend's `tests/conformance.rs` (with `harness = false` for it in `Cargo.toml`) is a few
//! lines:
//!
//! ```ignore
//! struct Sqlite;
//! #[async_trait::async_trait]
//! impl ledger_core::testkit::StoreFactory for Sqlite {
//!     type Handle = ledger_sqlite::SqliteStore;
//!     async fn open(&self, table: &str) -> ledger_core::Result<Self::Handle> { /* … */ }
//! }
//! ledger_core::conformance_main! {
//!     sqlite: Sqlite;
//!     // a store whose appends can be held open in a caller's transaction (implement
//!     // `TransactionalFactory`) also runs the behaviours that need one:
//!     // sqlite: Sqlite, transactions;
//! }
//! ```
//!
//! Backends that need a server find its URL with [`server::server_url`], which fails the run
//! with instructions when no server is configured.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::future::LocalBoxFuture;

use crate::capabilities::Capabilities;
use crate::error::Result;
use crate::layer::{Call, Layer, Operation, Outcome};
use crate::store::Store;

pub mod containers;
pub mod model;
pub mod server;
pub mod suite;

#[doc(hidden)]
pub use libtest_mimic;

/// Opens stores for the suite.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// The backend's own handle (with its backend-specific methods), which is a [`Store`].
    type Handle: AsRef<Store> + Clone + Send + Sync + 'static;

    /// Opens (creating if needed) a store on table `table`. Must validate the name like the
    /// backend's public constructor does.
    async fn open(&self, table: &str) -> Result<Self::Handle>;

    /// A handle on a fresh, randomly named table.
    async fn fresh_handle(&self) -> Self::Handle {
        let table = fresh_table();
        match self.open(&table).await {
            Ok(store) => store,
            Err(e) => panic!("cannot open a store on table {table}: {e}"),
        }
    }

    /// A store on a fresh, randomly named table.
    async fn fresh(&self) -> Store {
        self.fresh_handle().await.as_ref().clone()
    }
}

/// The handles a factory whose stores live in the process (in memory) has opened, by table:
/// opening a table again gives another handle on the same store, as a database server does.
pub struct Tables<H>(tokio::sync::Mutex<std::collections::HashMap<String, H>>);

impl<H> Default for Tables<H> {
    fn default() -> Self {
        Tables(Default::default())
    }
}

impl<H: Clone> Tables<H> {
    /// The handle opened on `table` before, else the one `open` opens (and keeps).
    pub async fn open<Fut>(&self, table: &str, open: impl FnOnce() -> Fut) -> Result<H>
    where
        Fut: Future<Output = Result<H>>,
    {
        let mut tables = self.0.lock().await;
        if let Some(handle) = tables.get(table) {
            return Ok(handle.clone());
        }
        let handle = open().await?;
        tables.insert(table.to_owned(), handle.clone());
        Ok(handle)
    }
}

/// An append held open inside a database transaction, for the gap-safety test.
#[async_trait]
pub trait OpenAppend: Send {
    /// Commits the transaction.
    async fn commit(self: Box<Self>);
}

/// A [`StoreFactory`] whose stores let a caller hold an append open in a transaction (the SQL
/// backends' `append_in`). Enables the behaviours of [`suite::transactional_behaviours`].
#[async_trait]
pub trait TransactionalFactory: StoreFactory {
    /// Appends `input` to `stream` inside a transaction and returns it uncommitted.
    async fn open_append(
        &self,
        store: &Self::Handle,
        stream: &str,
        input: crate::AppendInput,
    ) -> Box<dyn OpenAppend>;
}

/// What a behaviour needs of a store to apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Requires {
    /// Any store.
    Nothing,
    /// [`Capabilities::expected_version`].
    ExpectedVersion,
    /// [`Capabilities::dedup`].
    Dedup,
    /// Write conditions decided by the database ([`crate::Conditions::Database`]), so they
    /// hold across store handles.
    DatabaseConditions,
    /// [`Capabilities::atomic_append`].
    AtomicAppend,
    /// [`Capabilities::tags`].
    Tags,
    /// [`Capabilities::annotations`].
    Annotations,
    /// [`Capabilities::trim`].
    Trim,
    /// [`Capabilities::rename`].
    Rename,
    /// Substring search ([`Capabilities::search`]).
    Search,
    /// [`Capabilities::change_feed`].
    ChangeFeed,
    /// [`Capabilities::cursor_store`].
    CursorStore,
    /// [`Capabilities::health`].
    Health,
    /// [`Capabilities::replication`].
    Replication,
    /// A commit signal ([`Store::commits`]) that wakes subscriptions.
    CommitSignal,
}

impl Requires {
    /// Why a store with `caps` (and a commit signal or not) is skipped; `None` if it applies.
    pub fn unmet(self, caps: &Capabilities, commit_signal: bool) -> Option<&'static str> {
        let (met, reason) = match self {
            Requires::Nothing => (true, ""),
            Requires::ExpectedVersion => (caps.expected_version, "no expected-version checks"),
            Requires::Dedup => (caps.dedup, "no dedup"),
            Requires::DatabaseConditions => (
                caps.conditions == crate::Conditions::Database,
                "write conditions hold within one store handle only",
            ),
            Requires::AtomicAppend => (caps.atomic_append, "appends are not atomic"),
            Requires::Tags => (caps.tags, "no tags"),
            Requires::Annotations => (caps.annotations, "no annotations"),
            Requires::Trim => (caps.trim, "no trim"),
            Requires::Rename => (caps.rename, "no rename"),
            Requires::Search => (caps.search.substring, "no substring search"),
            Requires::ChangeFeed => (caps.change_feed.is_some(), "no change feed"),
            Requires::CursorStore => (caps.cursor_store, "no cursor store"),
            Requires::Health => (caps.health, "no health check"),
            Requires::Replication => (caps.replication.is_some(), "no replication"),
            Requires::CommitSignal => (commit_signal, "no commit signal (polling only)"),
        };
        (!met).then_some(reason)
    }
}

/// One behaviour of the suite, ready to run against a factory's stores.
pub struct Behaviour<F> {
    /// The behaviour's name: its function in [`suite`].
    pub name: &'static str,
    /// What a store needs for it to apply (all of these).
    pub requires: &'static [Requires],
    /// Runs it (panics when the store breaks it).
    pub run: for<'a> fn(&'a F) -> LocalBoxFuture<'a, ()>,
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
    runtime().block_on(test)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime starts")
}

/// The trials of one configuration: every behaviour (with the transactional ones when
/// `transactional` lists them), named `{prefix}::{behaviour}`, the excluded ones marked
/// skipped with their reason, and the model test.
pub fn trials<F: StoreFactory>(
    prefix: &str,
    factory: F,
    transactional: Vec<Behaviour<F>>,
) -> Vec<libtest_mimic::Trial> {
    let factory = Arc::new(factory);
    // What the store offers decides what applies: ask a real one.
    let (caps, commit_signal) = runtime().block_on(async {
        let probe = factory.fresh().await;
        let found = (probe.capabilities(), probe.commits().is_some());
        let _ = probe.close().await;
        found
    });
    let mut trials = Vec::new();
    for behaviour in suite::behaviours::<F>().into_iter().chain(transactional) {
        let name = format!("{prefix}::{}", behaviour.name);
        let factory = factory.clone();
        let trial = libtest_mimic::Trial::test(name, move || {
            run((behaviour.run)(&factory));
            Ok(())
        });
        let unmet = behaviour
            .requires
            .iter()
            .find_map(|r| r.unmet(&caps, commit_signal));
        trials.push(match unmet {
            None => trial,
            Some(reason) => trial
                .with_ignored_flag(true)
                .with_kind(format!("skipped: {reason}")),
        });
    }
    let model_factory = factory.clone();
    trials.push(libtest_mimic::Trial::test(
        format!("{prefix}::model_matches_memory_store"),
        move || {
            model::check(model_factory.as_ref());
            Ok(())
        },
    ));
    trials
}

/// The `main` of a backend's conformance test (with `harness = false`): every behaviour of the
/// suite, and the model test, for each configuration listed as `name: factory` (add
/// `, transactions` for a [`TransactionalFactory`]). Behaviours a configuration's capabilities
/// exclude are reported as ignored, with `[skipped: reason]` beside their name.
#[macro_export]
macro_rules! conformance_main {
    ($($name:ident : $factory:expr $(, $transactions:ident)?);+ $(;)?) => {
        fn main() -> std::process::ExitCode {
            let arguments = $crate::testkit::libtest_mimic::Arguments::from_args();
            let mut trials = Vec::new();
            $(
                trials.extend($crate::testkit::trials(
                    stringify!($name),
                    $factory,
                    $crate::conformance_main!(@transactional $($transactions)?),
                ));
            )+
            $crate::testkit::libtest_mimic::run(&arguments, trials).exit_code()
        }
    };
    (@transactional transactions) => { $crate::testkit::suite::transactional_behaviours() };
    (@transactional) => { Vec::new() };
}

/// Requires a subscription's next item to be an error of kind
/// [`crate::BackendErrorKind::Corrupt`] and the subscription to end after it: what a consumer must
/// see of stored data that cannot be read back, instead of a subscription that retries forever.
pub async fn assert_ends_with_corrupt_data<T, St>(subscription: &mut St)
where
    T: std::fmt::Debug,
    St: futures::Stream<Item = Result<T>> + Unpin,
{
    use futures::StreamExt;
    let wait = std::time::Duration::from_secs(5);
    let next = tokio::time::timeout(wait, subscription.next())
        .await
        .expect("the subscription reports corrupt data within 5 s instead of retrying")
        .expect("the subscription yields an item");
    match next {
        Err(error) => assert_eq!(
            error.backend_kind(),
            Some(crate::BackendErrorKind::Corrupt),
            "expected corrupt data, got {error}"
        ),
        Ok(item) => panic!("expected an error for corrupt data, got {item:?}"),
    }
    let end = tokio::time::timeout(wait, subscription.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "the error must end the subscription, got {end:?}"
    );
}

/// Counts the reads (`read` and `read_feed`) made through a store, so a test can wait until a
/// subscription has read, and found nothing, before it writes: the write can then reach the
/// subscription only through a wake-up, never through a read already under way.
#[derive(Clone, Default)]
pub struct ReadCounter {
    reads: Arc<AtomicU64>,
    changed: Arc<tokio::sync::Notify>,
}

impl ReadCounter {
    /// `store` seen through a new counter, and the counter.
    pub fn wrap(store: &Store) -> (Store, ReadCounter) {
        let counter = ReadCounter::default();
        (store.layer(counter.clone()), counter)
    }

    /// Reads completed so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Acquire)
    }

    /// Waits until at least `n` reads have completed.
    pub async fn reads_reach(&self, n: u64) {
        loop {
            let notified = self.changed.notified();
            if self.reads() >= n {
                return;
            }
            notified.await;
        }
    }
}

impl Layer for ReadCounter {
    fn finished(&self, call: &Call<'_>, _: &Outcome<'_>) {
        if matches!(call.operation, Operation::Read | Operation::ReadFeed) {
            self.reads.fetch_add(1, Ordering::AcqRel);
            self.changed.notify_waiters();
        }
    }
}
