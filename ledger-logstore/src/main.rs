//! `ledger-logstore`: the log store's HTTP service.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ledger_logstore::http::{ApiOptions, router};
use ledger_logstore::{LogStore, LogStoreOptions, LogWriter, Retention, WhenFull, WriterOptions};

/// An LLM request-log store with Bifrost's /api/logs API, on the ledger.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the API, the OpenAPI document (/openapi.json) and the web page (/).
    Serve(Serve),
}

#[derive(Parser)]
struct Serve {
    /// The database: sqlite:PATH (created if missing) or postgres://…
    #[arg(long, env = "LEDGER_LOGSTORE_DB", default_value = "sqlite:logstore.db")]
    db: String,
    /// Address to listen on (port 0: any free port; the address chosen is printed).
    #[arg(long, env = "LEDGER_LOGSTORE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// An API key clients must present; repeat for several. None: the API is open.
    #[arg(
        long = "api-key",
        env = "LEDGER_LOGSTORE_API_KEYS",
        value_delimiter = ','
    )]
    api_keys: Vec<String>,
    /// Keep only figures, not what requests sent and received.
    #[arg(long)]
    no_content: bool,
    /// The most bytes one content field keeps.
    #[arg(long, default_value_t = 256 * 1024)]
    max_content_bytes: usize,
    /// Delete logs older than this many days (checked hourly). Default: keep everything.
    #[arg(long)]
    retention_days: Option<u32>,
    /// Logs the write queue holds.
    #[arg(long, default_value_t = 10_000)]
    queue: usize,
    /// What a full queue does: wait (backpressure) or drop (and count).
    #[arg(long, value_enum, default_value = "wait")]
    when_full: Full,
    /// The most logs one ingest request may carry.
    #[arg(long, default_value_t = 1000)]
    max_batch: usize,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum Full {
    Wait,
    Drop,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve(serve) = Cli::parse().command;
    match run(serve).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ledger-logstore: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(serve: Serve) -> Result<(), Box<dyn std::error::Error>> {
    let options = LogStoreOptions {
        content_logging: !serve.no_content,
        max_content_bytes: serve.max_content_bytes,
        retention: serve.retention_days.map(Retention::days),
        ..LogStoreOptions::default()
    };
    let store = LogStore::open(&serve.db, options).await?;
    store.follow()?;
    let upkeep = store.start_upkeep();
    let writer = Arc::new(LogWriter::new(
        store.clone(),
        WriterOptions {
            capacity: serve.queue,
            when_full: match serve.when_full {
                Full::Wait => WhenFull::Wait,
                Full::Drop => WhenFull::Drop,
            },
            ..WriterOptions::default()
        },
    ));
    let api = ApiOptions {
        api_keys: serve
            .api_keys
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect(),
        max_body_bytes: serve.max_body_bytes,
        max_batch: serve.max_batch,
        timeout: Duration::from_secs(30),
    };
    let listener = tokio::net::TcpListener::bind(serve.listen).await?;
    eprintln!(
        "ledger-logstore: listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, router(store.clone(), writer.clone(), api))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // Everything acknowledged is durable already; this writes what is still queued.
    writer.shutdown().await?;
    upkeep.abort();
    store.close().await?;
    eprintln!("ledger-logstore: stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
