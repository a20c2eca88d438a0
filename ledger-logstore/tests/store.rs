//! Every log-store operation, on SQLite and on PostgreSQL.

mod support;

use ledger_readmodel::on_both;

use std::collections::BTreeSet;

use chrono::Duration;
use ledger_logstore::{
    Accepted, BucketValues, Error, HistogramKind, Log, LogStatus, LogStoreOptions, LogUpdate,
    LogWriter, Order, Pagination, SearchFilters, SortBy, WhenFull, WriterOptions,
};
use serde_json::json;
use support::{chat, noon, open, open_with};

fn ids(logs: &[Log]) -> Vec<String> {
    logs.iter().map(|l| l.id.clone()).collect()
}

async fn search_ids(store: &ledger_logstore::LogStore, filters: SearchFilters) -> BTreeSet<String> {
    let page = Pagination {
        limit: 1000,
        ..Pagination::default()
    };
    let result = store.search(&filters, &page).await.expect("search");
    assert_eq!(
        result.pagination.total_count as usize,
        result.logs.len(),
        "the count agrees with the page"
    );
    result.logs.into_iter().map(|l| l.id).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

on_both!(a_created_log_is_found_whole_by_id, |backend| {
    let store = open(backend).await;
    let log = chat("a", 0);
    store.create(log.clone()).await.unwrap();
    let found = store.find_by_id("a").await.unwrap();
    assert_eq!(found.content, log.content, "content comes back whole");
    assert_eq!(found.latency, log.latency);
    assert!(found.created_at.is_some(), "the store sets created_at");
    assert!(matches!(store.find_by_id("nope").await, Err(Error::NotFound(id)) if id == "nope"));
});

on_both!(
    a_second_create_of_an_id_is_a_duplicate_and_keeps_the_first,
    |backend| {
        let store = open(backend).await;
        store.create(chat("a", 0)).await.unwrap();
        let mut other = chat("a", 5);
        other.model = "other".into();
        assert!(
            matches!(store.create(other.clone()).await, Err(Error::Duplicate(id)) if id == "a")
        );
        assert!(!store.create_if_not_exists(other).await.unwrap());
        assert_eq!(store.find_by_id("a").await.unwrap().model, "gpt-4o");
        let stored = store
            .batch_create_if_not_exists(vec![
                chat("a", 1),
                chat("b", 1),
                chat("c", 2),
                chat("b", 3),
            ])
            .await
            .unwrap();
        assert_eq!(stored, 2, "b and c are new, a and the second b are not");
        assert_eq!(
            search_ids(&store, SearchFilters::new()).await,
            set(&["a", "b", "c"])
        );
    }
);

on_both!(an_update_finishes_a_processing_log, |backend| {
    let store = open(backend).await;
    let mut log = chat("s", 0);
    log.status = LogStatus::Processing;
    log.latency = None;
    log.content.output_message = None;
    store.create(log).await.unwrap();
    let changes = LogUpdate::new()
        .status(LogStatus::Success)
        .latency(950.0)
        .output_message(json!({"role": "assistant", "content": "streamed answer"}))
        .set("stream", true);
    store.update("s", changes).await.unwrap();
    let found = store.find_by_id("s").await.unwrap();
    assert_eq!(
        (found.status, found.latency, found.stream),
        (LogStatus::Success, Some(950.0), true)
    );
    let filters = SearchFilters {
        content_search: Some("STREAMED answer".into()),
        ..SearchFilters::new()
    };
    assert_eq!(
        search_ids(&store, filters).await,
        set(&["s"]),
        "the new content is searchable"
    );

    let missing = store.update("nope", LogUpdate::new().latency(1.0)).await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    let bad = store
        .update("s", LogUpdate::new().set("latency", "slow"))
        .await;
    assert!(matches!(bad, Err(Error::Invalid { .. })), "{bad:?}");
    assert_eq!(
        store.find_by_id("s").await.unwrap().latency,
        Some(950.0),
        "a refused update changes nothing"
    );
});

on_both!(
    every_search_filter_narrows_to_the_logs_it_names,
    |backend| {
        let store = open(backend).await;
        let mut logs = Vec::new();
        for i in 0..6 {
            logs.push(chat(&format!("l{i}"), i * 10));
        }
        logs[1].provider = "anthropic".into();
        logs[1].model = "claude".into();
        logs[2].status = LogStatus::Error;
        logs[2].cost = None;
        logs[3].object = "embedding".into();
        logs[3].selected_key_id = Some("key-1".into());
        logs[3].virtual_key_id = Some("vk-1".into());
        logs[4].routing_rule_id = Some("rule-1".into());
        logs[4].routing_engines_used = vec!["loadbalancer".into(), "governance".into()];
        logs[5].metadata.insert("team".into(), json!("search"));
        logs[5].metadata.insert("beta".into(), json!(true));
        logs[5].cost = Some(0.0);
        logs[0].content.output_message = Some(json!({"content": "The 100% answer_"}));
        store.batch_create_if_not_exists(logs).await.unwrap();

        let f = SearchFilters::new;
        let cases: Vec<(SearchFilters, &[&str])> = vec![
            (
                SearchFilters {
                    providers: vec!["anthropic".into()],
                    ..f()
                },
                &["l1"],
            ),
            (
                SearchFilters {
                    models: vec!["claude".into(), "gpt-4o".into()],
                    ..f()
                },
                &["l0", "l1", "l2", "l3", "l4", "l5"],
            ),
            (
                SearchFilters {
                    status: vec![LogStatus::Error],
                    ..f()
                },
                &["l2"],
            ),
            (
                SearchFilters {
                    objects: vec!["embedding".into()],
                    ..f()
                },
                &["l3"],
            ),
            (
                SearchFilters {
                    selected_key_ids: vec!["key-1".into()],
                    ..f()
                },
                &["l3"],
            ),
            (
                SearchFilters {
                    virtual_key_ids: vec!["vk-1".into()],
                    ..f()
                },
                &["l3"],
            ),
            (
                SearchFilters {
                    routing_rule_ids: vec!["rule-1".into()],
                    ..f()
                },
                &["l4"],
            ),
            (
                SearchFilters {
                    routing_engine_used: vec!["governance".into(), "x".into()],
                    ..f()
                },
                &["l4"],
            ),
            (
                SearchFilters {
                    routing_engine_used: vec!["balance".into()],
                    ..f()
                },
                &[],
            ),
            (
                SearchFilters {
                    start_time: Some(noon() + Duration::minutes(10)),
                    end_time: Some(noon() + Duration::minutes(30)),
                    ..f()
                },
                &["l1", "l2", "l3"],
            ),
            (
                SearchFilters {
                    min_latency: Some(120.0),
                    max_latency: Some(140.0),
                    ..f()
                },
                &["l2", "l3", "l4"],
            ),
            (
                SearchFilters {
                    min_cost: Some(0.02),
                    ..f()
                },
                &["l3", "l4"],
            ),
            (
                SearchFilters {
                    min_tokens: Some(15),
                    max_tokens: Some(15),
                    ..f()
                },
                &["l0", "l1", "l2", "l3", "l4", "l5"],
            ),
            (
                SearchFilters {
                    max_tokens: Some(14),
                    ..f()
                },
                &[],
            ),
            (
                SearchFilters {
                    missing_cost_only: true,
                    ..f()
                },
                &["l5"],
            ),
            (
                SearchFilters {
                    content_search: Some("100% ANSWER_".into()),
                    ..f()
                },
                &["l0"],
            ),
            (
                SearchFilters {
                    content_search: Some("question number l4".into()),
                    ..f()
                },
                &["l4"],
            ),
            (
                SearchFilters {
                    content_search: Some("10_% answer".into()),
                    ..f()
                },
                &[],
            ),
            (
                SearchFilters {
                    metadata_filters: [("team".to_string(), "search".to_string())].into(),
                    ..f()
                },
                &["l5"],
            ),
            (
                SearchFilters {
                    metadata_filters: [("beta".to_string(), "true".to_string())].into(),
                    ..f()
                },
                &["l5"],
            ),
            (
                SearchFilters {
                    metadata_filters: [("team".to_string(), "other".to_string())].into(),
                    ..f()
                },
                &[],
            ),
        ];
        for (filters, expected) in cases {
            assert_eq!(
                search_ids(&store, filters.clone()).await,
                set(expected),
                "{filters:?}"
            );
        }
    }
);

on_both!(
    pages_in_every_order_cover_each_log_once_and_the_count_agrees_across_days,
    |backend| {
        let store = open(backend).await;
        // 150 logs over three days; equal latencies and costs, so ties need the id to break them.
        let logs: Vec<Log> = (0..150)
            .map(|i| {
                let mut log = chat(&format!("p{i:03}"), i * 29);
                log.latency = Some((i % 7) as f64);
                log.cost = if i % 5 == 0 {
                    None
                } else {
                    Some((i % 3) as f64)
                };
                log
            })
            .collect();
        store.batch_create_if_not_exists(logs).await.unwrap();
        let filters = SearchFilters {
            start_time: Some(noon() + Duration::hours(11)),
            end_time: Some(noon() + Duration::hours(60)),
            ..SearchFilters::new()
        };
        let expected = search_ids(&store, filters.clone()).await;
        assert!(
            expected.len() > 90 && expected.len() < 150,
            "{}",
            expected.len()
        );
        for sort_by in [
            SortBy::Timestamp,
            SortBy::Latency,
            SortBy::Tokens,
            SortBy::Cost,
        ] {
            for order in [Order::Asc, Order::Desc] {
                let mut seen = Vec::new();
                let mut offset = 0;
                loop {
                    let page = Pagination {
                        limit: 17,
                        offset,
                        sort_by,
                        order,
                    };
                    let result = store.search(&filters, &page).await.unwrap();
                    assert_eq!(result.pagination.total_count as usize, expected.len());
                    if result.logs.is_empty() {
                        break;
                    }
                    seen.extend(ids(&result.logs));
                    offset += 17;
                }
                let distinct: BTreeSet<String> = seen.iter().cloned().collect();
                assert_eq!(
                    distinct.len(),
                    seen.len(),
                    "no log on two pages ({sort_by:?} {order:?})"
                );
                assert_eq!(distinct, expected, "{sort_by:?} {order:?}");
            }
        }
        let newest = store
            .search(
                &SearchFilters::new(),
                &Pagination {
                    limit: 1,
                    ..Pagination::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(ids(&newest.logs), ["p149"], "default order: newest first");
        assert_eq!(
            newest.logs[0].content.output_message, None,
            "list pages leave content out"
        );
        assert_eq!(
            newest.logs[0].content.input_history,
            Some(json!([{"role": "user", "content": "question number p149"}]))
        );
        let empty = store
            .search(
                &SearchFilters {
                    models: vec!["none".into()],
                    ..SearchFilters::new()
                },
                &Pagination::default(),
            )
            .await
            .unwrap();
        assert!(
            empty.logs.is_empty() && empty.has_logs,
            "no match, but the store has logs"
        );
    }
);

on_both!(stats_sum_the_finished_logs, |backend| {
    let store = open(backend).await;
    let mut logs = vec![chat("a", 0), chat("b", 1), chat("c", 2), chat("d", 3)];
    logs[2].status = LogStatus::Error;
    logs[3].status = LogStatus::Processing;
    store.batch_create_if_not_exists(logs).await.unwrap();
    let stats = store.stats(&SearchFilters::new()).await.unwrap();
    assert_eq!(stats.total_requests, 4, "processing logs count as requests");
    assert!((stats.success_rate - 200.0 / 3.0).abs() < 1e-9, "{stats:?}");
    assert!((stats.average_latency - 101.0).abs() < 1e-9, "{stats:?}");
    assert_eq!(stats.total_tokens, 45);
    assert!((stats.total_cost - 0.006).abs() < 1e-9, "{stats:?}");
    let none = store
        .stats(&SearchFilters {
            models: vec!["x".into()],
            ..SearchFilters::new()
        })
        .await
        .unwrap();
    assert_eq!(
        (none.total_requests, none.success_rate, none.total_tokens),
        (0, 0.0, 0)
    );
});

on_both!(
    histograms_fill_empty_buckets_and_split_by_model_and_provider,
    |backend| {
        let store = open(backend).await;
        let mut logs = vec![chat("a", 0), chat("b", 5), chat("c", 130), chat("d", 131)];
        logs[1].status = LogStatus::Error;
        logs[2].model = "mini".into();
        logs[3].provider = "anthropic".into();
        logs[3].status = LogStatus::Processing;
        store.batch_create_if_not_exists(logs).await.unwrap();
        let filters = SearchFilters {
            start_time: Some(noon() - Duration::minutes(30)),
            end_time: Some(noon() + Duration::hours(3)),
            ..SearchFilters::new()
        };
        let h = store
            .histogram(HistogramKind::Requests, &filters, 3600)
            .await
            .unwrap();
        let counts: Vec<(String, u64, u64, u64)> = h
            .buckets
            .iter()
            .map(|b| match b.values {
                BucketValues::Requests {
                    count,
                    success,
                    error,
                } => (b.timestamp.format("%H").to_string(), count, success, error),
                ref other => panic!("{other:?}"),
            })
            .collect();
        let expected = [
            ("11", 0, 0, 0),
            ("12", 2, 1, 1),
            ("13", 0, 0, 0),
            ("14", 1, 1, 0),
            ("15", 0, 0, 0),
        ];
        assert_eq!(
            counts,
            expected.map(|(h, c, s, e)| (h.to_string(), c, s, e)),
            "processing logs are left out"
        );

        let models = store
            .histogram(HistogramKind::Models, &filters, 3600)
            .await
            .unwrap();
        assert_eq!(
            models.models,
            Some(vec!["gpt-4o".to_string(), "mini".to_string()])
        );
        let cost = store
            .histogram(HistogramKind::ProviderCost, &SearchFilters::new(), 3600)
            .await
            .unwrap();
        assert_eq!(cost.providers, Some(vec!["openai".to_string()]));
        assert_eq!(
            cost.buckets.len(),
            2,
            "without a range only non-empty buckets"
        );

        let latency = store
            .histogram(HistogramKind::Latency, &SearchFilters::new(), 86_400)
            .await
            .unwrap();
        let BucketValues::Latency(l) = latency.buckets[0].values else {
            panic!()
        };
        assert_eq!(l.total_requests, 3);
        assert!(
            (l.avg_latency - (100.0 + 105.0 + 230.0) / 3.0).abs() < 1e-9,
            "{l:?}"
        );
        assert!(
            (l.p90_latency - (105.0 + 0.8 * 125.0)).abs() < 1e-9,
            "{l:?}"
        );

        let tokens = store
            .histogram(HistogramKind::Tokens, &SearchFilters::new(), 86_400)
            .await
            .unwrap();
        let BucketValues::Tokens(t) = tokens.buckets[0].values else {
            panic!()
        };
        assert_eq!((t.prompt_tokens, t.total_tokens), (30, 45));

        let bad = store.histogram(HistogramKind::Requests, &filters, 0).await;
        assert!(
            matches!(bad, Err(Error::Invalid { ref field, .. }) if field == "bucket_size_seconds"),
            "{bad:?}"
        );
        let wide = SearchFilters {
            start_time: Some(noon() - Duration::days(3650)),
            ..filters
        };
        let bad = store.histogram(HistogramKind::Requests, &wide, 60).await;
        assert!(
            matches!(bad, Err(Error::Invalid { .. })),
            "too many buckets: {bad:?}"
        );
    }
);

on_both!(filter_data_lists_the_recent_distinct_values, |backend| {
    let store = open(backend).await;
    let now = chrono::Utc::now();
    let mut recent = chat("r", 0);
    recent.timestamp = now;
    recent.selected_key_id = Some("k1".into());
    recent.selected_key_name = Some("Primary".into());
    recent.metadata.insert("team".into(), json!("infra"));
    recent.routing_engines_used = vec!["loadbalancer".into()];
    let mut old = chat("o", 0);
    old.timestamp = now - Duration::days(45);
    old.model = "ancient".into();
    store
        .batch_create_if_not_exists(vec![recent, old])
        .await
        .unwrap();
    let data = store.filter_data().await.unwrap();
    assert_eq!(
        data.models,
        ["gpt-4o"],
        "models seen over 30 days ago are left out"
    );
    assert_eq!(data.providers, ["openai"]);
    assert_eq!(data.selected_keys.len(), 1);
    assert_eq!(data.selected_keys[0].name.as_deref(), Some("Primary"));
    assert_eq!(data.routing_engines, ["loadbalancer"]);
    assert_eq!(
        data.metadata_keys.get("team"),
        Some(&vec!["infra".to_string()])
    );
});

on_both!(flush_deletes_only_stale_processing_logs, |backend| {
    let store = open(backend).await;
    let mut stale = chat("stale", 0);
    stale.status = LogStatus::Processing;
    stale.created_at = Some(chrono::Utc::now() - Duration::hours(2));
    let mut fresh = chat("fresh", 0);
    fresh.status = LogStatus::Processing;
    let mut done = chat("done", 0);
    done.created_at = Some(chrono::Utc::now() - Duration::hours(2));
    store
        .batch_create_if_not_exists(vec![stale, fresh, done])
        .await
        .unwrap();
    store
        .flush(chrono::Utc::now() - Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!(
        search_ids(&store, SearchFilters::new()).await,
        set(&["fresh", "done"])
    );
});

on_both!(
    deleting_by_id_removes_the_logs_and_their_metadata,
    |backend| {
        let store = open(backend).await;
        let mut a = chat("a", 0);
        a.metadata.insert("team".into(), json!("x"));
        store
            .batch_create_if_not_exists(vec![a, chat("b", 1), chat("c", 2)])
            .await
            .unwrap();
        assert_eq!(
            store
                .delete_logs(&["a".into(), "c".into(), "zz".into()])
                .await
                .unwrap(),
            2
        );
        assert_eq!(search_ids(&store, SearchFilters::new()).await, set(&["b"]));
        let by_team = SearchFilters {
            metadata_filters: [("team".to_string(), "x".to_string())].into(),
            ..SearchFilters::new()
        };
        assert!(search_ids(&store, by_team).await.is_empty());
        assert!(matches!(
            store.delete_logs(&[]).await,
            Err(Error::Invalid { .. })
        ));
    }
);

on_both!(
    retention_deletes_old_logs_in_batches_and_trims_the_ledger,
    |backend| {
        let store = open(backend).await;
        let now = chrono::Utc::now();
        let logs: Vec<Log> = (0..25)
            .map(|i| {
                let mut log = chat(&format!("r{i:02}"), i);
                log.created_at = Some(now - Duration::days(if i < 20 { 40 } else { 1 }));
                log
            })
            .collect();
        store.batch_create_if_not_exists(logs).await.unwrap();
        assert_eq!(
            store
                .delete_logs_batch(now - Duration::days(30), 7)
                .await
                .unwrap(),
            7
        );
        assert_eq!(
            store
                .delete_older_than(now - Duration::days(30), 7)
                .await
                .unwrap(),
            13
        );
        let left = search_ids(&store, SearchFilters::new()).await;
        assert_eq!(left, (20..25).map(|i| format!("r{i:02}")).collect());
        // The ledger keeps only what the live logs need, and the read model still matches it.
        let stat = store
            .ledger()
            .stat(ledger_logstore::LOG_STREAM)
            .await
            .unwrap();
        assert!(stat.count < 25, "the ledger was trimmed: {stat:?}");
    }
);

on_both!(bad_filters_are_refused_naming_the_field, |backend| {
    let store = open(backend).await;
    let cases = [
        (
            SearchFilters {
                min_cost: Some(2.0),
                max_cost: Some(1.0),
                ..SearchFilters::new()
            },
            "min_cost",
        ),
        (
            SearchFilters {
                min_tokens: Some(-1),
                ..SearchFilters::new()
            },
            "min_tokens",
        ),
        (
            SearchFilters {
                metadata_filters: [("bad key".to_string(), "v".to_string())].into(),
                ..SearchFilters::new()
            },
            "metadata_bad key",
        ),
    ];
    for (filters, field) in cases {
        match store.search(&filters, &Pagination::default()).await {
            Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{filters:?}: {other:?}"),
        }
    }
    let page = Pagination {
        limit: 0,
        ..Pagination::default()
    };
    assert!(matches!(
        store.search(&SearchFilters::new(), &page).await,
        Err(Error::Invalid { .. })
    ));
    let mut bad = chat("x", 0);
    bad.latency = Some(-1.0);
    assert!(
        matches!(store.create(bad).await, Err(Error::Invalid { field, .. }) if field == "latency")
    );
});

on_both!(
    content_logging_off_keeps_figures_and_drops_content,
    |backend| {
        let options = LogStoreOptions {
            content_logging: false,
            ..LogStoreOptions::default()
        };
        let store = open_with(backend, options).await;
        store.create(chat("a", 0)).await.unwrap();
        let found = store.find_by_id("a").await.unwrap();
        assert_eq!(found.content, ledger_logstore::Content::default());
        assert_eq!(found.latency, Some(100.0));

        let capped = open_with(
            backend,
            LogStoreOptions {
                max_content_bytes: 64,
                ..LogStoreOptions::default()
            },
        )
        .await;
        let mut big = chat("big", 0);
        big.content.output_message = Some(json!({"content": "x".repeat(10_000)}));
        capped.create(big).await.unwrap();
        let found = capped.find_by_id("big").await.unwrap();
        assert!(found.is_large_payload_response);
        assert!(found.content.output_message.unwrap().to_string().len() < 100);
    }
);

on_both!(
    the_read_model_catches_up_with_ledger_entries_it_never_applied,
    |backend| {
        let url = support::fresh_url(backend).await;
        let store = ledger_logstore::LogStore::open(&url, LogStoreOptions::default())
            .await
            .unwrap();
        store.create(chat("before", 0)).await.unwrap();
        // As if a process crashed after its ledger append and before projecting: entries in the
        // ledger that no read model applied yet.
        let event = json!({"create": {"log": chat("orphan", 1)}});
        store
            .ledger()
            .append(
                ledger_logstore::LOG_STREAM,
                vec![ledger_core::AppendInput::new(event).dedup_key("orphan")],
                ledger_core::ExpectedVersion::Any,
            )
            .await
            .unwrap();
        drop(store);
        let reopened = ledger_logstore::LogStore::open(&url, LogStoreOptions::default())
            .await
            .unwrap();
        assert_eq!(
            search_ids(&reopened, SearchFilters::new()).await,
            set(&["before", "orphan"])
        );
        // Catching up again (or from a second process) applies nothing twice.
        let second = ledger_logstore::LogStore::open(&url, LogStoreOptions::default())
            .await
            .unwrap();
        second.catch_up().await.unwrap();
        reopened.catch_up().await.unwrap();
        let stats = second.stats(&SearchFilters::new()).await.unwrap();
        assert_eq!(stats.total_requests, 2);
    }
);

on_both!(
    the_writer_batches_flushes_and_writes_everything_on_shutdown,
    |backend| {
        let store = open(backend).await;
        let writer = LogWriter::new(
            store.clone(),
            WriterOptions {
                max_batch: 64,
                ..WriterOptions::default()
            },
        );
        let mut receipts = Vec::new();
        for i in 0..500 {
            match writer.write(chat(&format!("w{i:03}"), i)).await.unwrap() {
                Accepted::Queued(r) => receipts.push(r),
                Accepted::Dropped => panic!("wait mode never drops"),
            }
        }
        writer.write(chat("w000", 0)).await.unwrap();
        writer.flush().await.unwrap();
        assert_eq!(
            store
                .stats(&SearchFilters::new())
                .await
                .unwrap()
                .total_requests,
            500
        );
        for r in receipts {
            assert!(r.durable().await.unwrap());
        }
        for i in 500..700 {
            writer.write(chat(&format!("w{i:03}"), i)).await.unwrap();
        }
        writer.shutdown().await.unwrap();
        assert_eq!(
            store
                .stats(&SearchFilters::new())
                .await
                .unwrap()
                .total_requests,
            700
        );
        assert!(matches!(
            writer.write(chat("late", 0)).await,
            Err(Error::Closed)
        ));
        let mut bad = chat("bad", 0);
        bad.id.clear();
        let refused = LogWriter::new(store.clone(), WriterOptions::default())
            .write(bad)
            .await;
        assert!(matches!(refused, Err(Error::Invalid { .. })), "{refused:?}");
    }
);

on_both!(a_full_queue_in_drop_mode_drops_and_counts, |backend| {
    let store = open(backend).await;
    let options = WriterOptions {
        capacity: 4,
        max_batch: 4,
        when_full: WhenFull::Drop,
        ..WriterOptions::default()
    };
    let writer = LogWriter::new(store.clone(), options);
    let mut dropped = 0;
    for i in 0..400 {
        if let Accepted::Dropped = writer.write(chat(&format!("d{i}"), i)).await.unwrap() {
            dropped += 1;
        }
    }
    writer.shutdown().await.unwrap();
    assert!(
        dropped > 0,
        "400 writes into a queue of 4 without waiting drop some"
    );
    assert_eq!(store.dropped(), dropped);
    let stored = store
        .stats(&SearchFilters::new())
        .await
        .unwrap()
        .total_requests;
    assert_eq!(
        stored + dropped,
        400,
        "every write is either stored or counted as dropped"
    );
});

on_both!(
    hourly_rollups_agree_with_the_logs_through_updates_deletes_and_odd_ranges,
    |backend| {
        let store = open(backend).await;
        let mut rng = fastrand::Rng::with_seed(7);
        let logs: Vec<Log> = (0..400)
            .map(|i| {
                let mut log = chat(&format!("u{i:03}"), rng.i64(-300..900));
                log.model = ["a", "b", "c"][rng.usize(0..3)].into();
                log.status =
                    [LogStatus::Success, LogStatus::Error, LogStatus::Processing][rng.usize(0..3)];
                log.latency = rng.bool().then(|| rng.f64() * 1000.0);
                log.cost = rng.bool().then(|| rng.f64());
                log.selected_key_id = rng.bool().then(|| "k".to_string());
                log
            })
            .collect();
        store.batch_create_if_not_exists(logs).await.unwrap();
        for i in (0..400).step_by(7) {
            store
                .update(
                    &format!("u{i:03}"),
                    LogUpdate::new().status(LogStatus::Success).latency(5.0),
                )
                .await
                .unwrap();
        }
        let doomed: Vec<String> = (0..400).step_by(11).map(|i| format!("u{i:03}")).collect();
        store.delete_logs(&doomed).await.unwrap();
        // A filter the roll-up cannot answer sends the same question to the logs themselves.
        let raw = |f: &SearchFilters| SearchFilters {
            max_tokens: Some(i64::MAX),
            ..f.clone()
        };
        for _ in 0..12 {
            let start = noon() + Duration::seconds(rng.i64(-20_000..40_000));
            let end = start + Duration::seconds(rng.i64(0..50_000));
            let filters = SearchFilters {
                start_time: Some(start),
                end_time: Some(end),
                models: if rng.bool() {
                    vec!["a".into(), "c".into()]
                } else {
                    vec![]
                },
                selected_key_ids: if rng.bool() { vec!["k".into()] } else { vec![] },
                ..SearchFilters::new()
            };
            let (fast, slow) = (
                store.stats(&filters).await.unwrap(),
                store.stats(&raw(&filters)).await.unwrap(),
            );
            assert_eq!(fast.total_requests, slow.total_requests, "{filters:?}");
            assert_eq!(fast.total_tokens, slow.total_tokens, "{filters:?}");
            assert!(
                (fast.average_latency - slow.average_latency).abs() < 1e-6,
                "{fast:?} {slow:?}"
            );
            assert!(
                (fast.success_rate - slow.success_rate).abs() < 1e-9,
                "{fast:?} {slow:?}"
            );
            let page = store
                .search(
                    &filters,
                    &Pagination {
                        limit: 1000,
                        ..Pagination::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(
                page.pagination.total_count as usize,
                page.logs.len(),
                "the count agrees with the page: {filters:?}"
            );
            for bucket in [3600, 7200, 86_400] {
                let fast = store
                    .histogram(HistogramKind::Models, &filters, bucket)
                    .await
                    .unwrap();
                let slow = store
                    .histogram(HistogramKind::Models, &raw(&filters), bucket)
                    .await
                    .unwrap();
                assert_eq!(fast, slow, "{filters:?} in buckets of {bucket}");
            }
        }
        let everything = store.stats(&SearchFilters::new()).await.unwrap();
        assert_eq!(everything.total_requests, 400 - doomed.len() as u64);
    }
);

/// Empties the read model (not the ledger) of the store at `url`, as if its tables were lost.
async fn forget_read_model(url: &str) {
    let statements = [
        "DELETE FROM logstore_logs",
        "DELETE FROM logstore_metadata",
        "DELETE FROM logstore_bodies",
        "DELETE FROM logstore_hourly",
        "DELETE FROM logstore_dimensions",
        "UPDATE logstore_checkpoint SET position = 0",
    ];
    if let Some(path) = url.strip_prefix("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{path}"))
            .await
            .unwrap();
        for s in statements {
            sqlx::query(s).execute(&pool).await.unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
}

on_both!(
    a_read_model_rebuilt_from_the_ledger_equals_the_live_one_after_retention,
    |backend| {
        let url = support::fresh_url(backend).await;
        let store = ledger_logstore::LogStore::open(&url, LogStoreOptions::default())
            .await
            .unwrap();
        let now = chrono::Utc::now();
        // Young logs first, then old ones (created_at given by the client): retention must not
        // trim the young logs' entries from the ledger.
        let young: Vec<Log> = (0..10).map(|i| chat(&format!("y{i}"), i)).collect();
        store.batch_create_if_not_exists(young).await.unwrap();
        let old: Vec<Log> = (0..10)
            .map(|i| {
                let mut log = chat(&format!("o{i}"), i);
                log.created_at = Some(now - Duration::days(90));
                log
            })
            .collect();
        store.batch_create_if_not_exists(old).await.unwrap();
        store
            .update("y3", LogUpdate::new().latency(1.5))
            .await
            .unwrap();
        store.delete_logs(&["y4".into()]).await.unwrap();
        assert_eq!(
            store
                .delete_older_than(now - Duration::days(30), 3)
                .await
                .unwrap(),
            10
        );
        let live = store
            .search(
                &SearchFilters::new(),
                &Pagination {
                    limit: 1000,
                    ..Pagination::default()
                },
            )
            .await
            .unwrap();
        let live_stats = store.stats(&SearchFilters::new()).await.unwrap();
        store.close().await.unwrap();

        forget_read_model(&url).await;
        let rebuilt = ledger_logstore::LogStore::open(&url, LogStoreOptions::default())
            .await
            .unwrap();
        let page = rebuilt
            .search(
                &SearchFilters::new(),
                &Pagination {
                    limit: 1000,
                    ..Pagination::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(ids(&page.logs), ids(&live.logs));
        assert_eq!(page.logs, live.logs);
        let stats = rebuilt.stats(&SearchFilters::new()).await.unwrap();
        assert_eq!(
            (stats.total_requests, stats.total_tokens),
            (live_stats.total_requests, live_stats.total_tokens)
        );
        // Sums of floats added and subtracted in another order differ in the last bits only.
        assert!(
            (stats.total_cost - live_stats.total_cost).abs() < 1e-12,
            "{stats:?} {live_stats:?}"
        );
        assert_eq!(rebuilt.find_by_id("y3").await.unwrap().latency, Some(1.5));
    }
);
