//! The HTTP API end to end over a real socket, on SQLite and on PostgreSQL.

mod support;

use ledger_readmodel::on_both;

use std::sync::Arc;

use ledger_logstore::http::{ApiOptions, router};
use ledger_logstore::{LogStore, LogWriter, WriterOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, chat, noon, open};

/// A served store: its base URL and the store itself.
struct Served {
    base: String,
    store: LogStore,
    client: reqwest::Client,
}

async fn serve(backend: Backend, options: ApiOptions) -> Served {
    let store = open(backend).await;
    serve_store(store, options).await
}

async fn serve_store(store: LogStore, options: ApiOptions) -> Served {
    let writer = Arc::new(LogWriter::new(store.clone(), WriterOptions::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(store.clone(), writer, options);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Served {
        base,
        store,
        client: reqwest::Client::new(),
    }
}

impl Served {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn ingest(&self, logs: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, "/api/logs/ingest", logs.to_string())
            .await
    }
}

fn sample() -> Value {
    let mut logs = Vec::new();
    for i in 0..30 {
        let mut log = chat(&format!("h{i:02}"), i * 7);
        if i % 3 == 0 {
            log.model = "gpt-4o-mini".into();
        }
        if i % 10 == 9 {
            log.status = ledger_logstore::LogStatus::Error;
        }
        logs.push(serde_json::to_value(log).unwrap());
    }
    Value::Array(logs)
}

fn error_field(body: &Value) -> Option<&str> {
    body["error"]["field"].as_str()
}

on_both!(ingested_logs_come_back_in_bifrost_shapes, |backend| {
    let s = serve(backend, ApiOptions::default()).await;
    let (status, body) = s.ingest(sample()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"accepted": 30, "duplicates": 0, "dropped": 0}));
    let (_, again) = s.ingest(json!(sample()[0])).await;
    assert_eq!(
        again["duplicates"], 1,
        "a second ingest of an id is a duplicate"
    );
    s.store.catch_up().await.unwrap();

    let (status, page) = s
        .get("/api/logs?models=gpt-4o-mini&limit=4&offset=0&sort_by=latency&order=asc")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page["pagination"],
        json!({"limit": 4, "offset": 0, "sort_by": "latency", "order": "asc", "total_count": 10})
    );
    assert_eq!(page["stats"]["total_requests"], 10);
    assert_eq!(page["has_logs"], true);
    let ids: Vec<&str> = page["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["h00", "h03", "h06", "h09"]);
    assert_eq!(page["logs"][0]["object"], "chat_completion");
    assert!(
        page["logs"][0].get("output_message").is_none(),
        "lists leave content out"
    );

    let (status, log) = s.get("/api/logs/h03").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log["output_message"]["content"], "an answer");
    let (status, missing) = s.get("/api/logs/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["message"], "log not found");
    assert_eq!(missing["is_bifrost_error"], false);
    assert_eq!(missing["status_code"], 404);

    let (_, stats) = s.get("/api/logs/stats?models=gpt-4o").await;
    assert_eq!(stats["total_requests"], 20);
    let start = noon().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let end =
        (noon() + chrono::Duration::hours(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, histogram) = s
        .get(&format!(
            "/api/logs/histogram?start_time={start}&end_time={end}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{histogram}");
    assert_eq!(
        histogram["bucket_size_seconds"], 600,
        "5 hours: 10-minute buckets"
    );
    assert_eq!(
        histogram["buckets"].as_array().unwrap().len(),
        31,
        "gap-filled through the end"
    );
    let total: u64 = histogram["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 30);
    for path in [
        "tokens",
        "cost",
        "models",
        "latency",
        "cost/by-provider",
        "tokens/by-provider",
        "latency/by-provider",
    ] {
        let (status, body) = s.get(&format!("/api/logs/histogram/{path}")).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body["buckets"].is_array(), "{path}: {body}");
    }
    let (_, models) = s.get("/api/logs/histogram/models").await;
    assert_eq!(models["models"], json!(["gpt-4o", "gpt-4o-mini"]));

    let (_, data) = s.get("/api/logs/filterdata").await;
    assert!(
        data["models"].is_array() && data["selected_keys"].is_array(),
        "{data}"
    );
    let (_, dropped) = s.get("/api/logs/dropped").await;
    assert_eq!(dropped, json!({"dropped_requests": 0}));

    let (status, body) = s
        .send(
            reqwest::Method::PATCH,
            "/api/logs/h01",
            json!({"status": "error", "latency": 5.0}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(s.get("/api/logs/h01").await.1["status"], "error");
    let (status, body) = s
        .send(
            reqwest::Method::DELETE,
            "/api/logs",
            json!({"ids": ["h01", "h02"]}).to_string(),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"message": "Logs deleted successfully"})
        )
    );
    assert_eq!(s.get("/api/logs/stats").await.1["total_requests"], 28);
});

on_both!(bad_input_is_a_400_naming_the_field, |backend| {
    let s = serve(
        backend,
        ApiOptions {
            max_batch: 5,
            ..ApiOptions::default()
        },
    )
    .await;
    let cases = [
        (
            "/api/logs?limit=-1",
            "limit",
            "limit must be greater than 0",
        ),
        ("/api/logs?limit=0", "limit", "limit must be greater than 0"),
        ("/api/logs?limit=1001", "limit", "limit cannot exceed 1000"),
        ("/api/logs?offset=-5", "offset", "offset cannot be negative"),
        ("/api/logs?sort_by=size", "sort_by", "sort_by"),
        (
            "/api/logs?min_latency=10&max_latency=1",
            "min_latency",
            "above",
        ),
        (
            "/api/logs?start_time=2026-02-01T00:00:00Z&end_time=2026-01-01T00:00:00Z",
            "start_time",
            "after",
        ),
        ("/api/logs?start_time=tuesday", "start_time", "RFC 3339"),
        ("/api/logs/stats?min_cost=cheap", "min_cost", "number"),
        (
            "/api/logs?metadata_bad%20key=1",
            "metadata_bad key",
            "metadata key",
        ),
        ("/api/logs/histogram?colour=red", "colour", "unknown"),
    ];
    for (path, field, message) in cases {
        let (status, body) = s.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(error_field(&body), Some(field), "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(message),
            "{path}: {body}"
        );
    }
    let (status, body) = s
        .send(reqwest::Method::POST, "/api/logs/ingest", "{not json")
        .await;
    assert_eq!(
        (status, error_field(&body)),
        (StatusCode::BAD_REQUEST, Some("body")),
        "{body}"
    );
    let (status, body) = s.ingest(json!([{"id": "x"}])).await;
    assert_eq!(
        (status, error_field(&body)),
        (StatusCode::BAD_REQUEST, Some("logs[0]")),
        "{body}"
    );
    let mut bad = serde_json::to_value(chat("neg", 0)).unwrap();
    bad["cost"] = json!(-2.0);
    let (status, body) = s.ingest(json!([bad.clone()])).await;
    assert_eq!(
        (status, error_field(&body)),
        (StatusCode::BAD_REQUEST, Some("logs[0].cost")),
        "{body}"
    );
    let good = |id: &str| serde_json::to_value(chat(id, 0)).unwrap();
    let (status, body) = s.ingest(json!([good("g1"), good("g2"), bad])).await;
    assert_eq!(
        (status, error_field(&body)),
        (StatusCode::BAD_REQUEST, Some("logs[2].cost")),
        "{body}"
    );
    let mut nul = good("nul");
    nul["provider"] = json!("a\u{0}b");
    let (status, body) = s.ingest(json!([nul])).await;
    assert_eq!(
        (status, error_field(&body)),
        (StatusCode::BAD_REQUEST, Some("logs[0].provider")),
        "{body}"
    );
    let mut deep = good("deep");
    deep["output_message"] = (0..120).fold(json!("bottom"), |inner, _| json!([inner]));
    let (status, body) = s.ingest(json!([good("g3"), deep])).await;
    assert_eq!(
        (status, error_field(&body)),
        (StatusCode::BAD_REQUEST, Some("logs[1].log")),
        "{body}"
    );
    let six: Vec<Value> = (0..6)
        .map(|i| serde_json::to_value(chat(&format!("b{i}"), i)).unwrap())
        .collect();
    let (status, body) = s.ingest(Value::Array(six)).await;
    assert_eq!(
        (status, error_field(&body)),
        (StatusCode::BAD_REQUEST, Some("logs")),
        "{body}"
    );
    let (status, body) = s
        .send(
            reqwest::Method::DELETE,
            "/api/logs",
            json!({"ids": []}).to_string(),
        )
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("No log IDs provided"))
    );
    let (status, _) = s.send(reqwest::Method::DELETE, "/api/logs", "[").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = s
        .send(
            reqwest::Method::PATCH,
            "/api/logs/nope",
            json!({"latency": 1.0}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        s.get("/api/logs/stats").await.1["total_requests"],
        0,
        "nothing refused was stored"
    );
});

on_both!(the_api_wants_a_key_when_keys_are_set, |backend| {
    let s = serve(
        backend,
        ApiOptions {
            api_keys: vec!["k-one".into(), "k-two".into()],
            ..ApiOptions::default()
        },
    )
    .await;
    let url = format!("{}/api/logs", s.base);
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(s.client.get(&url).send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(
            s.client
                .get(&url)
                .bearer_auth("k-three")
                .send()
                .await
                .unwrap()
        ),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(
            s.client
                .get(&url)
                .bearer_auth("k-one")
                .send()
                .await
                .unwrap()
        ),
        StatusCode::OK
    );
    assert_eq!(
        status(
            s.client
                .get(&url)
                .header("x-api-key", "k-two")
                .send()
                .await
                .unwrap()
        ),
        StatusCode::OK
    );
    for public in ["/", "/openapi.json", "/health"] {
        assert_eq!(s.get(public).await.0, StatusCode::OK, "{public}");
    }
});

on_both!(bodies_over_the_limit_are_refused, |backend| {
    let s = serve(
        backend,
        ApiOptions {
            max_body_bytes: 4096,
            ..ApiOptions::default()
        },
    )
    .await;
    let mut big = serde_json::to_value(chat("big", 0)).unwrap();
    big["output_message"] = json!({"content": "x".repeat(10_000)});
    let (status, _) = s.ingest(big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
});

#[tokio::test]
async fn a_storage_failure_is_a_500_without_driver_text() {
    let s = serve(Backend::Sqlite, ApiOptions::default()).await;
    s.store.close().await.unwrap();
    let (status, body) = s.get("/api/logs").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"]["message"], "Search failed");
    assert_eq!(body["status_code"], 500);
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint() {
    let s = serve(Backend::Sqlite, ApiOptions::default()).await;
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/logs",
        "/api/logs/{id}",
        "/api/logs/stats",
        "/api/logs/histogram",
        "/api/logs/filterdata",
        "/api/logs/dropped",
        "/api/logs/ingest",
    ] {
        assert!(paths.contains_key(path), "{path} is missing");
    }
    let page = s
        .client
        .get(&s.base)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<title>ledger-logstore</title>"),
        "the page is served at /"
    );
}
