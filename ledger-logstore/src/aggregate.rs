//! Hourly roll-ups of the logs, kept exact: the read model adds and subtracts each log's figures
//! in the transaction that inserts or deletes it. Counts, stats and histograms read whole hours
//! from the roll-up and the partial hours at a range's edges from the logs themselves, so they
//! are as fast as a materialized view and always agree with the pages (Bifrost's hourly view
//! rounds ranges out to whole hours and lags its refresh).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use crate::db::{Kind, Param, Sql, Tx};
use crate::error::Result;
use crate::filter::{SearchFilters, micros};
use crate::model::Log;

const HOUR_US: i64 = 3_600_000_000;

/// The figures of a set of logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Figures {
    pub requests: i64,
    pub latency_sum: f64,
    pub latency_count: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cached_read_tokens: i64,
    /// The sum of positive costs.
    pub cost: f64,
}

impl Figures {
    pub(crate) fn add(&mut self, other: &Figures, sign: i64) {
        self.requests += sign * other.requests;
        self.latency_sum += sign as f64 * other.latency_sum;
        self.latency_count += sign * other.latency_count;
        self.prompt_tokens += sign * other.prompt_tokens;
        self.completion_tokens += sign * other.completion_tokens;
        self.total_tokens += sign * other.total_tokens;
        self.cached_read_tokens += sign * other.cached_read_tokens;
        self.cost += sign as f64 * other.cost;
    }
}

/// The dimensions of a roll-up row: hour, provider, model, status, request type. (Keys and
/// rules are left out: with them the roll-up grows toward the size of the logs.)
pub(crate) type Dims = (i64, String, String, String, String);

/// A log's roll-up row and figures.
fn contribution(log: &Log) -> (Dims, Figures) {
    let ts = micros(log.timestamp);
    let dims = (
        ts.div_euclid(HOUR_US) * HOUR_US,
        log.provider.clone(),
        log.model.clone(),
        log.status.as_str().to_owned(),
        log.object.clone(),
    );
    let [prompt, completion, total, cached] = log.tokens();
    let figures = Figures {
        requests: 1,
        latency_sum: log.latency.unwrap_or(0.0),
        latency_count: i64::from(log.latency.is_some()),
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
        cached_read_tokens: cached,
        cost: log.cost.filter(|c| *c > 0.0).unwrap_or(0.0),
    };
    (dims, figures)
}

/// Adds (`sign` 1) or subtracts (`sign` -1) `logs` in the roll-up; call it with the logs just
/// inserted, or about to be deleted, in the same transaction.
pub(crate) async fn count_logs<'a>(
    tx: &mut Tx,
    logs: impl IntoIterator<Item = &'a Log>,
    sign: i64,
) -> Result<()> {
    let mut deltas: BTreeMap<Dims, Figures> = BTreeMap::new();
    for log in logs {
        let (dims, figures) = contribution(log);
        deltas.entry(dims).or_default().add(&figures, sign);
    }
    let rows: Vec<(Dims, Figures)> = deltas.into_iter().collect();
    for chunk in rows.chunks(400) {
        let mut sql = Sql::new(
            "INSERT INTO logstore_hourly (ts, provider, model, status, object_type, \
             requests, latency_sum, \
             latency_count, prompt_tokens, completion_tokens, total_tokens, cached_read_tokens, \
             cost) VALUES ",
        );
        for (i, (d, f)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_list([
                Param::from(d.0),
                d.1.clone().into(),
                d.2.clone().into(),
                d.3.clone().into(),
                d.4.clone().into(),
                f.requests.into(),
                Some(f.latency_sum).into(),
                f.latency_count.into(),
                f.prompt_tokens.into(),
                f.completion_tokens.into(),
                f.total_tokens.into(),
                f.cached_read_tokens.into(),
                Some(f.cost).into(),
            ]);
        }
        sql.push(
            " ON CONFLICT (ts, provider, model, status, object_type) DO UPDATE SET \
             requests = logstore_hourly.requests + excluded.requests, \
             latency_sum = logstore_hourly.latency_sum + excluded.latency_sum, \
             latency_count = logstore_hourly.latency_count + excluded.latency_count, \
             prompt_tokens = logstore_hourly.prompt_tokens + excluded.prompt_tokens, \
             completion_tokens = logstore_hourly.completion_tokens + excluded.completion_tokens, \
             total_tokens = logstore_hourly.total_tokens + excluded.total_tokens, \
             cached_read_tokens = logstore_hourly.cached_read_tokens + excluded.cached_read_tokens, \
             cost = logstore_hourly.cost + excluded.cost",
        );
        tx.execute(&sql).await?;
    }
    Ok(())
}

/// Where figures are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Logs,
    Hourly,
}

impl Source {
    fn from(self) -> &'static str {
        match self {
            Source::Logs => "logstore_logs",
            Source::Hourly => "logstore_hourly",
        }
    }

    /// Requests, latency sum and count, the four token sums and the cost.
    fn figures(self) -> &'static str {
        match self {
            Source::Logs => {
                "COUNT(*), CAST(COALESCE(SUM(latency), 0.0) AS DOUBLE PRECISION), COUNT(latency), \
                 CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(cached_read_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN cost > 0 THEN cost ELSE 0.0 END), 0.0) AS DOUBLE PRECISION)"
            }
            Source::Hourly => {
                "CAST(SUM(requests) AS BIGINT), CAST(SUM(latency_sum) AS DOUBLE PRECISION), \
                 CAST(SUM(latency_count) AS BIGINT), CAST(SUM(prompt_tokens) AS BIGINT), \
                 CAST(SUM(completion_tokens) AS BIGINT), CAST(SUM(total_tokens) AS BIGINT), \
                 CAST(SUM(cached_read_tokens) AS BIGINT), CAST(SUM(cost) AS DOUBLE PRECISION)"
            }
        }
    }
}

/// Figures keyed by bucket start (seconds; 0 without buckets), group value (`''` without a
/// group) and status.
pub(crate) type Aggregates = BTreeMap<(i64, String, String), Figures>;

/// Whether the roll-up can answer for `filters`: only filters on its dimensions and time.
fn rollup_answers(filters: &SearchFilters) -> bool {
    filters.selected_key_ids.is_empty()
        && filters.virtual_key_ids.is_empty()
        && filters.routing_rule_ids.is_empty()
        && filters.routing_engine_used.is_empty()
        && filters.min_latency.is_none()
        && filters.max_latency.is_none()
        && filters.min_tokens.is_none()
        && filters.max_tokens.is_none()
        && filters.min_cost.is_none()
        && filters.max_cost.is_none()
        && !filters.missing_cost_only
        && filters.content_search.as_deref().is_none_or(str::is_empty)
        && filters.metadata_filters.is_empty()
}

/// SQL for the start (seconds since the epoch) of the `bucket_seconds` bucket holding `ts`,
/// floored for times before the epoch too.
pub(crate) fn bucket_start(bucket_seconds: i64) -> String {
    let us = bucket_seconds.saturating_mul(1_000_000);
    format!("CAST((ts - (((ts % {us}) + {us}) % {us})) / 1000000 AS BIGINT)")
}

fn at(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The figures of the logs matching `filters` (and `extra`, conditions on the roll-up's
/// dimensions only), per bucket of `bucket_seconds` (none: one bucket) and per value of
/// `group` (a dimension column).
pub(crate) async fn aggregate(
    tx: &mut Tx,
    filters: &SearchFilters,
    extra: &[&'static str],
    bucket_seconds: Option<i64>,
    group: Option<&'static str>,
) -> Result<Aggregates> {
    let whole_hours = bucket_seconds.is_none_or(|b| b % 3600 == 0);
    let mut parts: Vec<(Source, SearchFilters)> = Vec::new();
    if whole_hours && rollup_answers(filters) {
        // Whole hours inside the range from the roll-up, the edges from the logs.
        let first = filters.start_time.map(|s| {
            micros(s).div_euclid(HOUR_US) * HOUR_US
                + if micros(s) % HOUR_US == 0 { 0 } else { HOUR_US }
        });
        let end = filters
            .end_time
            .map(|e| (micros(e) + 1).div_euclid(HOUR_US) * HOUR_US);
        match (first, end) {
            (Some(first), Some(end)) if first >= end => parts.push((Source::Logs, filters.clone())),
            _ => {
                parts.push((
                    Source::Hourly,
                    SearchFilters {
                        start_time: first.map(at),
                        end_time: end.map(|e| at(e - 1)),
                        ..filters.clone()
                    },
                ));
                if let (Some(start), Some(first)) = (filters.start_time, first)
                    && micros(start) < first
                {
                    parts.push((
                        Source::Logs,
                        SearchFilters {
                            end_time: Some(at(first - 1)),
                            ..filters.clone()
                        },
                    ));
                }
                if let (Some(end_time), Some(end)) = (filters.end_time, end)
                    && micros(end_time) >= end
                {
                    parts.push((
                        Source::Logs,
                        SearchFilters {
                            start_time: Some(at(end)),
                            ..filters.clone()
                        },
                    ));
                }
            }
        }
    } else {
        parts.push((Source::Logs, filters.clone()));
    }
    let bucket = match bucket_seconds {
        Some(b) => bucket_start(b),
        None => "CAST(0 AS BIGINT)".to_owned(),
    };
    let group_column = group.unwrap_or("''");
    let mut out = Aggregates::new();
    for (source, part) in parts {
        let mut sql = Sql::new(format!(
            "SELECT {bucket} AS b, {group_column}, status, {} FROM {}",
            source.figures(),
            source.from()
        ));
        part.push_where(&mut sql, extra);
        sql.push(&match group {
            Some(g) => format!(" GROUP BY b, {g}, status"),
            None => " GROUP BY b, status".to_owned(),
        });
        let kinds = [
            Kind::Int,
            Kind::Text,
            Kind::Text,
            Kind::Int,
            Kind::Float,
            Kind::Int,
            Kind::Int,
            Kind::Int,
            Kind::Int,
            Kind::Int,
            Kind::Float,
        ];
        for row in tx.fetch(&sql, &kinds).await? {
            let mut cells = row.into_iter();
            let mut next = || cells.next().expect("as many cells as kinds");
            let key = (
                next().int(),
                next().text().unwrap_or_default(),
                next().text().unwrap_or_default(),
            );
            let figures = Figures {
                requests: next().int(),
                latency_sum: next().float().unwrap_or(0.0),
                latency_count: next().int(),
                prompt_tokens: next().int(),
                completion_tokens: next().int(),
                total_tokens: next().int(),
                cached_read_tokens: next().int(),
                cost: next().float().unwrap_or(0.0),
            };
            out.entry(key).or_default().add(&figures, 1);
        }
    }
    // Hours whose logs were all deleted stay in the roll-up with nothing in them.
    out.retain(|_, f| f.requests != 0);
    Ok(out)
}
