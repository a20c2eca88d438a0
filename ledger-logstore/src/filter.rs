//! Search filters, pagination and sorting, checked before they reach SQL.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db::Sql;
use crate::error::{Error, Result};
use crate::model::LogStatus;

/// Which logs a search, stats or histogram covers; every field narrows (lists match any of
/// their values; an empty list matches all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchFilters {
    /// Providers.
    pub providers: Vec<String>,
    /// Models.
    pub models: Vec<String>,
    /// Statuses.
    pub status: Vec<LogStatus>,
    /// Request types (`object`).
    pub objects: Vec<String>,
    /// Provider keys.
    pub selected_key_ids: Vec<String>,
    /// Virtual keys.
    pub virtual_key_ids: Vec<String>,
    /// Routing rules.
    pub routing_rule_ids: Vec<String>,
    /// Routing engines (a log matches if it used any).
    pub routing_engine_used: Vec<String>,
    /// Earliest `timestamp`, inclusive.
    pub start_time: Option<DateTime<Utc>>,
    /// Latest `timestamp`, inclusive.
    pub end_time: Option<DateTime<Utc>>,
    /// Least latency (ms), inclusive.
    pub min_latency: Option<f64>,
    /// Most latency (ms), inclusive.
    pub max_latency: Option<f64>,
    /// Fewest total tokens, inclusive.
    pub min_tokens: Option<i64>,
    /// Most total tokens, inclusive.
    pub max_tokens: Option<i64>,
    /// Least cost, inclusive.
    pub min_cost: Option<f64>,
    /// Most cost, inclusive.
    pub max_cost: Option<f64>,
    /// Only finished, non-error logs without a cost.
    pub missing_cost_only: bool,
    /// Text the log's messages contain (case-insensitive).
    pub content_search: Option<String>,
    /// Metadata values by key (all must match; a non-string value matches its JSON text).
    pub metadata_filters: BTreeMap<String, String>,
}

/// The most values one filter list (or the metadata filters) may hold, so that a query stays
/// within both databases' limits on bound values.
pub const MAX_FILTER_LIST: usize = 1000;

/// The most bytes a metadata key may hold.
pub const MAX_METADATA_KEY_BYTES: usize = 256;

/// `Ok` if `key` can name a metadata field: 1 to 256 of `A-Za-z0-9._-`.
pub fn validate_metadata_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= MAX_METADATA_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("metadata_{key}"),
            "a metadata key is 1 to 256 of A-Z a-z 0-9 . _ -",
        ))
    }
}

impl SearchFilters {
    /// No filters: every log.
    pub fn new() -> SearchFilters {
        SearchFilters::default()
    }

    /// `Ok` if the filters make sense: ranges not reversed, numbers finite and non-negative,
    /// metadata keys well formed.
    pub fn validate(&self) -> Result<()> {
        fn range<T: PartialOrd + std::fmt::Display>(
            name: &str,
            min: Option<T>,
            max: Option<T>,
        ) -> Result<()> {
            match (min, max) {
                (Some(min), Some(max)) if min > max => Err(Error::invalid(
                    format!("min_{name}"),
                    format!("min_{name} {min} is above max_{name} {max}"),
                )),
                _ => Ok(()),
            }
        }
        if let (Some(start), Some(end)) = (self.start_time, self.end_time)
            && start > end
        {
            return Err(Error::invalid(
                "start_time",
                format!("start_time {start} is after end_time {end}"),
            ));
        }
        range("latency", self.min_latency, self.max_latency)?;
        range("tokens", self.min_tokens, self.max_tokens)?;
        range("cost", self.min_cost, self.max_cost)?;
        for (name, v) in [
            ("min_latency", self.min_latency),
            ("max_latency", self.max_latency),
            ("min_cost", self.min_cost),
            ("max_cost", self.max_cost),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(Error::invalid(
                    name,
                    format!("{v} is not a non-negative number"),
                ));
            }
        }
        for (name, v) in [
            ("min_tokens", self.min_tokens),
            ("max_tokens", self.max_tokens),
        ] {
            if let Some(v) = v
                && v < 0
            {
                return Err(Error::invalid(name, format!("{v} is negative")));
            }
        }
        for key in self.metadata_filters.keys() {
            validate_metadata_key(key)?;
        }
        let lists = [
            ("providers", &self.providers),
            ("models", &self.models),
            ("objects", &self.objects),
            ("selected_key_ids", &self.selected_key_ids),
            ("virtual_key_ids", &self.virtual_key_ids),
            ("routing_rule_ids", &self.routing_rule_ids),
            ("routing_engine_used", &self.routing_engine_used),
        ];
        for (name, values) in lists {
            if values.iter().any(String::is_empty) {
                return Err(Error::invalid(name, "an empty value matches nothing"));
            }
            if values.len() > MAX_FILTER_LIST {
                return Err(Error::invalid(
                    name,
                    format!("{} values, at most {MAX_FILTER_LIST}", values.len()),
                ));
            }
        }
        if self.metadata_filters.len() > MAX_FILTER_LIST {
            return Err(Error::invalid(
                "metadata",
                format!(
                    "{} metadata filters, at most {MAX_FILTER_LIST}",
                    self.metadata_filters.len()
                ),
            ));
        }
        Ok(())
    }

    /// Appends ` WHERE …` (or nothing) for these filters and the `extra` conditions (fixed
    /// SQL, never input).
    pub(crate) fn push_where(&self, sql: &mut Sql, extra: &[&'static str]) {
        let mut and = Conjunction::default();
        for condition in extra {
            and.next(sql).push(condition);
        }
        let lists: [(&str, Vec<String>); 7] = [
            ("provider", self.providers.clone()),
            ("model", self.models.clone()),
            (
                "status",
                self.status.iter().map(|s| s.as_str().to_owned()).collect(),
            ),
            ("object_type", self.objects.clone()),
            ("selected_key_id", self.selected_key_ids.clone()),
            ("virtual_key_id", self.virtual_key_ids.clone()),
            ("routing_rule_id", self.routing_rule_ids.clone()),
        ];
        for (column, values) in lists {
            if !values.is_empty() {
                and.next(sql).push(column).push(" IN ");
                sql.bind_list(values);
            }
        }
        if !self.routing_engine_used.is_empty() {
            and.next(sql).push("(");
            for (i, engine) in self.routing_engine_used.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("routing_engines LIKE ")
                    .bind(ledger_sql::like_contains_pattern(&format!(",{engine},")))
                    .push(" ESCAPE '\\'");
            }
            sql.push(")");
        }
        if let Some(start) = self.start_time {
            and.next(sql).push("ts >= ").bind(micros(start));
        }
        if let Some(end) = self.end_time {
            and.next(sql).push("ts <= ").bind(micros(end));
        }
        let floats = [
            ("latency >= ", self.min_latency),
            ("latency <= ", self.max_latency),
            ("cost >= ", self.min_cost),
            ("cost <= ", self.max_cost),
        ];
        for (op, value) in floats {
            if let Some(v) = value {
                and.next(sql).push(op).bind(Some(v));
            }
        }
        let ints = [
            ("total_tokens >= ", self.min_tokens),
            ("total_tokens <= ", self.max_tokens),
        ];
        for (op, value) in ints {
            if let Some(v) = value {
                and.next(sql).push(op).bind(v);
            }
        }
        if self.missing_cost_only {
            and.next(sql)
                .push("(cost IS NULL OR cost <= 0) AND status <> 'error'");
        }
        if let Some(text) = self.content_search.as_deref().filter(|t| !t.is_empty()) {
            and.next(sql)
                .push("id IN (SELECT id FROM logstore_bodies WHERE content_summary LIKE ")
                .bind(ledger_sql::like_contains_pattern(&text.to_lowercase()))
                .push(" ESCAPE '\\')");
        }
        for (key, value) in &self.metadata_filters {
            and.next(sql)
                .push("id IN (SELECT log_id FROM logstore_metadata WHERE key = ")
                .bind(key.as_str())
                .push(" AND value = ")
                .bind(value.as_str())
                .push(")");
        }
    }
}

/// Writes ` WHERE ` before the first condition and ` AND ` before the others.
#[derive(Default)]
struct Conjunction {
    started: bool,
}

impl Conjunction {
    fn next<'s>(&mut self, sql: &'s mut Sql) -> &'s mut Sql {
        sql.push(if self.started { " AND " } else { " WHERE " });
        self.started = true;
        sql
    }
}

/// Microseconds since the epoch, the read model's time.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// What a page is sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    /// Request start (the default).
    #[default]
    Timestamp,
    /// Latency.
    Latency,
    /// Total tokens.
    Tokens,
    /// Cost.
    Cost,
}

impl SortBy {
    /// The field named `name` (`timestamp`, `latency`, `tokens` or `cost`).
    pub fn parse(name: &str) -> Result<SortBy> {
        match name {
            "timestamp" => Ok(SortBy::Timestamp),
            "latency" => Ok(SortBy::Latency),
            "tokens" => Ok(SortBy::Tokens),
            "cost" => Ok(SortBy::Cost),
            other => Err(Error::invalid(
                "sort_by",
                format!("{other:?} is not timestamp, latency, tokens or cost"),
            )),
        }
    }

    fn column(self) -> &'static str {
        match self {
            SortBy::Timestamp => "ts",
            SortBy::Latency => "latency",
            SortBy::Tokens => "total_tokens",
            SortBy::Cost => "cost",
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Smallest first.
    Asc,
    /// Largest first (the default).
    #[default]
    Desc,
}

impl Order {
    /// The direction named `name` (`asc` or `desc`).
    pub fn parse(name: &str) -> Result<Order> {
        match name {
            "asc" => Ok(Order::Asc),
            "desc" => Ok(Order::Desc),
            other => Err(Error::invalid(
                "order",
                format!("{other:?} is not asc or desc"),
            )),
        }
    }
}

/// The most logs one page holds.
pub const MAX_LIMIT: u32 = 1000;

/// Which page of a search, in which order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Logs per page, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Logs skipped.
    pub offset: u64,
    /// The sort field.
    pub sort_by: SortBy,
    /// The direction.
    pub order: Order,
}

impl Default for Pagination {
    fn default() -> Pagination {
        Pagination {
            limit: 50,
            offset: 0,
            sort_by: SortBy::Timestamp,
            order: Order::Desc,
        }
    }
}

impl Pagination {
    /// `Ok` if the limit is 1 to [`MAX_LIMIT`].
    pub fn validate(&self) -> Result<()> {
        match self.limit {
            0 => Err(Error::invalid("limit", "limit must be greater than 0")),
            n if n > MAX_LIMIT => Err(Error::invalid(
                "limit",
                format!("limit cannot exceed {MAX_LIMIT}"),
            )),
            _ => Ok(()),
        }
    }

    /// Appends ` ORDER BY … LIMIT … OFFSET …`. A log without the sort value (a latency or
    /// cost) sorts as the smallest, the same on both databases, and the id breaks ties, so
    /// pages never overlap.
    pub(crate) fn push_order(&self, sql: &mut Sql) {
        let (direction, nulls) = match self.order {
            Order::Asc => ("ASC", "FIRST"),
            Order::Desc => ("DESC", "LAST"),
        };
        let column = self.sort_by.column();
        sql.push(&format!(
            " ORDER BY {column} {direction} NULLS {nulls}, id {direction} LIMIT "
        ))
        .bind(i64::from(self.limit))
        .push(" OFFSET ")
        .bind(self.offset.min(i64::MAX as u64) as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_ranges_are_refused_by_name() {
        let f = SearchFilters {
            min_latency: Some(10.0),
            max_latency: Some(5.0),
            ..SearchFilters::new()
        };
        let e = f.validate().unwrap_err().to_string();
        assert!(e.contains("min_latency"), "{e}");
        let f = SearchFilters {
            start_time: Some(Utc::now()),
            end_time: Some(Utc::now() - chrono::Duration::hours(1)),
            ..SearchFilters::new()
        };
        assert!(f.validate().unwrap_err().to_string().contains("start_time"));
    }

    #[test]
    fn filter_lists_past_the_limit_are_refused_by_name() {
        let f = SearchFilters {
            models: (0..=MAX_FILTER_LIST).map(|i| format!("m{i}")).collect(),
            ..SearchFilters::new()
        };
        assert!(f.validate().unwrap_err().to_string().contains("models"));
        let f = SearchFilters {
            models: (0..MAX_FILTER_LIST).map(|i| format!("m{i}")).collect(),
            ..SearchFilters::new()
        };
        assert!(f.validate().is_ok());
    }

    #[test]
    fn metadata_keys_outside_the_alphabet_are_refused() {
        assert!(validate_metadata_key("x-team.id_1").is_ok());
        for bad in ["", "a b", "k'; DROP TABLE logs", &"k".repeat(257)] {
            assert!(validate_metadata_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_outside_one_to_a_thousand_are_refused() {
        for (limit, ok) in [(0, false), (1, true), (1000, true), (1001, false)] {
            let p = Pagination {
                limit,
                ..Pagination::default()
            };
            assert_eq!(p.validate().is_ok(), ok, "{limit}");
        }
    }
}
