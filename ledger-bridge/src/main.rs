//! `ledger-bridge`: replicates the store at one URL into the store at another until stopped
//! (Ctrl-C or SIGTERM, after the page in hand), or once with `--once`.
//!
//! ```text
//! ledger-bridge --source 'postgres://localhost/shop?table=orders&change_feed=true' \
//!               --sink 'sqlite://replica.db?table=orders' --name orders-replica --parallel 4
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use ledger_bridge::{Bridge, BridgeOptions};
use ledger_core::MutationKind;

#[derive(Debug, Parser)]
#[command(
    name = "ledger-bridge",
    version,
    about = "Replicates one ledger store into another"
)]
struct Args {
    /// The source store's URL; its change feed must be on (`change_feed=true`).
    #[arg(long)]
    source: String,
    /// The sink store's URL.
    #[arg(long)]
    sink: String,
    /// The bridge's name: its cursor in the sink.
    #[arg(long, default_value = "bridge")]
    name: String,
    /// Records per page.
    #[arg(long, default_value_t = 500)]
    batch: u32,
    /// Lanes applied at once (1 to 16).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Longest wait for new records once caught up, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Mutation kinds not to apply (append, set_tags, set_annotations, trim, rename).
    #[arg(long, value_delimiter = ',', value_parser = kind)]
    skip: Vec<MutationKind>,
    /// Apply what the source holds now, then exit.
    #[arg(long)]
    once: bool,
}

fn kind(name: &str) -> Result<MutationKind, String> {
    MutationKind::ALL
        .into_iter()
        .find(|k| k.as_str() == name)
        .ok_or_else(|| {
            let kinds: Vec<&str> = MutationKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "unknown mutation kind {name:?}: one of {}",
                kinds.join(", ")
            )
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ledger-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let source = ledger::open(&args.source).await?;
    let sink = ledger::open(&args.sink).await?;
    let options = BridgeOptions::new(args.name)
        .batch(args.batch)
        .parallel(args.parallel)
        .poll_interval(Duration::from_millis(args.poll_ms))
        .skip(args.skip);
    let bridge = Bridge::new(&source, &sink, options)?;
    let stats = if args.once {
        bridge.run_once().await?
    } else {
        bridge.run_until(shutdown()).await?
    };
    eprintln!(
        "ledger-bridge: applied {} records, skipped {}, at position {:?}",
        stats.applied,
        stats.skipped_total(),
        stats.position
    );
    source.close().await?;
    sink.close().await?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
