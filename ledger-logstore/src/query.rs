//! Searches, stats, histograms and filter data over the read model.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Figures, aggregate, bucket_start};
use crate::db::{Cell, Db, Kind, Sql, Tx};
use crate::error::{Error, Result};
use crate::filter::{Order, Pagination, SearchFilters, SortBy, micros};
use crate::model::Log;
use crate::readmodel::decode;

/// A page of a search, as Bifrost's `/api/logs` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The page's logs, without content but the last input message.
    pub logs: Vec<Log>,
    /// The page asked for, and how many logs match in all.
    pub pagination: PageInfo,
    /// `total_requests`: how many logs match (the other figures come from [`crate::LogStore::stats`]).
    pub stats: SearchStats,
    /// Whether the store holds any log at all (to tell "no logs yet" from "no match").
    pub has_logs: bool,
}

/// The page of a [`SearchResult`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PageInfo {
    /// Logs per page.
    pub limit: u32,
    /// Logs skipped.
    pub offset: u64,
    /// The sort field.
    pub sort_by: SortBy,
    /// The direction.
    pub order: Order,
    /// How many logs match, counted in the same snapshot as the page.
    pub total_count: u64,
}

/// Figures over the logs that match a filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchStats {
    /// Logs matched (`processing` ones included).
    pub total_requests: u64,
    /// Percent of finished logs that succeeded.
    pub success_rate: f64,
    /// Mean latency of finished logs, ms.
    pub average_latency: f64,
    /// Tokens of finished logs.
    pub total_tokens: i64,
    /// Cost of finished logs, USD.
    pub total_cost: f64,
}

pub(crate) async fn find(db: &Db, id: &str) -> Result<Log> {
    let mut sql = Sql::new("SELECT body FROM logstore_bodies WHERE id = ");
    sql.bind(id);
    let body = db
        .fetch_texts(&sql)
        .await?
        .pop()
        .ok_or_else(|| Error::NotFound(id.to_owned()))?;
    decode(&body)
}

/// How many logs match `filters`.
async fn count(tx: &mut Tx, filters: &SearchFilters) -> Result<u64> {
    let figures = aggregate(tx, filters, &[], None, None).await?;
    Ok(figures.values().map(|f| f.requests).sum::<i64>() as u64)
}

pub(crate) async fn search(
    db: &Db,
    filters: &SearchFilters,
    page: &Pagination,
) -> Result<SearchResult> {
    filters.validate()?;
    page.validate()?;
    let mut select = Sql::new("SELECT id FROM logstore_logs");
    filters.push_where(&mut select, &[]);
    page.push_order(&mut select);
    // One snapshot: the count always agrees with the pages.
    let mut tx = db.snapshot().await?;
    let total = count(&mut tx, filters).await?;
    // The page's ids from the narrow table, then their summaries by key.
    let ids = tx.fetch_texts(&select).await?;
    let mut summaries = BTreeMap::new();
    if !ids.is_empty() {
        let mut sql = Sql::new("SELECT id, summary FROM logstore_bodies WHERE id IN ");
        sql.bind_list(ids.iter().map(String::as_str));
        for row in tx.fetch(&sql, &[Kind::Text, Kind::Text]).await? {
            let mut cells = row.into_iter();
            let id = cells.next().and_then(Cell::text).unwrap_or_default();
            summaries.insert(id, cells.next().and_then(Cell::text).unwrap_or_default());
        }
    }
    let has_logs = if ids.is_empty() {
        let any = Sql::new("SELECT id FROM logstore_logs LIMIT 1");
        !tx.fetch_texts(&any).await?.is_empty()
    } else {
        true
    };
    tx.commit().await?;
    let logs = ids
        .iter()
        .filter_map(|id| summaries.get(id))
        .map(|json| decode(json))
        .collect::<Result<Vec<_>>>()?;
    Ok(SearchResult {
        logs,
        pagination: PageInfo {
            limit: page.limit,
            offset: page.offset,
            sort_by: page.sort_by,
            order: page.order,
            total_count: total,
        },
        stats: SearchStats {
            total_requests: total,
            ..SearchStats::default()
        },
        has_logs,
    })
}

const FINISHED: &str = "status IN ('success', 'error')";

pub(crate) async fn stats(db: &Db, filters: &SearchFilters) -> Result<SearchStats> {
    filters.validate()?;
    let mut tx = db.snapshot().await?;
    let by_status = aggregate(&mut tx, filters, &[], None, None).await?;
    tx.commit().await?;
    let mut all = 0;
    let mut finished = Figures::default();
    let mut success = 0;
    for ((_, _, status), figures) in &by_status {
        all += figures.requests;
        if status == "success" || status == "error" {
            finished.add(figures, 1);
        }
        if status == "success" {
            success += figures.requests;
        }
    }
    let ratio = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
    Ok(SearchStats {
        total_requests: all as u64,
        success_rate: ratio(success as f64, finished.requests as f64) * 100.0,
        average_latency: ratio(finished.latency_sum, finished.latency_count as f64),
        total_tokens: finished.total_tokens,
        total_cost: finished.cost,
    })
}

/// Which histogram: Bifrost's `/api/logs/histogram*` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistogramKind {
    /// Requests, successes and errors.
    Requests,
    /// Prompt, completion, total and cached tokens.
    Tokens,
    /// Cost, in all and by model.
    Cost,
    /// Requests by model.
    Models,
    /// Latency mean and percentiles.
    Latency,
    /// Cost by provider.
    ProviderCost,
    /// Tokens by provider.
    ProviderTokens,
    /// Latency by provider.
    ProviderLatency,
}

impl HistogramKind {
    fn group(self) -> Option<&'static str> {
        match self {
            HistogramKind::Cost | HistogramKind::Models => Some("model"),
            HistogramKind::ProviderCost
            | HistogramKind::ProviderTokens
            | HistogramKind::ProviderLatency => Some("provider"),
            _ => None,
        }
    }

    fn latency(self) -> bool {
        matches!(
            self,
            HistogramKind::Latency | HistogramKind::ProviderLatency
        )
    }
}

/// A histogram: buckets of `bucket_size_seconds`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// The buckets.
    pub buckets: Vec<Bucket>,
    /// Bucket width in seconds.
    pub bucket_size_seconds: i64,
    /// For by-model histograms: the models present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// For by-provider histograms: the providers present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
}

/// One bucket: its start and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket's start (UTC).
    pub timestamp: DateTime<Utc>,
    /// The figures, by histogram kind.
    #[serde(flatten)]
    pub values: BucketValues,
}

/// Request counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Finished requests.
    pub total: u64,
    /// Successes.
    pub success: u64,
    /// Errors.
    pub error: u64,
}

/// Token sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    /// Input tokens.
    pub prompt_tokens: i64,
    /// Output tokens.
    pub completion_tokens: i64,
    /// All tokens.
    pub total_tokens: i64,
    /// Input tokens read from cache.
    pub cached_read_tokens: i64,
}

/// Latency figures, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Mean.
    pub avg_latency: f64,
    /// 90th percentile.
    pub p90_latency: f64,
    /// 95th percentile.
    pub p95_latency: f64,
    /// 99th percentile.
    pub p99_latency: f64,
    /// Requests with a latency.
    pub total_requests: u64,
}

/// The figures of a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BucketValues {
    /// [`HistogramKind::Requests`].
    Requests {
        /// Requests.
        count: u64,
        /// Successes.
        success: u64,
        /// Errors.
        error: u64,
    },
    /// [`HistogramKind::Tokens`].
    Tokens(Tokens),
    /// [`HistogramKind::Cost`].
    Cost {
        /// Cost of the bucket.
        total_cost: f64,
        /// Cost by model.
        by_model: BTreeMap<String, f64>,
    },
    /// [`HistogramKind::Models`].
    Models {
        /// Counts by model.
        by_model: BTreeMap<String, Counts>,
    },
    /// [`HistogramKind::Latency`].
    Latency(LatencyStats),
    /// [`HistogramKind::ProviderCost`].
    ProviderCost {
        /// Cost of the bucket.
        total_cost: f64,
        /// Cost by provider.
        by_provider: BTreeMap<String, f64>,
    },
    /// [`HistogramKind::ProviderTokens`].
    ProviderTokens {
        /// Tokens by provider.
        by_provider: BTreeMap<String, Tokens>,
    },
    /// [`HistogramKind::ProviderLatency`].
    ProviderLatency {
        /// Latency by provider.
        by_provider: BTreeMap<String, LatencyStats>,
    },
}

/// The most buckets one histogram may have.
pub const MAX_BUCKETS: i64 = 10_000;

/// Bifrost's bucket width for a time range: a minute for under two hours up to 30 days for a
/// year or more; an hour without a range.
pub fn bucket_for_range(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> i64 {
    let (Some(start), Some(end)) = (start, end) else {
        return 3600;
    };
    let hours = (end - start).num_hours();
    let days = hours / 24;
    match () {
        _ if days >= 365 => 30 * 86_400,
        _ if days >= 90 => 7 * 86_400,
        _ if days >= 30 => 3 * 86_400,
        _ if days >= 7 => 86_400,
        _ if days >= 3 => 8 * 3600,
        _ if hours >= 24 => 3600,
        _ if hours >= 2 => 600,
        _ => 60,
    }
}

/// Per bucket and group: what every histogram kind is made from.
#[derive(Debug, Clone, Default)]
struct GroupFigures {
    /// Of the finished logs.
    finished: Figures,
    /// Successes among them.
    success: i64,
    /// Their latencies, sorted (latency histograms only).
    latencies: Vec<f64>,
}

impl GroupFigures {
    fn add(&mut self, other: &GroupFigures) {
        self.finished.add(&other.finished, 1);
        self.success += other.success;
        self.latencies.extend_from_slice(&other.latencies);
    }

    fn counts(&self) -> Counts {
        let total = self.finished.requests as u64;
        let success = self.success as u64;
        Counts {
            total,
            success,
            error: total - success,
        }
    }

    fn tokens(&self) -> Tokens {
        Tokens {
            prompt_tokens: self.finished.prompt_tokens,
            completion_tokens: self.finished.completion_tokens,
            total_tokens: self.finished.total_tokens,
            cached_read_tokens: self.finished.cached_read_tokens,
        }
    }
}

pub(crate) async fn histogram(
    db: &Db,
    kind: HistogramKind,
    filters: &SearchFilters,
    bucket_seconds: i64,
) -> Result<Histogram> {
    filters.validate()?;
    if bucket_seconds <= 0 {
        return Err(Error::invalid(
            "bucket_size_seconds",
            format!("{bucket_seconds} is not a positive number of seconds"),
        ));
    }
    let range = match (filters.start_time, filters.end_time) {
        (Some(start), Some(end)) => {
            let first = start.timestamp().div_euclid(bucket_seconds) * bucket_seconds;
            let n = (end.timestamp() - first) / bucket_seconds + 1;
            if n > MAX_BUCKETS {
                return Err(Error::invalid(
                    "bucket_size_seconds",
                    format!(
                        "{n} buckets of {bucket_seconds} s over the range; at most {MAX_BUCKETS}"
                    ),
                ));
            }
            Some((first, n))
        }
        _ => None,
    };
    let group = kind.group().unwrap_or("''");
    let mut tx = db.snapshot().await?;
    let figures = aggregate(
        &mut tx,
        filters,
        &[FINISHED],
        Some(bucket_seconds),
        kind.group(),
    )
    .await?;
    let mut cells: BTreeMap<i64, BTreeMap<String, GroupFigures>> = BTreeMap::new();
    for ((bucket, name, status), f) in figures {
        let cell = cells.entry(bucket).or_default().entry(name).or_default();
        cell.finished.add(&f, 1);
        if status == "success" {
            cell.success += f.requests;
        }
    }
    if kind.latency() {
        // Percentiles need every latency: loaded sorted, interpolated below.
        let mut sql = Sql::new(format!(
            "SELECT {} AS b, {group}, latency FROM logstore_logs",
            bucket_start(bucket_seconds)
        ));
        filters.push_where(&mut sql, &[FINISHED, "latency IS NOT NULL"]);
        sql.push(" ORDER BY latency");
        for row in tx
            .fetch(&sql, &[Kind::Int, Kind::Text, Kind::Float])
            .await?
        {
            let mut row = row.into_iter();
            let bucket = row.next().map_or(0, |c| c.int());
            let name = row.next().and_then(Cell::text).unwrap_or_default();
            let latency = row.next().and_then(|c| c.float()).unwrap_or(0.0);
            cells
                .entry(bucket)
                .or_default()
                .entry(name)
                .or_default()
                .latencies
                .push(latency);
        }
    }
    tx.commit().await?;
    if let Some((first, n)) = range {
        for i in 0..n {
            cells.entry(first + i * bucket_seconds).or_default();
        }
    }
    let names: Vec<String> = {
        let mut all: Vec<String> = cells.values().flat_map(|g| g.keys().cloned()).collect();
        all.sort();
        all.dedup();
        all
    };
    let buckets = cells
        .into_iter()
        .map(|(start, groups)| Bucket {
            timestamp: Utc
                .timestamp_opt(start, 0)
                .single()
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            values: bucket_values(kind, groups),
        })
        .collect();
    let (models, providers) = match kind.group() {
        Some("model") => (Some(names), None),
        Some(_) => (None, Some(names)),
        None => (None, None),
    };
    Ok(Histogram {
        buckets,
        bucket_size_seconds: bucket_seconds,
        models,
        providers,
    })
}

fn latency_stats(cell: &GroupFigures) -> LatencyStats {
    let n = cell.latencies.len();
    LatencyStats {
        avg_latency: if n > 0 {
            cell.finished.latency_sum / n as f64
        } else {
            0.0
        },
        p90_latency: percentile(&cell.latencies, 0.90),
        p95_latency: percentile(&cell.latencies, 0.95),
        p99_latency: percentile(&cell.latencies, 0.99),
        total_requests: n as u64,
    }
}

/// The `p` quantile of sorted `values`, interpolated between ranks (`rank = p * (n - 1)`).
fn percentile(values: &[f64], p: f64) -> f64 {
    match values.len() {
        0 => 0.0,
        n => {
            let rank = p * (n - 1) as f64;
            let low = rank.floor() as usize;
            let high = rank.ceil() as usize;
            values[low] + (values[high] - values[low]) * (rank - low as f64)
        }
    }
}

fn bucket_values(kind: HistogramKind, groups: BTreeMap<String, GroupFigures>) -> BucketValues {
    let sum = |groups: &BTreeMap<String, GroupFigures>| {
        let mut all = GroupFigures::default();
        groups.values().for_each(|cell| all.add(cell));
        all.latencies.sort_by(f64::total_cmp);
        all
    };
    match kind {
        HistogramKind::Requests => {
            let counts = sum(&groups).counts();
            BucketValues::Requests {
                count: counts.total,
                success: counts.success,
                error: counts.error,
            }
        }
        HistogramKind::Tokens => BucketValues::Tokens(sum(&groups).tokens()),
        HistogramKind::Latency => BucketValues::Latency(latency_stats(&sum(&groups))),
        HistogramKind::Cost => BucketValues::Cost {
            total_cost: sum(&groups).finished.cost,
            by_model: costs(&groups),
        },
        HistogramKind::ProviderCost => BucketValues::ProviderCost {
            total_cost: sum(&groups).finished.cost,
            by_provider: costs(&groups),
        },
        HistogramKind::Models => BucketValues::Models {
            by_model: groups
                .iter()
                .map(|(k, c)| (k.clone(), c.counts()))
                .collect(),
        },
        HistogramKind::ProviderTokens => BucketValues::ProviderTokens {
            by_provider: groups
                .iter()
                .map(|(k, c)| (k.clone(), c.tokens()))
                .collect(),
        },
        HistogramKind::ProviderLatency => BucketValues::ProviderLatency {
            by_provider: groups
                .iter()
                .map(|(k, c)| (k.clone(), latency_stats(c)))
                .collect(),
        },
    }
}

fn costs(groups: &BTreeMap<String, GroupFigures>) -> BTreeMap<String, f64> {
    groups
        .iter()
        .filter(|(_, c)| c.finished.cost > 0.0)
        .map(|(k, c)| (k.clone(), c.finished.cost))
        .collect()
}

/// An id and its display name (a key, a virtual key, a routing rule).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyPair {
    /// The id.
    pub id: String,
    /// The name, if one was logged.
    pub name: Option<String>,
}

/// What the filter dropdowns offer: values seen in the last 30 days, at most
/// [`MAX_FILTER_VALUES`] of each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterData {
    /// Models.
    pub models: Vec<String>,
    /// Providers.
    pub providers: Vec<String>,
    /// Provider keys.
    pub selected_keys: Vec<KeyPair>,
    /// Virtual keys.
    pub virtual_keys: Vec<KeyPair>,
    /// Routing rules.
    pub routing_rules: Vec<KeyPair>,
    /// Routing engines.
    pub routing_engines: Vec<String>,
    /// Metadata keys and their values (at most 100 each).
    pub metadata_keys: BTreeMap<String, Vec<String>>,
}

/// The most values of each kind [`FilterData`] lists.
pub const MAX_FILTER_VALUES: usize = 500;

/// How far back filter data looks.
pub const FILTER_DATA_DAYS: i64 = 30;

pub(crate) async fn filter_data(db: &Db, now: DateTime<Utc>) -> Result<FilterData> {
    let mut sql = Sql::new("SELECT kind, value, name FROM logstore_dimensions WHERE last_seen >= ");
    sql.bind(micros(now - Duration::days(FILTER_DATA_DAYS)))
        .push(" ORDER BY kind, value");
    let mut data = FilterData::default();
    for row in db
        .fetch(&sql, &[Kind::Text, Kind::Text, Kind::Text])
        .await?
    {
        let mut row = row.into_iter();
        let kind = row.next().and_then(Cell::text).unwrap_or_default();
        let value = row.next().and_then(Cell::text).unwrap_or_default();
        let name = row.next().and_then(Cell::text);
        let pair = || KeyPair {
            id: value.clone(),
            name: name.clone(),
        };
        let room = |n: usize| n < MAX_FILTER_VALUES;
        match kind.as_str() {
            "model" if room(data.models.len()) => data.models.push(value),
            "provider" if room(data.providers.len()) => data.providers.push(value),
            "selected_key" if room(data.selected_keys.len()) => data.selected_keys.push(pair()),
            "virtual_key" if room(data.virtual_keys.len()) => data.virtual_keys.push(pair()),
            "routing_rule" if room(data.routing_rules.len()) => data.routing_rules.push(pair()),
            "routing_engine" if room(data.routing_engines.len()) => {
                data.routing_engines.push(value)
            }
            _ => {
                if let Some(key) = kind.strip_prefix("metadata:") {
                    let keys = data.metadata_keys.len();
                    let values = data.metadata_keys.entry(key.to_owned()).or_default();
                    if values.len() < 100 && keys <= MAX_FILTER_VALUES {
                        values.push(value);
                    }
                }
            }
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v = [10.0, 20.0, 30.0, 40.0, 50.0];
        assert_eq!(percentile(&v, 0.5), 30.0);
        assert!((percentile(&v, 0.9) - 46.0).abs() < 1e-9);
        assert_eq!(percentile(&[], 0.9), 0.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn buckets_widen_with_the_range_as_bifrost_chooses() {
        let end = Utc::now();
        let cases = [
            (Duration::minutes(30), 60),
            (Duration::hours(3), 600),
            (Duration::hours(30), 3600),
            (Duration::days(7), 86_400),
            (Duration::days(400), 30 * 86_400),
        ];
        for (span, bucket) in cases {
            assert_eq!(
                bucket_for_range(Some(end - span), Some(end)),
                bucket,
                "{span}"
            );
        }
        assert_eq!(bucket_for_range(None, Some(end)), 3600);
    }
}
