//! The service killed with SIGKILL while clients stream logs: every log whose ingest was
//! acknowledged is there after a restart, on SQLite and on PostgreSQL.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_readmodel::testkit::{kill_hard as kill, start_service};
use serde_json::{Value, json};
use support::{Backend, chat};
use tokio::process::{Child, Command};

/// The service on `db`, and the address it listens on.
async fn start(db: &str) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger-logstore"));
    command
        .args(["serve", "--db", db, "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn");
    start_service(command).await
}

/// Streams batches of logs until the server stops answering; records each acknowledged id.
async fn stream_logs(
    base: String,
    client: usize,
    acked: Arc<Mutex<BTreeSet<String>>>,
    round: usize,
) {
    let http = reqwest::Client::new();
    for batch in 0.. {
        let logs: Vec<Value> = (0..10)
            .map(|i| {
                let id = format!("r{round}-c{client}-b{batch}-{i}");
                serde_json::to_value(chat(&id, i)).unwrap()
            })
            .collect();
        let ids: Vec<String> = logs
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect();
        let sent = http
            .post(format!("{base}/api/logs/ingest"))
            .json(&logs)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        // The server was killed: the clients stop.
        let Ok(response) = sent else { return };
        if response.status() != reqwest::StatusCode::OK {
            eprintln!(
                "client {client}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        assert_eq!(
            body["accepted"].as_u64().unwrap() + body["duplicates"].as_u64().unwrap(),
            10,
            "{body}"
        );
        acked.lock().unwrap().extend(ids);
    }
}

async fn acknowledged_logs_survive_sigkill(backend: Backend) {
    let db = support::fresh_url(backend).await;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    for round in 0..4 {
        let (child, address) = start(&db).await;
        let base = format!("http://{address}");
        let clients: Vec<_> = (0..4)
            .map(|c| tokio::spawn(stream_logs(base.clone(), c, acked.clone(), round)))
            .collect();
        // Kill it mid-stream, at a different moment each round.
        let before = acked.lock().unwrap().len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + 200 + round * 70 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the clients made no progress"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kill(&child);
        for c in clients {
            c.await.unwrap();
        }
    }
    let (_child, address) = start(&db).await;
    let http = reqwest::Client::new();
    let get = async |path: String| -> Value {
        let response = http
            .get(format!("http://{address}{path}"))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    };
    let acked = acked.lock().unwrap().clone();
    let mut present = BTreeSet::new();
    for offset in (0..).step_by(1000) {
        let page = get(format!(
            "/api/logs?limit=1000&offset={offset}&sort_by=timestamp"
        ))
        .await;
        let logs = page["logs"].as_array().unwrap();
        present.extend(logs.iter().map(|l| l["id"].as_str().unwrap().to_owned()));
        if logs.len() < 1000 {
            assert_eq!(
                page["pagination"]["total_count"].as_u64().unwrap() as usize,
                present.len(),
                "no log is doubled"
            );
            break;
        }
    }
    let missing: Vec<&String> = acked.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged logs are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(acked.len() >= 4 * 200, "{} logs acknowledged", acked.len());
    let stats = get("/api/logs/stats".to_owned()).await;
    assert_eq!(stats["total_requests"], json!(present.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_logs_survive_sigkill_on_sqlite() {
    acknowledged_logs_survive_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_logs_survive_sigkill_on_postgres() {
    acknowledged_logs_survive_sigkill(Backend::Postgres).await;
}
