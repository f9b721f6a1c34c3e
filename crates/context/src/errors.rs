//! The NGSI-LD problem types (CIM 009 §5.5.2), as RFC 9457 problem details with the spec's
//! type URIs and status codes.

use yunnao_core::Problem;

const BASE: &str = "https://uri.etsi.org/ngsi-ld/errors/";

fn ngsi(name: &str, title: &str, status: u16, detail: impl Into<String>) -> Problem {
    Problem::custom(format!("{BASE}{name}"), title, status).with_detail(detail)
}

pub fn bad_request(detail: impl Into<String>) -> Problem {
    ngsi("BadRequestData", "Bad request data", 400, detail)
}

pub fn invalid_request(detail: impl Into<String>) -> Problem {
    ngsi("InvalidRequest", "Invalid request", 400, detail)
}

pub fn not_found(detail: impl Into<String>) -> Problem {
    ngsi("ResourceNotFound", "Resource not found", 404, detail)
}

/// The operation conflicts with where the data is held (clause 5.6.1.4).
pub fn conflict(detail: impl Into<String>) -> Problem {
    ngsi("Conflict", "Conflict", 409, detail)
}

/// The request came back to this broker through its context sources (clause 6.3.18).
pub fn loop_detected(detail: impl Into<String>) -> Problem {
    ngsi("LoopDetected", "Loop detected", 508, detail)
}

pub fn already_exists(detail: impl Into<String>) -> Problem {
    ngsi("AlreadyExists", "Already exists", 409, detail)
}

pub fn operation_not_supported(detail: impl Into<String>) -> Problem {
    ngsi(
        "OperationNotSupported",
        "Operation not supported",
        422,
        detail,
    )
}

pub fn ld_context_not_available(detail: impl Into<String>) -> Problem {
    ngsi(
        "LdContextNotAvailable",
        "@context not available",
        503,
        detail,
    )
}

/// 406: the client accepts none of the representations on offer (clause 6.3.4).
pub fn not_acceptable(detail: impl Into<String>) -> Problem {
    Problem::custom(format!("{BASE}NotAcceptable"), "Not acceptable", 406).with_detail(detail)
}

pub fn nonexistent_tenant(detail: impl Into<String>) -> Problem {
    ngsi("NonexistentTenant", "Nonexistent tenant", 404, detail)
}

/// Platform problems (storage, authentication) keep their own types; a plain 400/404 from the
/// shared extractors is mapped onto the NGSI-LD equivalent so clients see one vocabulary.
pub fn ngsi_ld(problem: Problem) -> Problem {
    if problem.type_uri.starts_with(BASE) {
        return problem;
    }
    let detail = problem.detail.clone().unwrap_or_default();
    match problem.slug() {
        "invalid-json" | "bad-request" | "validation" => bad_request(detail),
        "unsupported-media-type" => problem,
        "not-found" => not_found(detail),
        "conflict" => already_exists(detail),
        _ => problem,
    }
}
