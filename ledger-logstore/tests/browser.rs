//! The web page in a real headless Chromium, driven through ChromeDriver (WebDriver over HTTP):
//! it lists logs, filters them and opens one. With `LEDGER_LOGSTORE_SCREENSHOT=FILE.png` it
//! also saves a screenshot of the page with a log open.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ledger_logstore::http::{ApiOptions, router};
use ledger_logstore::{LogStatus, LogWriter, WriterOptions};
use serde_json::{Value, json};
use support::{Backend, chat, open};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A WebDriver session in headless Chromium.
struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: `cargo xtask services up` installs Debian's chromium and chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        // Without the networking flags Chromium keeps calling home, which this sandbox refuses.
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1400,820".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Browser {
            http,
            session: format!("{base}/session/{session}"),
            _driver: driver,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(response["value"]["error"].is_null(), "{path}: {response}");
        response["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits until `condition` (a JavaScript expression) is true.
    async fn until(&self, condition: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if self.script(&format!("return !!({condition});")).await == json!(true) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never got to: {condition}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{id}/text"),
            Value::Null,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let http = self.http.clone();
        let session = self.session.clone();
        // Best effort: the driver is killed with the test anyway.
        tokio::spawn(async move { http.delete(session).send().await });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_filters_and_opens_logs_in_chromium() {
    let store = open(Backend::Sqlite).await;
    let logs: Vec<_> = (0..12)
        .map(|i| {
            let mut log = chat(&format!("req-{i:02}"), i * 5);
            log.timestamp = chrono::Utc::now() - chrono::Duration::minutes(60 - i * 5);
            if i % 3 == 0 {
                log.provider = "anthropic".into();
                log.model = "claude-sonnet".into();
            }
            if i == 7 {
                log.status = LogStatus::Error;
                log.error_details = Some(json!({"error": {"message": "rate limited"}}));
            }
            log
        })
        .collect();
    store.batch_create_if_not_exists(logs).await.unwrap();
    let writer = Arc::new(LogWriter::new(store.clone(), WriterOptions::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(store, writer, ApiOptions::default());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let browser = Browser::start().await;
    browser.go(&base).await;
    browser
        .until("document.body.dataset.ready === 'true'")
        .await;
    assert_eq!(
        browser
            .script("return document.querySelectorAll('#logs tr').length;")
            .await,
        json!(12)
    );
    assert!(
        browser.text("#stats").await.starts_with("12 requests"),
        "{}",
        browser.text("#stats").await
    );
    assert_eq!(
        browser.text("#logs tr:first-child td:nth-child(3)").await,
        "gpt-4o",
        "newest first"
    );

    // Filter by model, through the dropdown filled from the filter data.
    browser.click("#model option[value='claude-sonnet']").await;
    browser.click("#search").await;
    browser
        .until("document.querySelectorAll('#logs tr').length === 4")
        .await;
    let models = browser
        .script("return [...document.querySelectorAll('#logs tr td:nth-child(3)')].map(td => td.textContent);")
        .await;
    assert_eq!(models, json!(vec!["claude-sonnet"; 4]));
    assert!(browser.text("#stats").await.starts_with("4 requests"));

    // Search content, then open the one match.
    browser.click("#model option:first-child").await;
    browser
        .type_into("#content", "question number req-07")
        .await;
    browser.click("#search").await;
    browser
        .until("document.querySelectorAll('#logs tr').length === 1")
        .await;
    browser.click("#logs tr").await;
    browser
        .until("document.getElementById('detail-id') !== null")
        .await;
    assert_eq!(browser.text("#detail-id").await, "req-07");
    let detail = browser.text("#detail").await;
    assert!(detail.contains("error"), "{detail}");
    assert!(
        detail.contains("rate limited"),
        "the error is shown: {detail}"
    );
    assert!(
        detail.contains("question number req-07"),
        "the input is shown: {detail}"
    );

    if let Ok(path) = std::env::var("LEDGER_LOGSTORE_SCREENSHOT") {
        browser.click("#model option:first-child").await;
        let content = browser.element("#content").await;
        browser
            .call(
                reqwest::Method::POST,
                &format!("/element/{content}/clear"),
                json!({}),
            )
            .await;
        browser.click("#search").await;
        browser
            .until("document.querySelectorAll('#logs tr').length === 12")
            .await;
        browser.click("#logs tr:nth-child(5)").await;
        browser
            .until("document.getElementById('detail-id') !== null")
            .await;
        let png = browser
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
}
