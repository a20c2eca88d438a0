//! Quick start on the embedded SQLite default: open a store by URL, append, read, upcast,
//! retry an optimistic decision and subscribe.
//!
//! Run with `cargo run -p ledger --example quickstart`; it writes `quickstart.db` in a temporary
//! directory and prints what it does. Pass a URL (`postgres://…` with `--features postgres`) to
//! run it on another store.

use std::time::Duration;

use futures::StreamExt;
use ledger::{AppendInput, ExpectedVersion, FieldMapper, ReadOptions, Stream, SubscribeOptions};
use serde::{Deserialize, Serialize};

/// Schema version 2 of an order event; version 1 called `cents` "amount" and had no currency.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    sku: String,
    cents: u64,
    currency: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("ledger-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let default_url = format!("sqlite://{}/quickstart.db", dir.display());
    let url = std::env::args().nth(1).unwrap_or(default_url);
    let store = ledger::open_with(
        &url,
        ledger::OpenOptions::new().table("orders").change_feed(true),
    )
    .await?;
    println!(
        "opened {url} ({} store {:?})",
        store.backend_kind(),
        store.name()
    );

    // An entry written by an older release, at schema version 1.
    let old = serde_json::json!({"sku": "A-1", "amount": 1250});
    store
        .append(
            "customer-7",
            vec![AppendInput::new(old)],
            ExpectedVersion::NoStream,
        )
        .await?;

    // Today's code reads and writes version 2, upcasting older entries on read.
    let orders = Stream::<OrderPlaced>::new(&store, "customer-7")?
        .schema_version(2)?
        .upcaster(
            FieldMapper::new(1)
                .rename("amount", "cents")
                .add_default("currency", "EUR".into()),
        );
    let placed = OrderPlaced {
        sku: "B-2".into(),
        cents: 990,
        currency: "USD".into(),
    };
    let input = AppendInput::new(placed).dedup_key("checkout-42");
    let outcome = orders
        .append_inputs(vec![input.clone()], ExpectedVersion::Exact(1))
        .await?;
    println!("appended: {outcome:?}");
    // A retry with the same dedup key is recognised and writes nothing.
    let retry = orders
        .append_inputs(vec![input], ExpectedVersion::Exact(1))
        .await?;
    println!("retried:  {retry:?}");

    for entry in orders.read(&ReadOptions::new()).await? {
        println!(
            "read v{} (written at schema {}): {:?}",
            entry.version, entry.schema_version, entry.payload
        );
    }

    // An optimistic decision: read the stream, decide, append expecting what was read; a
    // writer that got in between makes it read and decide again.
    let decided = orders
        .decide(3, |history| {
            // Orders above 20 EUR in all get one gift.
            let total: u64 = history.iter().map(|e| e.payload.cents).sum();
            let gifted = history.iter().any(|e| e.payload.sku == "GIFT");
            Ok(if total > 2_000 && !gifted {
                vec![OrderPlaced {
                    sku: "GIFT".into(),
                    cents: 0,
                    currency: "EUR".into(),
                }]
            } else {
                Vec::new()
            })
        })
        .await?;
    println!("decided: the stream is at version {}", decided.version);

    // Subscribe from the start: the two stored entries, then a live one.
    let options = SubscribeOptions::new().poll_interval(Duration::from_millis(50));
    let mut live = orders.subscribe(0, options);
    let writer = orders.clone();
    tokio::spawn(async move {
        let late = OrderPlaced {
            sku: "C-3".into(),
            cents: 100,
            currency: "EUR".into(),
        };
        writer.append(vec![late], ExpectedVersion::Exact(3)).await
    });
    for _ in 0..4 {
        let entry = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await?
            .ok_or("subscription ended")??;
        println!(
            "subscribed: v{} {} {}",
            entry.version, entry.payload.sku, entry.payload.cents
        );
    }

    let stat = orders.stat().await?;
    println!(
        "stream {} holds {} entries, at version {}",
        stat.stream, stat.count, stat.last_version
    );
    store.close().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
