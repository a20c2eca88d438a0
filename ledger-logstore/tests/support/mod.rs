//! Log stores on fresh databases (an SQLite file, a PostgreSQL schema) and sample logs.
#![allow(dead_code)] // each test binary uses part of it

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_logstore::{Log, LogStatus, LogStore, LogStoreOptions, TokenUsage};
use serde_json::json;

pub use ledger_readmodel::testkit::Backend;

/// A URL for a fresh, empty log store of `backend`.
pub async fn fresh_url(backend: Backend) -> String {
    ledger_readmodel::testkit::fresh_url(backend, "ledger-logstore-tests").await
}

pub async fn open(backend: Backend) -> LogStore {
    open_with(backend, LogStoreOptions::default()).await
}

pub async fn open_with(backend: Backend, options: LogStoreOptions) -> LogStore {
    let url = fresh_url(backend).await;
    LogStore::open(&url, options)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"))
}

/// Noon, 1 June 2026, UTC: sample logs are placed relative to it.
pub fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

/// A finished chat completion, `minutes` after noon.
pub fn chat(id: &str, minutes: i64) -> Log {
    let mut log = Log::new(
        id,
        noon() + Duration::minutes(minutes),
        "chat_completion",
        "openai",
        "gpt-4o",
        LogStatus::Success,
    );
    log.latency = Some(100.0 + minutes as f64);
    log.cost = Some(0.001 * (minutes + 1) as f64);
    log.token_usage = Some(TokenUsage {
        prompt_tokens: 10,
        completion_tokens: 5,
        total_tokens: 15,
        ..TokenUsage::default()
    });
    log.content.input_history = Some(json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": format!("question number {id}")}
    ]));
    log.content.output_message = Some(json!({"role": "assistant", "content": "an answer"}));
    log
}
