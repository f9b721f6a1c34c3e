use crate::Metrics;
use crate::metrics::{RequestLabels, RouteLabels};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::any::Any;
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use yunnao_core::Problem;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id of the current request (set by the edge, or taken from the client's
/// `x-request-id`), for audit records and logs.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Self {
        Self(
            headers
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        )
    }
}

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub body_limit_bytes: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
        }
    }
}

/// Wraps the fully assembled application router with the platform's edge layers.
pub fn edge(router: Router, config: &EdgeConfig, metrics: Metrics) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let panics = metrics.http_panics.clone();
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        // One reference count per request instead of the registry's and each family's.
        .layer(middleware::from_fn_with_state(
            std::sync::Arc::new(metrics),
            record_metrics,
        ))
        .layer(CatchPanicLayer::custom(move |payload: Box<dyn Any + Send>| {
            panics.inc();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(non-text panic payload)");
            tracing::error!(panic = message, "handler panicked");
            Problem::internal("the server hit an unexpected error; it has been logged").into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn no_route(method: Method, uri: axum::http::Uri) -> Problem {
    Problem::of(
        "no-route",
        format!("there is no endpoint {method} {}", uri.path()),
    )
    .with_instance(uri.path().to_owned())
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let mut response = Problem::of(
        "method-not-allowed",
        format!("{} does not accept {method}", uri.path()),
    )
    .with_instance(uri.path().to_owned())
    .into_response();
    // RFC 9110 wants Allow on 405; the router knows the methods but does not expose them, so
    // point clients to the API description instead.
    response.headers_mut().insert(
        "link",
        HeaderValue::from_static("</openapi.json>; rel=\"service-desc\""),
    );
    response
}

async fn record_metrics(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let response = next.run(request).await;
    metrics
        .http_requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestId::from_headers(&parts.headers))
    }
}
