//! What every `/ngsi-ld/v1` request goes through before its handler (clause 6.3): a POST,
//! PATCH or PUT without `Content-Length` is a bare 411; the `Accept` header is negotiated
//! (RFC 9110 clause 12.5.1 weights, ties broken by the order of clause 6.3.4) and replaced by
//! the one media type chosen, or answered 406; the `NGSILD-Tenant` of the request is echoed
//! on the response (clause 6.3.14).

use crate::errors;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const JSON: &str = "application/json";
pub const JSON_LD: &str = "application/ld+json";
pub const GEO_JSON: &str = "application/geo+json";

/// The representations an answer can take, in the order of clause 6.3.4.
const OFFERED: [&str; 3] = [JSON, JSON_LD, GEO_JSON];

/// The media type to answer with, or `None` when the client accepts none of those on offer
/// (406). `geo` says whether this operation offers GeoJSON (Retrieve and Query Entities).
pub fn negotiate(accept: Option<&str>, geo: bool) -> Option<&'static str> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(JSON);
    };
    let ranges: Vec<(&str, f32)> = accept.split(',').filter_map(media_range).collect();
    let offered = if geo { &OFFERED[..] } else { &OFFERED[..2] };
    let mut best: Option<(&'static str, f32)> = None;
    for &media_type in offered {
        let weight = weight_of(media_type, &ranges);
        if weight > 0.0 && best.is_none_or(|(_, w)| weight > w) {
            best = Some((media_type, weight));
        }
    }
    best.map(|(media_type, _)| media_type)
}

/// One `type/subtype;q=…` range: its name (lower case) and weight. A malformed weight is the
/// default 1 (RFC 9110 gives it no meaning).
fn media_range(item: &str) -> Option<(&str, f32)> {
    let mut parts = item.split(';');
    let name = parts.next()?.trim();
    if name.is_empty() {
        return None;
    }
    let mut weight = 1.0;
    for parameter in parts {
        if let Some((key, value)) = parameter.split_once('=')
            && key.trim().eq_ignore_ascii_case("q")
            && let Ok(q) = value.trim().parse::<f32>()
            && (0.0..=1.0).contains(&q)
        {
            weight = q;
        }
    }
    Some((name, weight))
}

/// The weight `media_type` gets from the most specific range that matches it (exact, then
/// `type/*`, then `*/*`); 0 when none does.
fn weight_of(media_type: &str, ranges: &[(&str, f32)]) -> f32 {
    let (kind, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    let mut best: Option<(u8, f32)> = None;
    for &(range, weight) in ranges {
        let specificity = if range.eq_ignore_ascii_case(media_type) {
            3
        } else if range
            .strip_suffix("/*")
            .is_some_and(|k| k.eq_ignore_ascii_case(kind))
        {
            2
        } else if range == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, weight));
        }
    }
    best.map_or(0.0, |(_, weight)| weight)
}

/// Does this operation offer GeoJSON (clause 6.3.15: Retrieve Entity and Query Entities)?
fn offers_geo_json(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/ngsi-ld/v1/") else {
        return false;
    };
    let rest = rest.trim_end_matches('/');
    match *method {
        Method::GET => {
            rest == "entities"
                || rest
                    .strip_prefix("entities/")
                    .is_some_and(|id| !id.is_empty() && !id.contains('/'))
        }
        Method::POST => rest == "entityOperations/query",
        _ => false,
    }
}

pub async fn ngsi_edge(mut request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/ngsi-ld/v1") {
        return next.run(request).await;
    }
    let method = request.method().clone();
    if matches!(method, Method::POST | Method::PATCH | Method::PUT)
        && !request.headers().contains_key(header::CONTENT_LENGTH)
    {
        // Clause 6.3.4: "just a 411 HTTP status code (without any payload body)".
        return StatusCode::LENGTH_REQUIRED.into_response();
    }
    let tenant = request.headers().get("ngsild-tenant").cloned();
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let geo = offers_geo_json(&method, request.uri().path());
    let mut response = match negotiate(accept, geo) {
        Some(chosen) => {
            request
                .headers_mut()
                .insert(header::ACCEPT, HeaderValue::from_static(chosen));
            next.run(request).await
        }
        None => errors::not_acceptable(format!(
            "Accept {:?} names none of the representations offered here: {}",
            accept.unwrap_or_default(),
            if geo {
                OFFERED.join(", ")
            } else {
                OFFERED[..2].join(", ")
            }
        ))
        .into_response(),
    };
    if let Some(tenant) = tenant {
        response.headers_mut().insert("ngsild-tenant", tenant);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (Accept, GeoJSON offered, chosen): list order breaks ties, weights decide otherwise,
    /// the most specific range gives a type its weight, q=0 refuses.
    #[test]
    fn accept_headers_choose_as_rfc_9110_and_clause_6_3_4_say() {
        let cases: &[(Option<&str>, bool, Option<&str>)] = &[
            (None, true, Some(JSON)),
            (Some(""), false, Some(JSON)),
            (
                Some("application/ld+json, application/json"),
                true,
                Some(JSON),
            ),
            (
                Some("application/geo+json, application/json"),
                true,
                Some(JSON),
            ),
            (
                Some("application/json;q=0.1, application/ld+json;q=0.9"),
                true,
                Some(JSON_LD),
            ),
            (Some("application/ld+json"), true, Some(JSON_LD)),
            (Some("application/json;q=0, */*"), true, Some(JSON_LD)),
            (
                Some("application/json;q=0, application/ld+json"),
                true,
                Some(JSON_LD),
            ),
            (
                Some("*/*;q=0.9, application/ld+json;q=0.8"),
                true,
                Some(JSON),
            ),
            (
                Some("application/ld+json;q=notanumber"),
                true,
                Some(JSON_LD),
            ),
            (Some("*/*"), false, Some(JSON)),
            (Some("application/*"), false, Some(JSON)),
            (Some("application/geo+json"), true, Some(GEO_JSON)),
            (Some("application/geo+json"), false, None),
            (
                Some("application/geo+json;q=0.9, application/ld+json;q=0.1"),
                false,
                Some(JSON_LD),
            ),
            (Some("application/xml"), true, None),
            (Some("text/html, application/xhtml+xml"), false, None),
            (Some("application/json;q=0"), false, None),
        ];
        for (accept, geo, chosen) in cases {
            assert_eq!(
                negotiate(*accept, *geo),
                *chosen,
                "Accept {accept:?}, geo {geo}"
            );
        }
    }

    #[test]
    fn geo_json_is_offered_by_retrieve_and_query_only() {
        let cases = [
            (Method::GET, "/ngsi-ld/v1/entities", true),
            (Method::GET, "/ngsi-ld/v1/entities/", true),
            (Method::GET, "/ngsi-ld/v1/entities/urn:ngsi-ld:X:1", true),
            (Method::POST, "/ngsi-ld/v1/entityOperations/query", true),
            (
                Method::GET,
                "/ngsi-ld/v1/entities/urn:ngsi-ld:X:1/attrs",
                false,
            ),
            (Method::POST, "/ngsi-ld/v1/entities", false),
            (Method::GET, "/ngsi-ld/v1/subscriptions/urn:x", false),
            (Method::GET, "/ngsi-ld/v1/temporal/entities", false),
        ];
        for (method, path, offered) in cases {
            assert_eq!(offers_geo_json(&method, path), offered, "{method} {path}");
        }
    }
}
