//! The REST API: Probo-DB's routes and response shapes, with its mistakes corrected. An invalid
//! UUID is a 400 with a JSON error (Probo-DB: a 500 page, after an unanchored, lower-case-only
//! check), an unknown build a 404 (Probo-DB: 200 with an empty body, or a 500 for its disk
//! usage), lists are paged, and errors never carry database text.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::error::Error;
use crate::event::parse_uuid;
use crate::service::{BuildService, MAX_PAGE};

/// Ids a list returns when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 1000;

/// An API plugin: routes of its own, merged into the API.
pub trait ApiPlugin: Send + Sync {
    /// The plugin's routes, given the service.
    fn routes(&self, service: BuildService) -> Router;
}

/// What the API says about itself at `GET /`.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Probo-DB's `serverName`.
    pub server_name: String,
    /// Probo-DB's `version`.
    pub version: String,
}

#[derive(Clone)]
struct Api {
    service: BuildService,
    banner: String,
}

/// The API's router.
pub fn router(service: BuildService, options: &ApiOptions, plugins: &[&dyn ApiPlugin]) -> Router {
    let api = Api {
        banner: format!("{} version {}", options.server_name, options.version),
        service: service.clone(),
    };
    let mut router = Router::new()
        .route("/", get(banner))
        .route("/build", get(builds))
        .route("/build/{id}", get(build))
        .route("/build/{id}/disk-usage", get(build_disk_usage))
        .route("/project", get(projects))
        .route("/project/{id}/disk-usage", get(project_disk_usage))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(api);
    for plugin in plugins {
        router = router.merge(plugin.routes(service.clone()));
    }
    router.fallback(|| async { problem(StatusCode::NOT_FOUND, "no such route".into()) })
}

fn problem(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// An error as a response: bad input says what was wrong; failures of the database are logged
/// and answered without their text.
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            e @ Error::Invalid { .. } => problem(StatusCode::BAD_REQUEST, e.to_string()),
            e => {
                tracing::error!(error = %e, "request failed");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the service's log".into(),
                )
            }
        }
    }
}

type ApiResult = Result<Response, ApiError>;

async fn banner(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        api.banner,
    )
        .into_response()
}

/// `after` and `limit` of a list, checked.
fn page(query: &HashMap<String, String>) -> Result<(Option<String>, u32), Error> {
    if let Some(unknown) = query.keys().find(|k| *k != "after" && *k != "limit") {
        return Err(Error::invalid(
            unknown.as_str(),
            "unknown query parameter (expected after, limit)",
        ));
    }
    let after = match query.get("after") {
        Some(a) => Some(parse_uuid(a).map_err(|e| Error::invalid("after", e))?),
        None => None,
    };
    let limit = match query.get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                Error::invalid("limit", format!("{l:?} is not between 1 and {MAX_PAGE}"))
            })?,
    };
    Ok((after, limit))
}

/// A page of ids; a full page links to the next one.
fn ids_page(path: &str, ids: Vec<String>, limit: u32) -> Response {
    let mut headers = HeaderMap::new();
    if ids.len() == limit as usize
        && let Some(last) = ids.last()
        && let Ok(link) = HeaderValue::from_str(&format!(
            "<{path}?after={last}&limit={limit}>; rel=\"next\""
        ))
    {
        headers.insert(header::LINK, link);
    }
    (headers, axum::Json(ids)).into_response()
}

async fn builds(State(api): State<Api>, Query(query): Query<HashMap<String, String>>) -> ApiResult {
    let (after, limit) = page(&query)?;
    let ids = api.service.builds(after.as_deref(), limit).await?;
    Ok(ids_page("/build", ids, limit))
}

async fn projects(
    State(api): State<Api>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let (after, limit) = page(&query)?;
    let ids = api.service.projects(after.as_deref(), limit).await?;
    Ok(ids_page("/project", ids, limit))
}

async fn build(State(api): State<Api>, Path(id): Path<String>) -> ApiResult {
    Ok(match api.service.build(&id).await? {
        Some(row) => axum::Json(row.build.to_row(row.id)).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("build {id:?} not found")),
    })
}

async fn build_disk_usage(State(api): State<Api>, Path(id): Path<String>) -> ApiResult {
    Ok(match api.service.build(&id).await? {
        Some(row) => axum::Json(row.build.bytes_real.to_string()).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("build {id:?} not found")),
    })
}

async fn project_disk_usage(State(api): State<Api>, Path(id): Path<String>) -> ApiResult {
    let bytes = api.service.project_disk_usage(&id).await?;
    Ok(axum::Json(bytes.to_string()).into_response())
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(api): State<Api>) -> Response {
    match api.service.ready().await {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}
