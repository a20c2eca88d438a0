//! One public async function per behaviour; each panics with a message when the store breaks it.
//!
//! Every function opens its own store on a fresh table ([`StoreFactory::fresh`]) and uses only the
//! public API. Ids are opaque: every id a test uses comes from an append. A behaviour assumes
//! the capability it is registered with ([`behaviours`]): stores without it skip it, and
//! `capabilities_match_what_the_store_does` checks that they answer `NotSupported` instead.
//!
//! One module per behaviour area; [`behaviours`] lists every function once, with what it needs,
//! and a test checks that the list and the modules agree.

/// Asserts that `$result` is an `Err` matching `$pattern`; the rest is a `format!` context.
macro_rules! assert_err {
    ($result:expr, $pattern:pat if $guard:expr, $($context:tt)+) => {
        match $result {
            Ok(_) => panic!(
                "{}: expected Err({} if {}), got Ok",
                format_args!($($context)+),
                stringify!($pattern),
                stringify!($guard)
            ),
            Err(error) => assert!(
                matches!(error, $pattern if $guard),
                "{}: expected Err({} if {}), got Err({error:?})",
                format_args!($($context)+),
                stringify!($pattern),
                stringify!($guard)
            ),
        }
    };
    ($result:expr, $pattern:pat, $($context:tt)+) => {
        match $result {
            Ok(_) => panic!(
                "{}: expected Err({}), got Ok",
                format_args!($($context)+),
                stringify!($pattern)
            ),
            Err(error) => assert!(
                matches!(error, $pattern),
                "{}: expected Err({}), got Err({error:?})",
                format_args!($($context)+),
                stringify!($pattern)
            ),
        }
    };
}

mod support;

mod append;
mod capabilities;
mod close;
mod concurrency;
mod consumer;
mod cursors_and_health;
mod dedup;
mod expected_version;
mod feed;
mod filter;
mod gap_safety;
mod list;
mod payload;
mod read;
mod rename;
mod replication;
mod search;
mod subscribe;
mod tags_and_annotations;
mod trim;
mod validation;

use super::{Behaviour, Requires, StoreFactory, TransactionalFactory};

/// `behaviour!(module::function, [requirement, …])` for the registry.
macro_rules! behaviour {
    ($module:ident :: $name:ident, [$($requires:ident),*]) => {
        Behaviour {
            name: stringify!($name),
            requires: &[$(Requires::$requires),*],
            run: |factory| Box::pin($module::$name(factory)),
        }
    };
}

/// Every behaviour any store runs, in module order, with what it needs.
pub fn behaviours<F: StoreFactory>() -> Vec<Behaviour<F>> {
    vec![
        behaviour!(append::append_then_read_round_trips_every_field, []),
        behaviour!(append::text_fields_with_punctuation_round_trip, []),
        behaviour!(append::schema_version_is_stored_and_read_back, []),
        behaviour!(append::empty_append_returns_nothing_and_writes_nothing, []),
        behaviour!(append::streams_are_isolated, []),
        behaviour!(append::count_and_stat_describe_the_stream, []),
        behaviour!(append::missing_stream_reads_as_empty, []),
        behaviour!(
            append::append_result_carries_the_next_expected_version,
            [ExpectedVersion]
        ),
        behaviour!(capabilities::capabilities_match_what_the_store_does, []),
        behaviour!(close::closed_store_refuses_every_call, []),
        behaviour!(
            concurrency::concurrent_exact_appends_have_exactly_one_winner,
            [ExpectedVersion]
        ),
        behaviour!(
            concurrency::exact_appends_through_two_handles_have_exactly_one_winner,
            [ExpectedVersion, DatabaseConditions]
        ),
        behaviour!(
            concurrency::concurrent_any_appends_produce_gapless_versions,
            []
        ),
        behaviour!(
            concurrency::concurrent_set_annotations_lose_no_key,
            [Annotations]
        ),
        behaviour!(
            consumer::feed_consumer_resumes_from_its_checkpoint,
            [ChangeFeed, CursorStore]
        ),
        behaviour!(
            cursors_and_health::cursor_store_saves_and_never_moves_back,
            [CursorStore]
        ),
        behaviour!(cursors_and_health::health_is_ok_on_open_store, [Health]),
        behaviour!(
            cursors_and_health::invalid_cursor_names_are_rejected,
            [CursorStore]
        ),
        behaviour!(dedup::duplicate_dedup_key_in_stream_is_skipped, [Dedup]),
        behaviour!(dedup::entries_without_dedup_key_are_all_written, []),
        behaviour!(
            dedup::same_dedup_key_in_two_streams_is_written_to_both,
            [Dedup]
        ),
        behaviour!(dedup::duplicate_dedup_key_in_same_batch_is_skipped, [Dedup]),
        behaviour!(
            dedup::all_duplicate_retry_succeeds_whatever_expected_version,
            [Dedup, ExpectedVersion]
        ),
        behaviour!(
            dedup::concurrent_appends_with_one_dedup_key_write_it_once,
            [Dedup]
        ),
        behaviour!(expected_version::expected_any_always_appends, []),
        behaviour!(
            expected_version::expected_no_stream_conflicts_on_existing_stream,
            [ExpectedVersion]
        ),
        behaviour!(
            expected_version::expected_stream_exists_conflicts_on_new_stream,
            [ExpectedVersion]
        ),
        behaviour!(
            expected_version::expected_exact_version_conflicts_when_different,
            [ExpectedVersion]
        ),
        behaviour!(
            feed::change_feed_records_every_mutation_in_order,
            [ChangeFeed, Tags, Annotations, Trim, Rename]
        ),
        behaviour!(
            feed::change_feed_read_after_position_continues,
            [ChangeFeed]
        ),
        behaviour!(feed::feed_head_is_the_last_readable_position, [ChangeFeed]),
        behaviour!(
            feed::duplicate_only_append_writes_no_feed_record,
            [ChangeFeed, Dedup]
        ),
        behaviour!(filter::read_filters_by_order_key, []),
        behaviour!(filter::read_filters_by_tag, []),
        behaviour!(filter::read_filters_by_all_tags, []),
        behaviour!(filter::read_filters_by_metadata, []),
        behaviour!(filter::read_filters_by_annotation, [Annotations]),
        behaviour!(filter::read_filters_by_created_at_range, []),
        behaviour!(filter::read_filters_combine_with_and, []),
        behaviour!(
            gap_safety::feed_subscriber_sees_every_record_once_under_concurrent_writers,
            [ChangeFeed]
        ),
        behaviour!(
            list::list_streams_is_ascending_and_strictly_after_cursor,
            []
        ),
        behaviour!(list::list_streams_pages_with_limit, []),
        behaviour!(list::list_streams_omits_fully_trimmed_streams, [Trim]),
        behaviour!(payload::payloads_round_trip_exactly, []),
        behaviour!(
            payload::floats_round_trip_with_their_type_value_and_sign,
            []
        ),
        behaviour!(payload::payloads_deeper_than_the_limit_are_refused, []),
        behaviour!(payload::one_mib_payload_round_trips, []),
        behaviour!(payload::ten_thousand_entry_batch_appends_and_counts, []),
        behaviour!(read::read_pages_with_after_cursor, []),
        behaviour!(read::read_descending_returns_newest_first, []),
        behaviour!(read::read_descending_after_cursor_returns_lower_ids, []),
        behaviour!(read::read_after_version_continues_by_version_both_ways, []),
        behaviour!(read::read_all_pages_through_a_whole_stream, []),
        behaviour!(
            read::read_json_returns_what_read_does_with_payloads_as_text,
            []
        ),
        behaviour!(rename::rename_stream_moves_entries_and_version, [Rename]),
        behaviour!(
            rename::rename_of_missing_stream_is_stream_not_found,
            [Rename]
        ),
        behaviour!(
            rename::rename_onto_existing_stream_is_stream_exists,
            [Rename]
        ),
        behaviour!(
            rename::rename_onto_a_fully_trimmed_stream_is_stream_exists,
            [Rename, Trim]
        ),
        behaviour!(
            replication::replicated_records_reproduce_the_source_exactly,
            [Replication, Tags, Annotations, Trim]
        ),
        behaviour!(
            replication::replaying_any_prefix_of_the_feed_changes_nothing,
            [Replication, Tags, Annotations, Trim]
        ),
        behaviour!(
            replication::concurrent_replays_of_one_feed_leave_one_copy,
            [Replication, Tags, Annotations, Trim]
        ),
        behaviour!(
            replication::lanes_and_the_cursor_never_apply_a_record_twice,
            [Replication, Tags, Annotations, Trim]
        ),
        behaviour!(
            replication::lane_applies_refuse_other_lanes_and_renames,
            [Replication]
        ),
        behaviour!(
            replication::replicated_ids_held_by_other_entries_are_refused,
            [Replication]
        ),
        behaviour!(
            replication::the_change_feed_reproduces_the_store_in_a_replica,
            [ChangeFeed, Dedup, Tags, Annotations, Trim, Rename]
        ),
        behaviour!(search::search_finds_case_insensitive_substring, [Search]),
        behaviour!(search::search_respects_filters_and_limit, [Search]),
        behaviour!(
            search::search_treats_percent_and_underscore_literally,
            [Search]
        ),
        behaviour!(
            search::search_matches_string_values_alike_on_every_backend,
            [Search]
        ),
        behaviour!(
            search::search_text_must_not_be_empty_or_contain_nul,
            [Search]
        ),
        behaviour!(subscribe::subscribe_delivers_existing_then_live_entries, []),
        behaviour!(
            subscribe::subscribe_from_middle_version_skips_earlier_entries,
            []
        ),
        behaviour!(
            subscribe::subscribe_feed_delivers_existing_then_live_records,
            [ChangeFeed]
        ),
        behaviour!(
            subscribe::subscriptions_wake_on_the_commit_signal_long_before_polling,
            [CommitSignal]
        ),
        behaviour!(
            tags_and_annotations::set_tags_replaces_tags_and_sets_updated_at,
            [Tags]
        ),
        behaviour!(
            tags_and_annotations::set_annotations_merges_and_none_deletes,
            [Annotations]
        ),
        behaviour!(
            tags_and_annotations::set_tags_on_unknown_entry_is_entry_not_found,
            [Tags]
        ),
        behaviour!(
            tags_and_annotations::set_annotations_on_unknown_entry_is_entry_not_found,
            [Annotations]
        ),
        behaviour!(
            tags_and_annotations::unchanged_tags_and_annotations_write_nothing,
            [Tags, Annotations]
        ),
        behaviour!(trim::trim_deletes_up_to_id_inclusive, [Trim]),
        behaviour!(trim::trim_keeps_stream_version, [Trim, ExpectedVersion]),
        behaviour!(trim::trim_of_unknown_stream_deletes_nothing, [Trim]),
        behaviour!(
            validation::limits_outside_1_to_10000_are_invalid_argument,
            []
        ),
        behaviour!(validation::invalid_table_names_are_rejected, []),
        behaviour!(validation::table_name_of_63_characters_is_accepted, []),
        behaviour!(validation::invalid_stream_names_are_rejected, []),
        behaviour!(
            validation::long_unicode_and_sql_metacharacter_stream_ids_work,
            []
        ),
        behaviour!(
            validation::invalid_inputs_are_rejected_and_nothing_written,
            []
        ),
        behaviour!(
            validation::batch_refused_at_its_last_entry_writes_nothing,
            []
        ),
    ]
}

/// The behaviours that hold an append open in a caller's transaction.
pub fn transactional_behaviours<F: TransactionalFactory>() -> Vec<Behaviour<F>> {
    vec![
        behaviour!(
            gap_safety::feed_is_gap_safe_when_a_later_writer_finishes_first,
            [ChangeFeed]
        ),
        behaviour!(
            rename::rename_racing_a_first_append_to_the_target_is_stream_exists,
            [Rename]
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::MemoryStore;

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

    struct Memory;

    #[async_trait::async_trait]
    impl StoreFactory for Memory {
        type Handle = MemoryStore;
        async fn open(&self, table: &str) -> crate::Result<MemoryStore> {
            Ok(MemoryStore::named(table))
        }
    }

    #[async_trait::async_trait]
    impl TransactionalFactory for Memory {
        async fn open_append(
            &self,
            _: &MemoryStore,
            _: &str,
            _: crate::AppendInput,
        ) -> Box<dyn crate::testkit::OpenAppend> {
            unreachable!("only listed, never run")
        }
    }

    #[test]
    fn the_registry_lists_every_suite_function_once() {
        let listed: Vec<&str> = behaviours::<Memory>()
            .iter()
            .chain(&transactional_behaviours::<Memory>())
            .map(|b| b.name)
            .collect();
        let unique: BTreeSet<String> = listed.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            unique.len(),
            listed.len(),
            "a behaviour is listed twice: {listed:?}"
        );
        assert_eq!(
            unique,
            suite_functions(),
            "the registry and the suite's functions differ"
        );
    }
}
