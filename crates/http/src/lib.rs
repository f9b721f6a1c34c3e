//! The HTTP edge shared by every API of the platform.
//!
//! - [`ApiJson`], [`ApiPath`], [`ApiQuery`]: extractors whose rejections are problem+json
//!   (400 malformed, 413 too large, 415 wrong content type), never axum's plain-text bodies.
//! - [`edge`]: wraps the assembled router with request ids, tracing, panic catching (a panic
//!   becomes a 500 problem and the server keeps serving), the body limit, metrics, and problem
//!   responses for unknown routes (404) and methods (405).
//! - [`Metrics`]: Prometheus text exposition of request counts and latencies; every label from
//!   a closed set.
//! - [`serve`]: the server loop with header, idle and body timeouts, a connection limit, and
//!   problem+json for what hyper refuses itself.

mod extract;
mod layers;
mod metrics;
mod serve;

pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use layers::{EdgeConfig, REQUEST_ID_HEADER, RequestId, edge};
pub use metrics::{Metrics, PROMETHEUS_CONTENT_TYPE};
pub use serve::{ProblemOnRefusal, ServeConfig, refusal_replacement, serve};
pub use yunnao_core::Problem;

/// What every fallible handler returns.
pub type ApiResult<T> = Result<T, Problem>;
