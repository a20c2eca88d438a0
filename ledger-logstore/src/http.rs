//! The HTTP API: Bifrost's `/api/logs` endpoints with its query parameters, response shapes
//! and error messages, an ingest endpoint, an OpenAPI document at `/openapi.json`, and a small
//! web page at `/`.
//!
//! | method, path | what |
//! |---|---|
//! | `GET /api/logs` | search: filters, `limit` (1–1000, default 50), `offset`, `sort_by`, `order` |
//! | `GET /api/logs/{id}` | one log, content included |
//! | `PATCH /api/logs/{id}` | change a log (a [`LogUpdate`](crate::LogUpdate) object) |
//! | `GET /api/logs/stats` | [`SearchStats`](crate::SearchStats) |
//! | `GET /api/logs/histogram[/tokens\|/cost\|/models\|/latency\|/cost/by-provider\|/tokens/by-provider\|/latency/by-provider]` | histograms |
//! | `GET /api/logs/filterdata` | [`FilterData`](crate::FilterData) |
//! | `GET /api/logs/dropped` | `{"dropped_requests": n}` |
//! | `DELETE /api/logs` | body `{"ids": […]}` |
//! | `POST /api/logs/ingest` | a log or an array of logs; answers once they are durable (searches see them once the read model applied them, within milliseconds) |
//! | `GET /health` | `{"status": "ok"}` when the database answers |
//!
//! Filters: `providers`, `models`, `status`, `objects`, `selected_key_ids`, `virtual_key_ids`,
//! `routing_rule_ids`, `routing_engine_used` (comma-separated), `start_time`, `end_time`
//! (RFC 3339), `min_latency`, `max_latency`, `min_tokens`, `max_tokens`, `min_cost`,
//! `max_cost`, `missing_cost_only`, `content_search`, `metadata_<key>=<value>`. Unlike
//! Bifrost, a value that does not parse (a time, a number, a sort field) is a 400 naming the
//! parameter, never silently ignored.
//!
//! Errors have Bifrost's shape, `{"is_bifrost_error": false, "status_code": 400, "error":
//! {"message": "…", "field": "limit"}}`; a storage failure is a 500 whose message never carries
//! the driver's text (that goes to the log).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::filter::{Order, Pagination, SearchFilters, SortBy};
use crate::model::{Log, LogStatus, LogUpdate};
use crate::query::{HistogramKind, bucket_for_range};
use crate::store::LogStore;
use crate::writer::{Accepted, LogWriter};

/// How the API is served.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Keys a request must present (`Authorization: Bearer KEY` or `X-API-Key: KEY`); none:
    /// the API is open.
    pub api_keys: Vec<String>,
    /// The largest request body, in bytes (default 16 MiB).
    pub max_body_bytes: usize,
    /// The most logs one ingest request may carry (default 1000).
    pub max_batch: usize,
    /// The longest a request may take (default 30 s).
    pub timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> ApiOptions {
        ApiOptions {
            api_keys: Vec::new(),
            max_body_bytes: 16 << 20,
            max_batch: 1000,
            timeout: Duration::from_secs(30),
        }
    }
}

struct Api {
    store: LogStore,
    writer: Arc<LogWriter>,
    options: ApiOptions,
}

/// The router: the API, the OpenAPI document and the page. Ingested logs go through `writer`.
pub fn router(store: LogStore, writer: Arc<LogWriter>, options: ApiOptions) -> Router {
    let max_body = options.max_body_bytes;
    let timeout = options.timeout;
    let api = Arc::new(Api {
        store,
        writer,
        options,
    });
    let logs = Router::new()
        .route("/api/logs", get(list).delete(delete))
        .route("/api/logs/ingest", axum::routing::post(ingest))
        .route("/api/logs/stats", get(stats))
        .route("/api/logs/filterdata", get(filter_data))
        .route("/api/logs/dropped", get(dropped))
        .route("/api/logs/histogram", get(histogram_requests))
        .route("/api/logs/histogram/tokens", get(histogram_tokens))
        .route("/api/logs/histogram/cost", get(histogram_cost))
        .route("/api/logs/histogram/models", get(histogram_models))
        .route("/api/logs/histogram/latency", get(histogram_latency))
        .route(
            "/api/logs/histogram/cost/by-provider",
            get(histogram_provider_cost),
        )
        .route(
            "/api/logs/histogram/tokens/by-provider",
            get(histogram_provider_tokens),
        )
        .route(
            "/api/logs/histogram/latency/by-provider",
            get(histogram_provider_latency),
        )
        .route("/api/logs/{id}", get(find).patch(update))
        .route_layer(middleware::from_fn_with_state(api.clone(), authenticate));
    Router::new()
        .merge(logs)
        .route("/", get(page))
        .route("/openapi.json", get(openapi))
        .route("/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(api)
}

/// A JSON error in Bifrost's shape.
struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// A store error as the client sees it: bad input names its field; a storage failure
    /// says only what failed (`doing`), the details go to the log.
    fn from_store(e: Error, doing: &str) -> ApiError {
        match e {
            Error::Invalid { field, reason } => ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("invalid {field}: {reason}"),
                field: Some(field),
            },
            Error::NotFound(_) => ApiError {
                status: StatusCode::NOT_FOUND,
                message: "log not found".into(),
                field: None,
            },
            Error::Duplicate(id) => ApiError {
                status: StatusCode::CONFLICT,
                message: format!("a log with id {id:?} already exists"),
                field: Some("id".into()),
            },
            Error::Closed => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the log store is shutting down".into(),
                field: None,
            },
            Error::Store(e) => {
                tracing::error!(error = %e, "{doing} failed");
                ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: format!("{doing} failed"),
                    field: None,
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "message": self.message });
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let body = json!({
            "is_bifrost_error": false,
            "status_code": self.status.as_u16(),
            "error": error,
        });
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

fn to_json(value: impl serde::Serialize) -> Json<Value> {
    Json(serde_json::to_value(value).unwrap_or(Value::Null))
}

async fn authenticate(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if api.options.api_keys.is_empty() {
        return next.run(request).await;
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let known = presented.is_some_and(|key| {
        // Every key is compared, each in constant time, so timing tells nothing of which.
        api.options
            .api_keys
            .iter()
            .fold(subtle::Choice::from(0), |found, k| {
                found | k.as_bytes().ct_eq(key.as_bytes())
            })
            .into()
    });
    if known {
        next.run(request).await
    } else {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "a valid API key is required (Authorization: Bearer KEY)".into(),
            field: None,
        }
        .into_response()
    }
}

/// The query string as ordered pairs.
fn pairs(query: Option<String>) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad("query", format!("the query string does not parse: {e}")))
}

fn list_values(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> ApiResult<T> {
    value
        .trim()
        .parse()
        .map_err(|_| ApiError::bad(name, format!("{name} must be a number, not {value:?}")))
}

fn time(name: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad(
                name,
                format!("{name} must be an RFC 3339 time, not {value:?}"),
            )
        })
}

/// Filters and (for lists) pagination from query parameters; unknown parameters are refused
/// so that a typo never widens a search silently.
fn parse_query(pairs: &[(String, String)], paged: bool) -> ApiResult<(SearchFilters, Pagination)> {
    let mut f = SearchFilters::new();
    let mut page = Pagination::default();
    for (name, value) in pairs {
        match name.as_str() {
            "providers" => f.providers = list_values(value),
            "models" => f.models = list_values(value),
            "status" => {
                f.status = list_values(value)
                    .iter()
                    .map(|s| LogStatus::parse(s))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ApiError::from_store(e, "parsing"))?;
            }
            "objects" => f.objects = list_values(value),
            "selected_key_ids" => f.selected_key_ids = list_values(value),
            "virtual_key_ids" => f.virtual_key_ids = list_values(value),
            "routing_rule_ids" => f.routing_rule_ids = list_values(value),
            "routing_engine_used" => f.routing_engine_used = list_values(value),
            "start_time" => f.start_time = Some(time(name, value)?),
            "end_time" => f.end_time = Some(time(name, value)?),
            "min_latency" => f.min_latency = Some(number(name, value)?),
            "max_latency" => f.max_latency = Some(number(name, value)?),
            "min_tokens" => f.min_tokens = Some(number(name, value)?),
            "max_tokens" => f.max_tokens = Some(number(name, value)?),
            "min_cost" => f.min_cost = Some(number(name, value)?),
            "max_cost" => f.max_cost = Some(number(name, value)?),
            "missing_cost_only" => {
                f.missing_cost_only = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" | "" => false,
                    _ => {
                        return Err(ApiError::bad(
                            name,
                            "missing_cost_only must be true or false",
                        ));
                    }
                }
            }
            "content_search" => f.content_search = Some(value.clone()).filter(|v| !v.is_empty()),
            "limit" if paged => {
                let limit: i64 = number(name, value)?;
                if limit <= 0 {
                    return Err(ApiError::bad(name, "limit must be greater than 0"));
                }
                if limit > i64::from(crate::filter::MAX_LIMIT) {
                    return Err(ApiError::bad(name, "limit cannot exceed 1000"));
                }
                page.limit = limit as u32;
            }
            "offset" if paged => {
                let offset: i64 = number(name, value)?;
                if offset < 0 {
                    return Err(ApiError::bad(name, "offset cannot be negative"));
                }
                page.offset = offset as u64;
            }
            "sort_by" if paged => {
                page.sort_by =
                    SortBy::parse(value).map_err(|e| ApiError::from_store(e, "parsing"))?
            }
            "order" if paged => {
                page.order = Order::parse(value).map_err(|e| ApiError::from_store(e, "parsing"))?
            }
            other => match other.strip_prefix("metadata_") {
                Some(key) => {
                    f.metadata_filters.insert(key.to_owned(), value.clone());
                }
                None => {
                    return Err(ApiError::bad(
                        other,
                        format!("unknown query parameter {other:?}"),
                    ));
                }
            },
        }
    }
    f.validate()
        .map_err(|e| ApiError::from_store(e, "parsing"))?;
    Ok((f, page))
}

async fn list(State(api): State<Arc<Api>>, RawQuery(query): RawQuery) -> ApiResult {
    let (filters, page) = parse_query(&pairs(query)?, true)?;
    let result = api
        .store
        .search(&filters, &page)
        .await
        .map_err(|e| ApiError::from_store(e, "Search"))?;
    Ok(to_json(result))
}

async fn stats(State(api): State<Arc<Api>>, RawQuery(query): RawQuery) -> ApiResult {
    let (filters, _) = parse_query(&pairs(query)?, false)?;
    let stats = api
        .store
        .stats(&filters)
        .await
        .map_err(|e| ApiError::from_store(e, "Stats calculation"))?;
    Ok(to_json(stats))
}

async fn histogram(api: &Api, kind: HistogramKind, query: Option<String>) -> ApiResult {
    let (filters, _) = parse_query(&pairs(query)?, false)?;
    let bucket = bucket_for_range(filters.start_time, filters.end_time);
    let histogram = api
        .store
        .histogram(kind, &filters, bucket)
        .await
        .map_err(|e| ApiError::from_store(e, "Histogram calculation"))?;
    Ok(to_json(histogram))
}

macro_rules! histogram_handlers {
    ($($name:ident => $kind:ident),* $(,)?) => {$(
        async fn $name(State(api): State<Arc<Api>>, RawQuery(query): RawQuery) -> ApiResult {
            histogram(&api, HistogramKind::$kind, query).await
        }
    )*};
}

histogram_handlers! {
    histogram_requests => Requests,
    histogram_tokens => Tokens,
    histogram_cost => Cost,
    histogram_models => Models,
    histogram_latency => Latency,
    histogram_provider_cost => ProviderCost,
    histogram_provider_tokens => ProviderTokens,
    histogram_provider_latency => ProviderLatency,
}

async fn filter_data(State(api): State<Arc<Api>>) -> ApiResult {
    let data = api
        .store
        .filter_data()
        .await
        .map_err(|e| ApiError::from_store(e, "Filter data"))?;
    Ok(to_json(data))
}

async fn dropped(State(api): State<Arc<Api>>) -> ApiResult {
    Ok(Json(json!({ "dropped_requests": api.store.dropped() })))
}

async fn find(State(api): State<Arc<Api>>, Path(id): Path<String>) -> ApiResult {
    let log = api
        .store
        .find_by_id(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "Finding the log"))?;
    Ok(to_json(log))
}

/// A JSON body, or a 400 saying why it is not one.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad("body", format!("Invalid JSON: {e}")))
}

async fn update(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let changes: LogUpdate = body(&bytes)?;
    api.writer
        .flush()
        .await
        .map_err(|e| ApiError::from_store(e, "Updating the log"))?;
    api.store
        .update(&id, changes)
        .await
        .map_err(|e| ApiError::from_store(e, "Updating the log"))?;
    Ok(Json(json!({ "message": "Log updated successfully" })))
}

#[derive(Deserialize)]
struct DeleteBody {
    #[serde(default)]
    ids: Vec<String>,
}

async fn delete(State(api): State<Arc<Api>>, bytes: axum::body::Bytes) -> ApiResult {
    let DeleteBody { ids } = body(&bytes)?;
    if ids.is_empty() {
        return Err(ApiError::bad("ids", "No log IDs provided"));
    }
    api.writer
        .flush()
        .await
        .map_err(|e| ApiError::from_store(e, "Deleting logs"))?;
    api.store
        .delete_logs(&ids)
        .await
        .map_err(|e| ApiError::from_store(e, "Deleting logs"))?;
    Ok(Json(json!({ "message": "Logs deleted successfully" })))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IngestBody {
    Many(Vec<Value>),
    One(Value),
}

/// Logs in the writer's queue; answers once every one is durable (or dropped, in drop mode).
async fn ingest(State(api): State<Arc<Api>>, bytes: axum::body::Bytes) -> ApiResult {
    let values = match body(&bytes)? {
        IngestBody::Many(values) => values,
        IngestBody::One(value) => vec![value],
    };
    if values.is_empty() {
        return Err(ApiError::bad("logs", "no logs given"));
    }
    if values.len() > api.options.max_batch {
        return Err(ApiError::bad(
            "logs",
            format!(
                "{} logs in one request; at most {}",
                values.len(),
                api.options.max_batch
            ),
        ));
    }
    let logs = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value::<Log>(v)
                .map_err(|e| ApiError::bad(&format!("logs[{i}]"), format!("not a log: {e}")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    // Every log is checked before any is queued: a refused request stores nothing.
    let prepared = logs
        .into_iter()
        .enumerate()
        .map(|(i, log)| match api.writer.prepare(log) {
            Ok(prepared) => Ok(prepared),
            Err(Error::Invalid { field, reason }) => {
                let field = format!("logs[{i}].{field}");
                Err(ApiError::bad(&field, format!("invalid {field}: {reason}")))
            }
            Err(e) => Err(ApiError::from_store(e, "Ingest")),
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let mut receipts = Vec::with_capacity(prepared.len());
    let mut dropped = 0;
    for log in prepared {
        match api.writer.queue(log).await {
            Ok(Accepted::Queued(receipt)) => receipts.push(receipt),
            Ok(Accepted::Dropped) => dropped += 1,
            Err(e) => return Err(ApiError::from_store(e, "Ingest")),
        }
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for receipt in receipts {
        match receipt.durable().await {
            Ok(true) => accepted += 1,
            Ok(false) => duplicates += 1,
            Err(e) => return Err(ApiError::from_store(e, "Ingest")),
        }
    }
    Ok(Json(
        json!({ "accepted": accepted, "duplicates": duplicates, "dropped": dropped }),
    ))
}

async fn health(State(api): State<Arc<Api>>) -> Response {
    match api.store.ping().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => ApiError::from_store(e, "Health check").into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such endpoint".into(),
        field: None,
    }
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        pairs(Some(s.to_owned())).ok().unwrap()
    }

    #[test]
    fn query_parameters_become_filters_and_a_page() {
        let (f, p) = parse_query(
            &q("providers=openai,%20anthropic&status=success&limit=10&offset=20&sort_by=latency&order=asc&metadata_team=x&start_time=2026-01-01T00:00:00Z"),
            true,
        )
        .ok()
        .unwrap();
        assert_eq!(f.providers, ["openai", "anthropic"]);
        assert_eq!(f.status, [LogStatus::Success]);
        assert_eq!(
            f.metadata_filters.get("team").map(String::as_str),
            Some("x")
        );
        assert!(f.start_time.is_some());
        assert_eq!(
            (p.limit, p.offset, p.sort_by, p.order),
            (10, 20, SortBy::Latency, Order::Asc)
        );
    }

    #[test]
    fn bad_parameters_are_refused_naming_them() {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("offset=-1", "offset"),
            ("sort_by=size", "sort_by"),
            ("order=up", "order"),
            ("start_time=yesterday", "start_time"),
            ("min_latency=9&max_latency=1", "min_latency"),
            ("status=done", "status"),
            ("colour=red", "colour"),
        ] {
            let error = parse_query(&q(query), true).expect_err(query);
            assert_eq!(error.field.as_deref(), Some(field), "{query}");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
        }
    }
}
