//! Log stores on fresh databases (an SQLite file, a PostgreSQL schema) and sample logs.
#![allow(dead_code)] // each test binary uses part of it

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_core::testkit::{fresh_table, server::server_url};
use ledger_logstore::{Log, LogStatus, LogStore, LogStoreOptions, TokenUsage};
use serde_json::json;

/// The databases every log-store test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A URL for a fresh, empty log store of `backend`.
pub async fn fresh_url(backend: Backend) -> String {
    let name = fresh_table();
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("ledger-logstore-tests");
            std::fs::create_dir_all(&dir).expect("a temp dir");
            format!("sqlite:{}", dir.join(format!("{name}.db")).display())
        }
        Backend::Postgres => {
            let server = server_url("LEDGER_POSTGRES_URL", env!("CARGO_MANIFEST_DIR"));
            let pool = sqlx::PgPool::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("connecting to {server}: {e}"));
            sqlx::query(&format!("CREATE SCHEMA {name}"))
                .execute(&pool)
                .await
                .expect("a fresh schema");
            pool.close().await;
            let separator = if server.contains('?') { '&' } else { '?' };
            format!("{server}{separator}options=-c%20search_path%3D{name}")
        }
    }
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

/// Runs `body` for each backend, naming the backend in a failure.
#[macro_export]
macro_rules! on_both {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $backend = $crate::support::Backend::Sqlite;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let $backend = $crate::support::Backend::Postgres;
                $body
            }
        }
    };
}
