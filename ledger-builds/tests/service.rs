//! The service without a broker: ingest, the read model's guard, dead letters, plugins,
//! replays, the embedded source and the REST API, on SQLite and PostgreSQL.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ledger_builds::{
    BuildService, BuildServiceOptions, DEAD_LETTER_STREAM, DbPlugin, Message, Origin, Outcome,
    PluginContext, PluginError, Retry, StoredEvent, build_stream,
};
use ledger_readmodel::{Kind, Sql, on_both};
use serde_json::{Value, json};
use support::{at, eventually, message, open, open_with, serve, snapshot, uuid};

fn kafka(offset: i64, value: Vec<u8>) -> Message {
    Message {
        origin: Origin::Kafka {
            topic: "build_events".into(),
            partition: 0,
            offset,
        },
        value: Some(value),
    }
}

/// Stores `messages` as Kafka records at offsets from `first`, then applies them.
async fn ingest(service: &BuildService, first: i64, messages: Vec<Vec<u8>>) -> Vec<Outcome> {
    let batch = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| kafka(first + i as i64, m))
        .collect();
    let outcomes = service.ingest(batch).await.unwrap();
    service.catch_up().await.unwrap();
    outcomes
}

const SEED_BUILD: &str = "edae5055-db9e-4ae4-8863-7561cb6e0aa2";
const SEED_PROJECT: &str = "c01f0f8c-9774-43e7-b717-5ca78bd44c01";
const REAPED_PROJECT: &str = "5140b34e-21ed-4395-85bf-f3bda5adaa14";

/// Probo-DB's test seed: 8 builds with `bytesReal` 1000+n, in 5 projects, 6 to 8 reaped.
async fn seed(service: &BuildService) {
    let mut messages = Vec::new();
    for n in 1..=8u32 {
        let id = if n == 1 {
            SEED_BUILD.to_owned()
        } else {
            uuid('b', n)
        };
        let project = match n {
            1..=3 => uuid('a', n),
            4..=6 => SEED_PROJECT.to_owned(),
            _ => REAPED_PROJECT.to_owned(),
        };
        let mut build = snapshot(&id, &project, 10, 1000 + i64::from(n));
        build["reaped"] = json!(n >= 6);
        build["branch"]["name"] = json!(if n == 1 {
            "firstBranch".to_owned()
        } else {
            format!("branch{n}")
        });
        build["pullRequest"]["name"] = json!(if n == 1 {
            "firstPr".to_owned()
        } else {
            format!("pr{n}")
        });
        messages.push(message("updated", build));
    }
    let outcomes = ingest(service, 0, messages).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Stored),
        "{outcomes:?}"
    );
}

on_both!(
    probo_dbs_seed_answers_as_probo_dbs_tests_expect,
    |backend| {
        let service = open(backend).await;
        seed(&service).await;
        let base = serve(&service).await;
        let http = reqwest::Client::new();
        let root = http.get(&base).send().await.unwrap();
        assert_eq!(root.status(), 200);
        assert!(
            root.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(root.text().await.unwrap(), "test version 1.0.0");
        let head = http.head(&base).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.text().await.unwrap(), "");

        let get = |path: String| {
            let http = http.clone();
            let url = format!("{base}{path}");
            async move {
                let response = http.get(&url).send().await.unwrap();
                (
                    response.status().as_u16(),
                    response.json::<Value>().await.unwrap(),
                )
            }
        };
        let (status, builds) = get("/build".into()).await;
        assert_eq!((status, builds.as_array().unwrap().len()), (200, 8));
        let (_, projects) = get("/project".into()).await;
        let projects = projects.as_array().unwrap();
        assert_eq!(projects.len(), 5);
        assert!(projects.contains(&json!(SEED_PROJECT)));
        // 1004 + 1005; the reaped 1006 is left out.
        assert_eq!(
            get(format!("/project/{SEED_PROJECT}/disk-usage")).await,
            (200, json!("2009"))
        );
        assert_eq!(
            get(format!("/project/{REAPED_PROJECT}/disk-usage")).await,
            (200, json!("0"))
        );
        let (status, row) = get(format!("/build/{SEED_BUILD}")).await;
        assert_eq!(status, 200);
        assert_eq!(row["branchName"], "firstBranch");
        assert_eq!(row["prName"], "firstPr");
        assert_eq!(row["bytesReal"], "1001");
        assert_eq!(row["bytesVirtual"], "2002");
        assert_eq!(row["timeUpdated"], at(10));
        assert_eq!(row["statusBuild"], "running");
        assert_eq!(row["reaped"], false);
        assert_eq!(row["config"], json!({"image": "php:8"}));
        let mut keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut probo = vec![
            "id",
            "buildId",
            "requestId",
            "projectId",
            "timeStarted",
            "timeUpdated",
            "bytesVirtual",
            "bytesReal",
            "config",
            "branchName",
            "branchUrl",
            "commitUrl",
            "commitRef",
            "prDescription",
            "prUrl",
            "prName",
            "prNumber",
            "reaped",
            "reapedReason",
            "reapedReasonText",
            "reapedDate",
            "pinned",
            "statusSubmitted",
            "statusBuild",
        ];
        keys.sort();
        probo.sort();
        assert_eq!(keys, probo);
        assert_eq!(
            get(format!("/build/{SEED_BUILD}/disk-usage")).await,
            (200, json!("1001"))
        );
    }
);

on_both!(
    bad_ids_are_400_and_unknown_builds_404_with_json_errors,
    |backend| {
        let service = open(backend).await;
        seed(&service).await;
        let base = serve(&service).await;
        let get = |path: String| {
            let url = format!("{base}{path}");
            async move {
                let response = reqwest::get(&url).await.unwrap();
                (
                    response.status().as_u16(),
                    response.json::<Value>().await.unwrap(),
                )
            }
        };
        // Either case is a UUID; the row is the same.
        let (status, row) = get(format!("/build/{}", SEED_BUILD.to_uppercase())).await;
        assert_eq!((status, row["buildId"].as_str()), (200, Some(SEED_BUILD)));
        for path in [
            "/build/x".to_owned(),
            format!("/build/{SEED_BUILD}x"),
            format!("/build/x{SEED_BUILD}/disk-usage"),
            "/project/nope/disk-usage".to_owned(),
            "/build?limit=0".to_owned(),
            "/build?limit=abc".to_owned(),
            "/build?after=x".to_owned(),
            "/project?sort=asc".to_owned(),
        ] {
            let (status, body) = get(path.clone()).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(
                body["error"].as_str().unwrap().starts_with("invalid"),
                "{path}: {body}"
            );
        }
        let unknown = uuid('f', 99);
        for path in [
            format!("/build/{unknown}"),
            format!("/build/{unknown}/disk-usage"),
        ] {
            let (status, body) = get(path.clone()).await;
            assert_eq!(status, 404, "{path}");
            assert!(body["error"].as_str().unwrap().contains(&unknown), "{body}");
        }
        assert_eq!(
            get(format!("/project/{unknown}/disk-usage")).await,
            (200, json!("0"))
        );
        assert_eq!(get("/no/such/route".into()).await.0, 404);
        assert_eq!(get("/healthz".into()).await, (200, json!({"status": "ok"})));
        assert_eq!(
            get("/readyz".into()).await,
            (200, json!({"status": "ready"}))
        );
    }
);

on_both!(lists_are_paged_with_a_link_to_the_next_page, |backend| {
    let service = open(backend).await;
    seed(&service).await;
    let base = serve(&service).await;
    let mut all = Vec::new();
    let mut next = Some(format!("{base}/build?limit=3"));
    let mut pages = 0;
    while let Some(url) = next.take() {
        let response = reqwest::get(&url).await.unwrap();
        next = response.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            let path = &link[1..link.find('>').unwrap()];
            format!("{base}{path}")
        });
        let page: Vec<String> = response.json().await.unwrap();
        assert!(page.len() <= 3);
        all.extend(page);
        pages += 1;
    }
    assert_eq!(pages, 3);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((all.len(), sorted), (8, all));
});

on_both!(
    an_older_snapshot_or_a_replay_never_rolls_a_row_back,
    |backend| {
        let service = open(backend).await;
        let (id, project) = (uuid('b', 1), uuid('a', 1));
        let newer = message("ready", snapshot(&id, &project, 20, 2000));
        let older = message("started", snapshot(&id, &project, 10, 1000));
        ingest(&service, 0, vec![newer.clone()]).await;
        ingest(&service, 1, vec![older.clone()]).await;
        let row = service.build(&id).await.unwrap().unwrap();
        assert_eq!((row.build.bytes_real, row.ledger_version), (2000, 1));
        // The same updatedAt: the later ledger version wins.
        let mut same_time = snapshot(&id, &project, 20, 3000);
        same_time["status"] = json!("success");
        ingest(&service, 2, vec![message("ready", same_time)]).await;
        let row = service.build(&id).await.unwrap().unwrap();
        assert_eq!(
            (row.build.bytes_real, row.build.status_build.as_str()),
            (3000, "success")
        );
        // A redelivery of offset 1 (the older snapshot) is a duplicate; the row's number stays.
        let outcomes = ingest(&service, 1, vec![older]).await;
        assert_eq!(outcomes, vec![Outcome::Duplicate]);
        let again = service.build(&id).await.unwrap().unwrap();
        assert_eq!((again.build.bytes_real, again.id), (3000, row.id));
        assert_eq!(service.ledger().count(&build_stream(&id)).await.unwrap(), 3);
    }
);

on_both!(
    within_one_batch_the_newest_snapshot_wins_whatever_the_order,
    |backend| {
        let service = open(backend).await;
        let (id, project) = (uuid('b', 2), uuid('a', 1));
        let batch = [30, 10, 50, 20, 40]
            .iter()
            .map(|&s| message("updated", snapshot(&id, &project, s, s * 10)))
            .collect();
        ingest(&service, 0, batch).await;
        let row = service.build(&id).await.unwrap().unwrap();
        assert_eq!((row.build.bytes_real, row.ledger_version), (500, 3));
    }
);

on_both!(
    concurrent_events_for_one_build_converge_to_the_newest,
    |backend| {
        let service = open(backend).await;
        let (id, project) = (uuid('b', 3), uuid('a', 1));
        let tasks: Vec<_> = (0..16i64)
            .map(|n| {
                let (service, id, project) = (service.clone(), id.clone(), project.clone());
                tokio::spawn(async move {
                    // Seconds in a scrambled order, each once.
                    let second = (n * 7) % 16;
                    let batch = vec![kafka(
                        n,
                        message("updated", snapshot(&id, &project, second, second)),
                    )];
                    service.ingest(batch).await.unwrap();
                    service.catch_up().await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        service.catch_up().await.unwrap();
        let row = service.build(&id).await.unwrap().unwrap();
        assert_eq!(row.build.bytes_real, 15);
        assert_eq!(
            service.ledger().count(&build_stream(&id)).await.unwrap(),
            16
        );
    }
);

on_both!(
    malformed_messages_are_dead_lettered_and_the_rest_goes_on,
    |backend| {
        let service = open(backend).await;
        let (id, project) = (uuid('b', 4), uuid('a', 1));
        let mut bad_status = snapshot(&id, &project, 1, 1);
        bad_status["status"] = json!("fail");
        let batch = vec![
            kafka(0, b"not json".to_vec()),
            kafka(
                1,
                br#"{"version":"1","data":{"event":"ready","data":{},"build":null}}"#.to_vec(),
            ),
            kafka(
                2,
                message("ready", json!({"id": "not-a-uuid", "projectId": project})),
            ),
            kafka(3, message("ready", bad_status)),
            Message {
                origin: Origin::Kafka {
                    topic: "build_events".into(),
                    partition: 0,
                    offset: 4,
                },
                value: None,
            },
            kafka(5, message("ready", snapshot(&id, &project, 2, 42))),
            kafka(6, vec![0xff, 0xfe, 0]),
        ];
        let outcomes = service.ingest(batch).await.unwrap();
        service.catch_up().await.unwrap();
        assert_eq!(outcomes[5], Outcome::Stored);
        let refused: Vec<usize> = (0..outcomes.len()).filter(|&i| i != 5).collect();
        for &i in &refused {
            assert!(
                matches!(outcomes[i], Outcome::DeadLettered(_)),
                "{i}: {:?}",
                outcomes[i]
            );
        }
        assert_eq!(
            service.build(&id).await.unwrap().unwrap().build.bytes_real,
            42
        );
        let letters = service.dead_letters(100).await.unwrap();
        assert_eq!(letters.len(), 6);
        let offsets: Vec<i64> = letters
            .iter()
            .map(|l| match &l.origin {
                Origin::Kafka { offset, topic, .. } if topic == "build_events" => *offset,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(offsets, vec![0, 1, 2, 3, 4, 6]);
        assert!(
            letters[0].reason.contains("not JSON"),
            "{}",
            letters[0].reason
        );
        assert_eq!(letters[0].message.as_deref(), Some("not json"));
        assert!(letters[1].reason.contains("\"data.build\" is null"));
        assert!(letters[2].reason.contains("not a UUID"));
        assert!(letters[3].reason.contains("\"fail\""));
        assert_eq!(
            (letters[4].reason.as_str(), letters[4].message.as_deref()),
            ("the record has no value", None)
        );
        assert_eq!(
            letters[5].message.as_deref(),
            Some("\u{FFFD}\u{FFFD}\u{FFFD}")
        );
        // A redelivered bad record is not dead-lettered twice.
        service
            .ingest(vec![kafka(0, b"not json".to_vec())])
            .await
            .unwrap();
        assert_eq!(service.ledger().count(DEAD_LETTER_STREAM).await.unwrap(), 6);
    }
);

on_both!(
    reaped_builds_stay_listed_but_leave_the_project_sum,
    |backend| {
        let service = open(backend).await;
        let project = uuid('a', 7);
        let (a, b) = (uuid('b', 71), uuid('b', 72));
        ingest(
            &service,
            0,
            vec![
                message("ready", snapshot(&a, &project, 1, 100)),
                message("ready", snapshot(&b, &project, 1, 50)),
            ],
        )
        .await;
        assert_eq!(service.project_disk_usage(&project).await.unwrap(), 150);
        let mut reaped = snapshot(&a, &project, 2, 100);
        reaped["reaped"] = json!(true);
        reaped["reapedReason"] = json!(3);
        reaped["reapedDate"] = json!(1_780_272_002_000i64);
        ingest(&service, 2, vec![message("reaped", reaped)]).await;
        assert_eq!(service.project_disk_usage(&project).await.unwrap(), 50);
        let row = service.build(&a).await.unwrap().unwrap();
        assert!(row.build.reaped);
        assert_eq!(row.build.to_row(row.id)["reapedDate"], at(2));
        assert_eq!(service.builds(None, 10).await.unwrap().len(), 2);
        assert_eq!(service.projects(None, 10).await.unwrap(), vec![project]);
    }
);

/// A build a plugin saw, the plugin, and whether the read model held the event's snapshot then.
type Seen = (String, &'static str, bool);

/// A plugin that records what it saw and what the read model held when it saw it, failing
/// its first `failures` calls.
struct Recorder {
    name: &'static str,
    failures: Mutex<u32>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[async_trait]
impl DbPlugin for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    async fn process(
        &self,
        event: &StoredEvent,
        context: &PluginContext,
    ) -> Result<(), PluginError> {
        {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(format!("{} refuses, {} more times", self.name, *failures).into());
            }
        }
        let mut sql = Sql::new("SELECT ledger_version FROM builds WHERE build_id = ");
        sql.bind(event.event.build.build_id.as_str());
        let rows = context.db.fetch(&sql, &[Kind::Int]).await?;
        let applied = rows
            .first()
            .is_some_and(|r| r[0].int() as u64 >= event.version);
        self.seen
            .lock()
            .unwrap()
            .push((event.event.build.build_id.clone(), self.name, applied));
        Ok(())
    }
}

on_both!(
    plugins_run_in_order_after_the_read_model_and_failures_are_retried_not_skipped,
    |backend| {
        let url = support::fresh_url(backend).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let options = || {
            BuildServiceOptions {
                retry: Retry {
                    min_delay: Duration::from_millis(5),
                    max_delay: Duration::from_millis(20),
                },
                ..BuildServiceOptions::default()
            }
            .plugin(Recorder {
                name: "first",
                failures: Mutex::new(0),
                seen: seen.clone(),
            })
            .plugin(Recorder {
                name: "second",
                failures: Mutex::new(3),
                seen: seen.clone(),
            })
        };
        let service = BuildService::open(&url, options()).await.unwrap();
        let project = uuid('a', 8);
        let ids: Vec<String> = (0..3).map(|n| uuid('b', 80 + n)).collect();
        let messages = ids
            .iter()
            .map(|id| message("ready", snapshot(id, &project, 1, 7)))
            .collect();
        ingest(&service, 0, messages).await;
        let seen_now = seen.lock().unwrap().clone();
        // Every event reached both plugins, the first before the second, none skipped.
        assert_eq!(seen_now.len(), 6, "{seen_now:?}");
        let firsts: Vec<&String> = seen_now
            .iter()
            .filter(|s| s.1 == "first")
            .map(|s| &s.0)
            .collect();
        let seconds: Vec<&String> = seen_now
            .iter()
            .filter(|s| s.1 == "second")
            .map(|s| &s.0)
            .collect();
        assert_eq!(firsts, seconds);
        let last_first = seen_now.iter().rposition(|s| s.1 == "first").unwrap();
        let first_second = seen_now.iter().position(|s| s.1 == "second").unwrap();
        assert!(last_first < first_second, "{seen_now:?}");
        assert!(
            seen_now.iter().all(|s| s.2),
            "before the read model: {seen_now:?}"
        );
        assert!(service.ready().await.is_ok());
        // Reopened, the plugins resume from their checkpoints: nothing is delivered again.
        drop(service);
        let service = BuildService::open(&url, options()).await.unwrap();
        service.catch_up().await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 6);
    }
);

/// A plugin that never succeeds.
struct Broken;

#[async_trait]
impl DbPlugin for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    async fn process(&self, _: &StoredEvent, _: &PluginContext) -> Result<(), PluginError> {
        Err("the plugin's table is gone".into())
    }
}

on_both!(
    a_plugin_that_keeps_failing_makes_the_service_not_ready,
    |backend| {
        let url = support::fresh_url(backend).await;
        let service = BuildService::open(
            &url,
            BuildServiceOptions {
                retry: Retry {
                    min_delay: Duration::from_millis(5),
                    max_delay: Duration::from_millis(20),
                },
                ..BuildServiceOptions::default()
            }
            .plugin(Broken),
        )
        .await
        .unwrap();
        let (id, project) = (uuid('b', 90), uuid('a', 9));
        service
            .ingest(vec![kafka(
                0,
                message("ready", snapshot(&id, &project, 1, 1)),
            )])
            .await
            .unwrap();
        service.follow();
        let reason = eventually(
            "readiness reports the plugin",
            Duration::from_secs(10),
            || {
                let service = service.clone();
                async move { service.ready().await.err() }
            },
        )
        .await;
        assert!(
            reason.contains("broken") && reason.contains("table is gone"),
            "{reason}"
        );
        // The read model, before the plugin, is up to date.
        assert!(service.build(&id).await.unwrap().is_some());
    }
);

on_both!(a_replay_of_json_lines_stores_each_line_once, |backend| {
    let service = open(backend).await;
    let project = uuid('a', 10);
    let mut lines = Vec::new();
    for n in 0..5 {
        lines.extend(message(
            "ready",
            snapshot(&uuid('b', 100 + n), &project, 1, 10),
        ));
        lines.extend(b"\n\n");
    }
    lines.extend(b"{broken\n");
    let outcomes = service.replay(&lines[..]).await.unwrap();
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Stored).count(),
        5
    );
    assert!(matches!(outcomes[5], Outcome::DeadLettered(_)));
    assert_eq!(service.project_disk_usage(&project).await.unwrap(), 50);
    let again = service.replay(&lines[..]).await.unwrap();
    assert_eq!(
        again.iter().filter(|o| **o == Outcome::Duplicate).count(),
        5
    );
    assert_eq!(service.ledger().count(DEAD_LETTER_STREAM).await.unwrap(), 1);
    let letters = service.dead_letters(10).await.unwrap();
    assert!(
        matches!(letters[0].origin, Origin::Line { number: 11, .. }),
        "{:?}",
        letters[0].origin
    );
});

on_both!(
    the_embedded_source_ingests_a_stream_of_the_same_ledger,
    |backend| {
        let service = open_with(
            backend,
            BuildServiceOptions {
                poll_interval: Duration::from_millis(20),
                ..BuildServiceOptions::default()
            },
        )
        .await;
        service.follow();
        let source = service.clone();
        let task = tokio::spawn(async move { source.run_ledger_source("build_events").await });
        let (id, project) = (uuid('b', 110), uuid('a', 11));
        for second in [1, 3, 2] {
            let event = json!({"event": "updated", "data": {}, "build": snapshot(&id, &project, second, second)});
            ledger_builds::emit(
                service.ledger(),
                "build_events",
                ledger_builds::wire(&event),
            )
            .await
            .unwrap();
        }
        let bytes = eventually(
            "the row from the embedded source",
            Duration::from_secs(10),
            || {
                let (service, id) = (service.clone(), id.clone());
                async move {
                    let row = service.build(&id).await.unwrap()?;
                    (service.ledger().count(&build_stream(&id)).await.unwrap() == 3)
                        .then_some(row.build.bytes_real)
                }
            },
        )
        .await;
        assert_eq!(bytes, 3);
        task.abort();
    }
);

/// An API plugin: one route of its own over the service.
struct BuildCount;

impl ledger_builds::http::ApiPlugin for BuildCount {
    fn routes(&self, service: BuildService) -> axum::Router {
        axum::Router::new().route(
            "/plugin/build-count",
            axum::routing::get(move || {
                let service = service.clone();
                async move {
                    let ids = service.builds(None, ledger_builds::MAX_PAGE).await.unwrap();
                    axum::Json(ids.len())
                }
            }),
        )
    }
}

on_both!(api_plugins_add_their_routes_beside_probo_dbs, |backend| {
    let service = open(backend).await;
    seed(&service).await;
    let base = support::serve_with(&service, &[&BuildCount]).await;
    let count: usize = reqwest::get(format!("{base}/plugin/build-count"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count, 8);
    let builds: Vec<String> = reqwest::get(format!("{base}/build"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(builds.len(), 8);
});
