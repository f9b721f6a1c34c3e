//! Platform endpoints: health, readiness, metrics, the OpenAPI document, problem type pages.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_http::{ApiPath, ApiResult, Metrics, PROMETHEUS_CONTENT_TYPE};
use yunnao_identity::Principal;
use yunnao_store::Db;

#[derive(Clone)]
pub struct Platform {
    pub db: Db,
    pub metrics: Metrics,
    pub openapi: Arc<OnceLock<serde_json::Value>>,
}

pub fn router() -> OpenApiRouter<Platform> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(problem_type))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// Liveness (public): the process is up.
#[utoipa::path(get, path = "/health", tag = "platform", security(()),
    responses((status = 200, body = Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub status: String,
    pub database: String,
}

/// Readiness (public): the database answers.
#[utoipa::path(get, path = "/ready", tag = "platform", security(()),
    responses((status = 200, body = Ready), (status = 503)))]
async fn ready(State(platform): State<Platform>) -> ApiResult<axum::Json<Ready>> {
    platform
        .db
        .ping()
        .await
        .map_err(|e| Problem::unavailable(format!("database not reachable: {e}")))?;
    Ok(axum::Json(Ready {
        status: "ready".into(),
        database: platform.db.dialect().name().into(),
    }))
}

/// Prometheus metrics. Needs a platform admin, or an API client with `metrics:read` (give
/// Prometheus that key as its bearer credential).
#[utoipa::path(get, path = "/metrics", tag = "platform",
    responses((status = 200, content_type = "text/plain"), (status = 401), (status = 403)))]
async fn metrics(
    State(platform): State<Platform>,
    principal: Principal,
) -> ApiResult<impl IntoResponse> {
    if !principal.is_platform_admin() && !principal.has_scope("metrics:read") {
        return Err(Problem::forbidden(
            "metrics need platform_admin or the scope metrics:read",
        ));
    }
    Ok((
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        platform.metrics.render(),
    ))
}

/// This document (public).
#[utoipa::path(get, path = "/openapi.json", tag = "platform", security(()),
    responses((status = 200, content_type = "application/json")))]
async fn openapi_json(
    State(platform): State<Platform>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    platform
        .openapi
        .get()
        .cloned()
        .map(axum::Json)
        .ok_or_else(|| Problem::unavailable("the API description is not built yet"))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProblemType {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub status: u16,
    pub title: String,
}

/// What a problem `type` means (public): the target of every problem's `type` URI.
#[utoipa::path(get, path = "/problems/{slug}", tag = "platform", security(()),
    params(("slug" = String, Path)),
    responses((status = 200, body = ProblemType), (status = 404)))]
async fn problem_type(ApiPath(slug): ApiPath<String>) -> ApiResult<axum::Json<ProblemType>> {
    yunnao_core::problem::PROBLEM_TYPES
        .iter()
        .find(|(s, _, _)| *s == slug)
        .map(|(s, status, title)| {
            axum::Json(ProblemType {
                type_uri: format!("/problems/{s}"),
                status: *status,
                title: (*title).to_owned(),
            })
        })
        .ok_or_else(|| Problem::not_found(format!("there is no problem type {slug:?}")))
}
