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
//! // or, for a store whose appends can be held open in a caller's transaction
//! // (implement `TransactionalFactory`), with the gap-safety test as well:
//! // ledger_core::conformance_tests!(Sqlite, transactions);
//! ```
//!
//! Backends that need a server find its URL with [`server::server_url`], which fails the test
//! with instructions when no server is configured.
//!
//! [`Capabilities`]: crate::Capabilities

use std::future::Future;

use async_trait::async_trait;

use crate::error::Result;
use crate::store::Store;

mod counting;
pub mod model;
pub mod server;
pub mod suite;

pub use counting::CountingStore;

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

/// An append held open inside a database transaction, for the gap-safety test.
#[async_trait]
pub trait OpenAppend: Send {
    /// Commits the transaction.
    async fn commit(self: Box<Self>);
}

/// A [`StoreFactory`] whose stores let a caller hold an append open in a transaction (the SQL
/// backends' `append_in`). Enables the tests of `conformance_tests!(factory, transactions)`.
#[async_trait]
pub trait TransactionalFactory: StoreFactory {
    /// Appends `input` to `stream` inside a transaction and returns it uncommitted.
    async fn open_append(
        &self,
        store: &Self::Store,
        stream: &str,
        input: crate::AppendInput,
    ) -> Box<dyn OpenAppend>;
}

/// A random table name, unique per call: `t_` followed by 16 random lowercase letters/digits.
pub fn fresh_table() -> String {
    let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("t_{suffix}")
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
/// given an expression whose type implements [`StoreFactory`]. With `, transactions` (for a
/// [`TransactionalFactory`]) it adds the tests that hold a write open in a transaction.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr, transactions) => {
        $crate::conformance_tests!($factory);
        $crate::transactional_conformance_test_list!(conformance_tests { @each $factory });
    };
    ($factory:expr) => {
        $crate::conformance_test_list!(conformance_tests { @each $factory });
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

/// Calls `$crate::$then! { $args; name, … }` with the name of every behaviour of
/// [`suite`] that any store runs, in module order. The one list of them: a test checks that it
/// names every public function of the suite.
#[doc(hidden)]
#[macro_export]
macro_rules! conformance_test_list {
    ($then:ident { $($args:tt)* }) => {
        $crate::$then! { $($args)*;
            append_then_read_round_trips_every_field,
            schema_version_is_stored_and_read_back,
            empty_append_returns_nothing_and_writes_nothing,
            streams_are_isolated,
            count_and_stat_describe_the_stream,
            missing_stream_reads_as_empty,
            duplicate_dedup_key_in_stream_is_skipped,
            entries_without_dedup_key_are_all_written,
            same_dedup_key_in_two_streams_is_written_to_both,
            duplicate_dedup_key_in_same_batch_is_skipped,
            all_duplicate_retry_succeeds_whatever_expected_version,
            concurrent_appends_with_one_dedup_key_write_it_once,
            expected_any_always_appends,
            expected_no_stream_conflicts_on_existing_stream,
            expected_stream_exists_conflicts_on_new_stream,
            expected_exact_version_conflicts_when_different,
            read_pages_with_after_cursor,
            read_descending_returns_newest_first,
            read_descending_after_cursor_returns_lower_ids,
            read_filters_by_order_key,
            read_filters_by_tag,
            read_filters_by_all_tags,
            read_filters_by_metadata,
            read_filters_by_annotation,
            read_filters_by_created_at_range,
            read_filters_combine_with_and,
            trim_deletes_up_to_id_inclusive,
            trim_keeps_stream_version,
            trim_of_unknown_stream_deletes_nothing,
            set_tags_replaces_tags_and_sets_updated_at,
            set_annotations_merges_and_none_deletes,
            set_tags_on_unknown_entry_is_entry_not_found,
            set_annotations_on_unknown_entry_is_entry_not_found,
            unchanged_tags_and_annotations_write_nothing,
            list_streams_is_ascending_and_strictly_after_cursor,
            list_streams_pages_with_limit,
            list_streams_omits_fully_trimmed_streams,
            rename_stream_moves_entries_and_version,
            rename_of_missing_stream_is_stream_not_found,
            rename_onto_existing_stream_is_stream_exists,
            rename_onto_a_fully_trimmed_stream_is_stream_exists,
            closed_store_refuses_every_call,
            concurrent_exact_appends_have_exactly_one_winner,
            concurrent_any_appends_produce_gapless_versions,
            concurrent_set_annotations_lose_no_key,
            limits_outside_1_to_10000_are_invalid_argument,
            invalid_table_names_are_rejected,
            table_name_of_63_characters_is_accepted,
            invalid_stream_names_are_rejected,
            long_unicode_and_sql_metacharacter_stream_ids_work,
            invalid_inputs_are_rejected_and_nothing_written,
            batch_refused_at_its_last_entry_writes_nothing,
            change_feed_records_every_mutation_in_order,
            change_feed_read_after_position_continues,
            duplicate_only_append_writes_no_feed_record,
            subscribe_delivers_existing_then_live_entries,
            subscribe_from_middle_version_skips_earlier_entries,
            subscribe_feed_delivers_existing_then_live_records,
            subscriptions_wake_on_the_commit_signal_long_before_polling,
            payloads_round_trip_exactly,
            floats_round_trip_with_their_type_value_and_sign,
            payloads_deeper_than_the_limit_are_refused,
            one_mib_payload_round_trips,
            ten_thousand_entry_batch_appends_and_counts,
            search_finds_case_insensitive_substring,
            search_respects_filters_and_limit,
            search_treats_percent_and_underscore_literally,
            search_matches_string_values_alike_on_every_backend,
            search_text_must_not_be_empty_or_contain_nul,
            cursor_store_saves_and_never_moves_back,
            health_is_ok_on_open_store,
            invalid_cursor_names_are_rejected,
            feed_subscriber_sees_every_record_once_under_concurrent_writers
        }
    };
}

/// Like [`conformance_test_list!`], for the behaviours that need a [`TransactionalFactory`].
#[doc(hidden)]
#[macro_export]
macro_rules! transactional_conformance_test_list {
    ($then:ident { $($args:tt)* }) => {
        $crate::$then! { $($args)*;
            feed_is_gap_safe_when_a_later_writer_finishes_first,
            rename_racing_a_first_append_to_the_target_is_stream_exists,
        }
    };
}

/// `[$name, …]` as strings, for the test that keeps the lists and the suite in step.
#[cfg(test)]
#[macro_export]
#[doc(hidden)]
macro_rules! conformance_test_names {
    ($(,)?; $($name:ident),* $(,)?) => {
        [$(stringify!($name)),*]
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `pub async fn` of `src/testkit/suite/*.rs`.
    fn suite_functions() -> BTreeSet<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testkit/suite");
        let mut names = BTreeSet::new();
        for file in std::fs::read_dir(dir).expect("the suite's sources are readable") {
            let text = std::fs::read_to_string(file.expect("a directory entry").path())
                .expect("a suite source is readable");
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    let name = rest.split(['<', '(']).next().expect("a function name");
                    names.insert(name.to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn the_instantiated_lists_name_every_suite_function_once() {
        let listed = crate::conformance_test_list!(conformance_test_names {});
        let transactional = crate::transactional_conformance_test_list!(conformance_test_names {});
        let mut all: Vec<String> = listed
            .iter()
            .chain(&transactional)
            .map(|s| s.to_string())
            .collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "a behaviour is listed twice");
        let all: BTreeSet<String> = all.into_iter().collect();
        assert_eq!(
            all,
            suite_functions(),
            "the lists and the suite's functions differ"
        );
    }
}
