//! The rows every system writes: the same payload, metadata and keys for baseline and ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use ledger_core::{AppendInput, EntryId, ReadOptions, Store, Stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Sizes;
use crate::report::{Report, Row};

/// Errors of a benchmark run.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The typed event every system reads back: what [`payload`] holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAdded {
    pub order_id: String,
    pub sku: String,
    pub quantity: u32,
    pub price_cents: u64,
    pub currency: String,
    pub note: String,
}

/// What a raw reader rebuilding state decodes of each row: the typed event and its metadata,
/// in order.
#[allow(dead_code)]
pub struct RawEvent {
    pub id: i64,
    pub version: i64,
    pub event: ItemAdded,
    pub metadata: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

/// Entries of the whole-stream read: one stream of this many events.
pub const LONG_STREAM: usize = 100_000;
/// Page size of the whole-stream reads.
pub const LONG_PAGE: u32 = 10_000;

/// A whole-stream read: one stream `long` of `events` events, read in pages of `page`.
#[derive(Debug, Clone, Copy)]
pub struct Long {
    pub events: usize,
    pub page: u32,
}

/// The whole-stream read of the SQL backends: [`LONG_STREAM`] events in pages of [`LONG_PAGE`].
pub const LONG: Long = Long {
    events: LONG_STREAM,
    page: LONG_PAGE,
};

/// One measured system: a run giving events per second.
pub type Run<'a> = Box<dyn Fn() -> LocalBoxFuture<'a, Result<f64>> + 'a>;

/// Boxes a run.
pub fn system<'a, F, Fut>(f: F) -> Run<'a>
where
    F: Fn() -> Fut + 'a,
    Fut: Future<Output = Result<f64>> + 'a,
{
    Box::new(move || Box::pin(f()))
}

/// The median of each run over `repeats` rounds, the runs taking turns within each round.
pub async fn medians(repeats: usize, runs: &[Run<'_>]) -> Result<Vec<f64>> {
    let mut samples = vec![Vec::new(); runs.len()];
    for _ in 0..repeats {
        for (run, samples) in runs.iter().zip(&mut samples) {
            samples.push(run().await?);
        }
    }
    Ok(samples.into_iter().map(median).collect())
}

/// Runs `writers` tasks at once, task `w` doing `work(w, unit)` for its share of `units` (the
/// units `u` with `u % writers == w`, in order); returns the wall time of the whole.
pub async fn in_parallel<F, Fut>(writers: usize, units: usize, work: F) -> Result<Duration>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let work = work.clone();
            tokio::spawn(async move {
                for unit in (w..units).step_by(writers) {
                    work(w, unit).await?;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

/// Single-entry append `unit` of writer `w`: its stream (25 per writer, so that writers never
/// share one) and its version there.
pub fn single_target(writers: usize, w: usize, unit: usize) -> (String, i64) {
    let k = unit / writers;
    (format!("s-{w}-{:02}", k % 25), (k / 25 + 1) as i64)
}

/// Reads the long stream through the typed API as a user rebuilding state would: every event
/// in order, `Stream::read_all` in pages of `long.page`. Returns events per second.
pub async fn read_typed(store: &Store, long: Long) -> Result<f64> {
    let stream: Stream<ItemAdded> = Stream::new(store, "long")?;
    let started = Instant::now();
    let mut all = stream.read_all(ReadOptions::new().limit(long.page));
    let (mut seen, mut last) = (0usize, 0u64);
    while let Some(entry) = all.next().await {
        let entry = entry?;
        assert_eq!(entry.version, last + 1, "typed read in order");
        last = entry.version;
        seen += 1;
    }
    let measured = rate(seen, started.elapsed());
    assert_eq!(seen, long.events, "typed read saw every event");
    Ok(measured)
}

/// Reads the long stream with `Store::read`, page after page of `long.page`.
pub async fn read_pages(store: &Store, long: Long) -> Result<f64> {
    let started = Instant::now();
    let (mut seen, mut options) = (0usize, ReadOptions::new().limit(long.page));
    loop {
        let page = store.read("long", &options).await?;
        seen += page.len();
        match page.last() {
            Some(last) if page.len() == long.page as usize => options.after = Some(last.id),
            _ => break,
        }
    }
    let measured = rate(seen, started.elapsed());
    assert_eq!(seen, long.events, "paged read saw every event");
    Ok(measured)
}

/// A raw reader's whole-stream read: pages after an id until a short page, each decoded by
/// `page`. Returns events per second.
pub async fn read_raw_pages<E>(
    long: Long,
    mut page: impl AsyncFnMut(i64) -> Result<Vec<E>>,
    id: impl Fn(&E) -> i64,
) -> Result<f64> {
    let started = Instant::now();
    let (mut seen, mut after) = (0usize, 0i64);
    loop {
        let rows = page(after).await?;
        seen += rows.len();
        match rows.last() {
            Some(last) if rows.len() == long.page as usize => after = id(last),
            _ => break,
        }
    }
    let measured = rate(seen, started.elapsed());
    assert_eq!(seen, long.events, "raw read saw every event");
    Ok(measured)
}

/// What a baseline decodes each row into: the same fields ledger returns.
#[allow(dead_code)]
pub struct RawEntry {
    pub id: i64,
    pub stream: String,
    pub version: i64,
    pub payload: Value,
    pub order_key: Option<String>,
    pub dedup_key: Option<String>,
    pub schema_version: i64,
    pub metadata: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
    pub annotations: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Reads stream `big` page by page with both systems in turn (the baseline's page after `id`,
/// then the same page through ledger), so that drift in the machine's state affects both alike.
/// Returns `(baseline, ledger)` entries per second.
pub async fn read_both(
    store: &Store,
    sizes: Sizes,
    mut raw_page: impl AsyncFnMut(i64) -> Result<Vec<RawEntry>>,
) -> Result<(f64, f64)> {
    let (mut raw_time, mut ledger_time) = (Duration::ZERO, Duration::ZERO);
    let (mut after, mut seen) = (0i64, 0usize);
    loop {
        let started = Instant::now();
        let raw = raw_page(after).await?;
        raw_time += started.elapsed();
        let started = Instant::now();
        let options = ReadOptions::new()
            .after(EntryId::new(after))
            .limit(sizes.page);
        let page = store.read("big", &options).await?;
        ledger_time += started.elapsed();
        assert_eq!(
            raw.iter().map(|e| e.id).collect::<Vec<_>>(),
            page.iter().map(|e| e.id.get()).collect::<Vec<_>>(),
            "both systems read the same page"
        );
        let Some(last) = page.last() else { break };
        after = last.id.get();
        seen += page.len();
    }
    assert_eq!(seen, sizes.read_entries, "every entry was read");
    Ok((rate(seen, raw_time), rate(seen, ledger_time)))
}

/// The cursor-read workload: stream `big` read with both systems in turn ([`read_both`]),
/// once untimed so that both start warm, then `sizes.repeats` times. Returns the medians,
/// `(baseline, ledger)`.
pub async fn cursor_reads(
    store: &Store,
    sizes: Sizes,
    mut raw_page: impl AsyncFnMut(i64) -> Result<Vec<RawEntry>>,
) -> Result<(f64, f64)> {
    read_both(store, sizes, &mut raw_page).await?;
    let (mut raw, mut led) = (Vec::new(), Vec::new());
    for _ in 0..sizes.repeats {
        let (r, l) = read_both(store, sizes, &mut raw_page).await?;
        raw.push(r);
        led.push(l);
    }
    Ok((median(raw), median(led)))
}

/// The whole-stream workloads on stream `long`: `typed`, a raw reader decoding the typed
/// event, against `Stream::read_all`, and `pages`, one decoding every field, against
/// `Store::read`, each with the text that describes its baseline. Runs them once untimed
/// (warm), then `sizes.repeats` times, and reports both rows as `backend`'s.
pub async fn whole_stream_reads<'a>(
    report: &mut Report,
    backend: &'static str,
    store: &'a Store,
    sizes: Sizes,
    typed: (Run<'a>, &str),
    pages: (Run<'a>, &str),
) -> Result<()> {
    let long = sizes.long;
    let runs = [
        typed.0,
        system(move || read_typed(store, long)),
        pages.0,
        system(move || read_pages(store, long)),
    ];
    medians(1, &runs).await?; // warm
    let [raw_typed, ledger_typed, raw_pages, ledger_pages] =
        medians(sizes.repeats, &runs).await?[..]
    else {
        unreachable!("four runs")
    };
    report.row(Row {
        backend,
        workload: format!(
            "read one stream of {} events, typed (`Stream::read_all`, pages of {})",
            long.events, long.page
        ),
        baseline: typed.1.into(),
        raw_eps: raw_typed,
        ledger_eps: ledger_typed,
        target: Some(0.9),
    });
    report.row(Row {
        backend,
        workload: format!(
            "read one stream of {} events, `Store::read` pages of {}",
            long.events, long.page
        ),
        baseline: pages.1.into(),
        raw_eps: raw_pages,
        ledger_eps: ledger_pages,
        target: Some(0.9),
    });
    Ok(())
}

/// Payload of event `n` (about 200 bytes of JSON, like an order line).
pub fn payload(n: usize) -> Value {
    json!({
        "order_id": format!("order-{:08}", n / 10),
        "sku": format!("SKU-{:05}", n % 5_000),
        "quantity": (n % 7) + 1,
        "price_cents": 1_000 + (n % 9_000),
        "currency": "EUR",
        "note": "standard delivery, leave at the front desk if nobody answers",
    })
}

/// Metadata of event `n` (two keys).
pub fn metadata(n: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("correlation_id".to_owned(), format!("corr-{n:010}")),
        ("user_id".to_owned(), format!("user-{:06}", n % 1_000)),
    ])
}

/// Dedup key of event `n`.
pub fn dedup_key(n: usize) -> String {
    format!("evt-{n:012}")
}

/// The ledger input for event `n`.
pub fn input(n: usize) -> AppendInput {
    let mut input = AppendInput::new(payload(n)).dedup_key(dedup_key(n));
    input.metadata = metadata(n);
    input
}

/// Median of measurements (events per second).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Events per second.
pub fn rate(events: usize, elapsed: std::time::Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}
