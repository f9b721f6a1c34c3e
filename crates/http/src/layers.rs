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
    /// The largest body any route accepts: a request declaring more is answered 413 before
    /// anything is read (also under `Expect: 100-continue`).
    pub largest_body_bytes: usize,
    /// Longest request target (path and query) accepted.
    pub max_uri_bytes: usize,
    /// Most bytes of header names and values together.
    pub max_header_bytes: usize,
    /// Requests handled at once; past this a request is answered 503 with `Retry-After`
    /// instead of queueing (health checks are always answered).
    pub max_in_flight: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            largest_body_bytes: 32 * 1024 * 1024,
            max_uri_bytes: 16 * 1024,
            max_header_bytes: 32 * 1024,
            max_in_flight: 512,
        }
    }
}

#[derive(Clone)]
struct Bounds {
    largest_body_bytes: u64,
    max_uri_bytes: usize,
    max_header_bytes: usize,
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    shed: prometheus_client::metrics::counter::Counter,
}

/// Wraps the fully assembled application router with the platform's edge layers.
pub fn edge(router: Router, config: &EdgeConfig, metrics: Metrics) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let panics = metrics.http_panics.clone();
    let bounds = Bounds {
        largest_body_bytes: config.largest_body_bytes.max(config.body_limit_bytes) as u64,
        max_uri_bytes: config.max_uri_bytes,
        max_header_bytes: config.max_header_bytes,
        in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1))),
        shed: metrics.http_shed.clone(),
    };
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(middleware::from_fn_with_state(bounds, bound_request))
        .layer(middleware::from_fn(problem_for_plain_errors))
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

/// What every request must keep to before any handler runs: a bounded target, a declared body
/// no larger than any route takes, and a place among the requests handled at once.
async fn bound_request(State(bounds): State<Bounds>, request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > bounds.max_uri_bytes {
        return Problem::of(
            "uri-too-long",
            format!(
                "the request target is {target} bytes; this server accepts at most {}",
                bounds.max_uri_bytes
            ),
        )
        .into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > bounds.max_header_bytes {
        return Problem::of(
            "header-fields-too-large",
            format!(
                "the request's headers hold {header_bytes} bytes; this server accepts at most {}",
                bounds.max_header_bytes
            ),
        )
        .into_response();
    }
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > bounds.largest_body_bytes) {
        return Problem::payload_too_large(format!(
            "the request declares a body of {} bytes; this server accepts at most {}",
            declared.unwrap_or_default(),
            bounds.largest_body_bytes
        ))
        .into_response();
    }
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let Ok(_permit) = bounds.in_flight.try_acquire() else {
        bounds.shed.inc();
        return Problem::unavailable(
            "the server is handling as many requests as it accepts at once; try again shortly",
        )
        .with_retry_after(1)
        .into_response();
    };
    next.run(request).await
}

/// Every error answer is problem+json: what a handler or extractor answered as plain text or
/// with no body at all (axum's rejections, a bare status) is rewritten here, keeping the
/// status and the other headers, with the text as the detail.
async fn problem_for_plain_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("Error");
    let detail = if text.is_empty() {
        reason.to_owned()
    } else {
        text
    };
    let problem = Problem::for_status(status.as_u16(), reason, detail);
    let mut rewritten = problem.into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rewritten.headers_mut().append(name.clone(), value.clone());
        }
    }
    *rewritten.status_mut() = status;
    rewritten
}

async fn record_metrics(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
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

/// The method as a metrics label, from a closed set: a client may send any token as a method,
/// and each would otherwise become a new series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
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
