//! `ledger-builds`: the build-event service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ledger_builds::config::{Overrides, Settings, SourceKind};
use ledger_builds::http::{ApiOptions, router};
use ledger_builds::{BuildService, BuildServiceOptions, KafkaSource, Outcome};

/// A CI build-event service with Probo-DB's REST API, on the ledger.
///
/// Settings are Probo-DB's YAML keys: host, port, serverName, version, database (sqlite:PATH
/// or postgres://…), buildsEventStream.plugin (Kafka, or Ledger for a stream of the service's
/// own ledger) and buildsEventStream.config (group, topic, version, brokers, offsetReset
/// latest|earliest, batch, librdkafka: further client settings). The defaults are
/// Probo-DB's; each -c file is layered over them in order (a later file wins, key by key), and
/// the flags and environment variables below win over every file. `ledger-builds config`
/// prints the result. Tables are created (migrated) at start.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A YAML settings file; repeat to layer several (later wins).
    #[arg(short = 'c', long = "config", global = true)]
    config: Vec<PathBuf>,
    /// Address the API listens on (`host`).
    #[arg(long, env = "LEDGER_BUILDS_HOST", global = true)]
    host: Option<String>,
    /// Port the API listens on; 0 picks a free one, printed at start (`port`).
    #[arg(long, env = "LEDGER_BUILDS_PORT", global = true)]
    port: Option<u16>,
    /// The database: sqlite:PATH (created if missing) or postgres://… (`database`).
    #[arg(long, env = "LEDGER_BUILDS_DATABASE", global = true)]
    database: Option<String>,
    /// Kafka bootstrap brokers (`buildsEventStream.config.brokers`).
    #[arg(long, env = "LEDGER_KAFKA_BROKERS", global = true)]
    brokers: Option<String>,
    /// The topic, or the stream for the Ledger source (`buildsEventStream.config.topic`).
    #[arg(long, env = "LEDGER_BUILDS_TOPIC", global = true)]
    topic: Option<String>,
    /// The consumer group (`buildsEventStream.config.group`).
    #[arg(long, env = "LEDGER_BUILDS_GROUP", global = true)]
    group: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consumes build events and serves the API (the default).
    Serve,
    /// Stores the JSON lines on standard input (wire messages) and applies them, then exits;
    /// lines already stored are skipped, so a replay can be repeated.
    Replay,
    /// Prints the settings in effect, as JSON.
    Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ledger-builds: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let overrides = Overrides {
        host: cli.host,
        port: cli.port,
        database: cli.database,
        brokers: cli.brokers,
        topic: cli.topic,
        group: cli.group,
    };
    let settings = Settings::load(&cli.config, &overrides)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config => {
            println!("{}", serde_json::to_string_pretty(&settings)?);
            Ok(())
        }
        Command::Replay => {
            let service =
                BuildService::open(&settings.database, BuildServiceOptions::default()).await?;
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            let outcomes = service.replay(stdin).await?;
            let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
            eprintln!(
                "ledger-builds: {} stored, {} already stored, {} dead-lettered",
                count(|o| matches!(o, Outcome::Stored)),
                count(|o| matches!(o, Outcome::Duplicate)),
                count(|o| matches!(o, Outcome::DeadLettered(_))),
            );
            service.ledger().close().await?;
            Ok(())
        }
        Command::Serve => serve(settings).await,
    }
}

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let service = BuildService::open(&settings.database, BuildServiceOptions::default()).await?;
    service.follow();
    let stream = settings.builds_event_stream.clone();
    let source = service.clone();
    let consuming = tokio::spawn(async move {
        let result = match stream.plugin {
            SourceKind::Kafka => match KafkaSource::new(stream.config) {
                Ok(kafka) => kafka.run(&source).await,
                Err(e) => Err(e),
            },
            SourceKind::Ledger => source.run_ledger_source(&stream.config.topic).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "the event source stopped");
        }
    });
    let listener = tokio::net::TcpListener::bind((settings.host.as_str(), settings.port)).await?;
    eprintln!(
        "ledger-builds: listening on http://{}",
        listener.local_addr()?
    );
    let api = ApiOptions {
        server_name: settings.server_name,
        version: settings.version,
    };
    axum::serve(listener, router(service.clone(), &api, &[]))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // Stored messages are durable already; what the source holds uncommitted is redelivered.
    consuming.abort();
    service.ledger().close().await?;
    eprintln!("ledger-builds: stopped");
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
