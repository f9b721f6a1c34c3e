//! RFC 9457 problem details: the one error type every API of the platform returns.
//!
//! `type` is a stable relative URI `/problems/{slug}`; the server documents each slug at that
//! path, so clients can branch on the type and people can read what it means.

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members, flattened into the top-level object as RFC 9457 §3.2 allows.
    #[serde(flatten, skip_serializing_if = "Map::is_empty")]
    pub extensions: Map<String, Value>,
    /// Seconds after which the client may try again (`Retry-After`, on 429 and 503).
    #[serde(skip)]
    pub retry_after_secs: Option<u32>,
}

/// The catalogue of problem types: slug, status, title. Kept in one table so the documentation
/// page and the constructors cannot drift apart.
pub const PROBLEM_TYPES: &[(&str, u16, &str)] = &[
    ("bad-request", 400, "Bad request"),
    ("invalid-json", 400, "Request body is not valid JSON"),
    ("validation", 422, "Request body failed validation"),
    ("unauthorized", 401, "Authentication required"),
    ("forbidden", 403, "Not allowed"),
    ("not-found", 404, "Resource not found"),
    ("no-route", 404, "No such endpoint"),
    (
        "method-not-allowed",
        405,
        "Method not allowed on this endpoint",
    ),
    ("conflict", 409, "Conflict with the current state"),
    (
        "illegal-transition",
        409,
        "Not allowed in the current state",
    ),
    ("out-of-area", 422, "Location outside the city"),
    ("payload-too-large", 413, "Request body too large"),
    ("length-required", 411, "Content-Length required"),
    ("uri-too-long", 414, "URI too long"),
    (
        "header-fields-too-large",
        431,
        "Request header fields too large",
    ),
    ("unsupported-media-type", 415, "Unsupported media type"),
    ("too-many-requests", 429, "Too many requests"),
    ("internal", 500, "Internal server error"),
    ("unavailable", 503, "Service unavailable"),
];

impl Problem {
    /// A problem of a catalogued type; an unknown slug becomes an internal error so a typo can
    /// never produce a 200.
    pub fn of(slug: &str, detail: impl Into<String>) -> Self {
        let (slug, status, title) = PROBLEM_TYPES
            .iter()
            .copied()
            .find(|(s, _, _)| *s == slug)
            .unwrap_or(("internal", 500, "Internal server error"));
        Self {
            type_uri: format!("/problems/{slug}"),
            title: title.to_owned(),
            status,
            detail: Some(detail.into()),
            instance: None,
            extensions: Map::new(),
            retry_after_secs: None,
        }
    }

    /// The catalogued problem of an HTTP status (its first, most general type: `bad-request`
    /// for 400, `not-found` for 404); `about:blank` with `reason` as title where none is.
    pub fn for_status(status: u16, reason: &str, detail: impl Into<String>) -> Self {
        match PROBLEM_TYPES.iter().find(|(_, s, _)| *s == status) {
            Some((slug, _, _)) => Self::of(slug, detail),
            None => Self::custom("about:blank", reason, status).with_detail(detail),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::of("bad-request", detail)
    }
    pub fn invalid_json(detail: impl Into<String>) -> Self {
        Self::of("invalid-json", detail)
    }
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::of("validation", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::of("unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::of("forbidden", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::of("not-found", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::of("conflict", detail)
    }
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::of("payload-too-large", detail)
    }
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::of("unsupported-media-type", detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::of("unavailable", detail)
    }
    pub fn too_many_requests(detail: impl Into<String>) -> Self {
        Self::of("too-many-requests", detail)
    }
    /// A 500 whose detail is safe to show; the cause goes to the log, not to the client.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::of("internal", detail)
    }

    /// A problem with a domain-specific type (e.g. NGSI-LD's `BadRequestData`), for standards
    /// that define their own type URIs.
    pub fn custom(type_uri: impl Into<String>, title: impl Into<String>, status: u16) -> Self {
        Self {
            type_uri: type_uri.into(),
            title: title.into(),
            status,
            detail: None,
            instance: None,
            extensions: Map::new(),
            retry_after_secs: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Tells the client when to come back (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    pub fn with_extension(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub fn slug(&self) -> &str {
        self.type_uri
            .strip_prefix("/problems/")
            .unwrap_or(&self.type_uri)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.title, self.status)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| {
            br#"{"type":"/problems/internal","title":"Internal server error","status":500}"#
                .to_vec()
        });
        let mut response = (
            status,
            [(axum::http::header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_rfc9457_with_flattened_extensions() {
        let problem = Problem::forbidden("department 370200-water manages only its own users")
            .with_instance("/api/v1/users")
            .with_extension("request_id", "r-1");
        let json = serde_json::to_value(&problem).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "type": "/problems/forbidden",
                "title": "Not allowed",
                "status": 403,
                "detail": "department 370200-water manages only its own users",
                "instance": "/api/v1/users",
                "request_id": "r-1",
            })
        );
        assert_eq!(problem.slug(), "forbidden");
    }

    #[test]
    fn statuses_find_their_general_type() {
        assert_eq!(
            Problem::for_status(404, "Not Found", "x").slug(),
            "not-found"
        );
        assert_eq!(Problem::for_status(422, "", "x").slug(), "validation");
        assert_eq!(
            Problem::for_status(431, "", "x").slug(),
            "header-fields-too-large"
        );
        let teapot = Problem::for_status(418, "I'm a teapot", "x");
        assert_eq!(
            (teapot.type_uri.as_str(), teapot.status),
            ("about:blank", 418)
        );
    }

    #[test]
    fn unknown_slug_never_yields_success() {
        assert_eq!(Problem::of("no-such-type", "x").status, 500);
    }
}
