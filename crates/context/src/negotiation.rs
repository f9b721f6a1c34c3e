//! What every `/ngsi-ld/v1` request goes through before its handler (clause 6.3): a POST,
//! PATCH or PUT without `Content-Length` is a 411 (problem+json); the `Accept` header is negotiated
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

/// Is this Retrieve Entity or Query Entities, whose answers hold entities (and which offer
/// GeoJSON, clause 6.3.15)?
fn retrieves_or_queries_entities(method: &Method, path: &str) -> bool {
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

/// An entity's, subscription's or registration's id in a path is a URI (clause 4.5.1); a
/// missing one (`/entities//attrs`) or one without a scheme is 400 BadRequestData, not 404
/// (clauses 5.6.3, 5.6.4, 5.8.2 …). Layered on the whole application, so that it answers paths
/// with an empty id, which match no route.
pub async fn ngsi_path_ids(request: Request, next: Next) -> Response {
    if let Some(problem) = invalid_path_id(request.uri().path()) {
        return problem.into_response();
    }
    next.run(request).await
}

/// Why `path` names no valid id where one is expected, if it does not.
pub fn invalid_path_id(path: &str) -> Option<yunnao_core::Problem> {
    let rest = path.strip_prefix("/ngsi-ld/v1/")?;
    let mut segments = rest.split('/');
    let mut first = segments.next()?;
    if first == "temporal" {
        first = segments.next()?;
        if first != "entities" {
            return None;
        }
    }
    let what = match first {
        "entities" => "entity id",
        "subscriptions" => "subscription id",
        "csourceRegistrations" => "registration id",
        "csourceSubscriptions" => "subscription id",
        _ => return None,
    };
    let id = segments.next()?;
    let decoded: String =
        form_urlencoded::parse(format!("x={}", id.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
    if decoded.is_empty() {
        return Some(errors::bad_request(format!(
            "the {what} is missing from the path"
        )));
    }
    if what == "entity id" {
        return crate::model::check_entity_id(&decoded).err();
    }
    if !is_uri(&decoded) {
        return Some(errors::bad_request(format!(
            "the {what} {decoded:?} is not a URI (a scheme, then ':')"
        )));
    }
    None
}

/// Does `text` start as an absolute URI does (RFC 3986: a scheme, then `:`, then more)?
fn is_uri(text: &str) -> bool {
    match text.split_once(':') {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
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
        // Clause 6.3.4 asks for "just a 411 HTTP status code (without any payload body)"; the
        // platform answers every error as problem+json, so this one says what to send.
        return yunnao_core::Problem::of(
            "length-required",
            "send the body with a Content-Length header (chunked bodies are not accepted here)",
        )
        .into_response();
    }
    let tenant = request.headers().get("ngsild-tenant").cloned();
    let version = preferred_version(request.headers());
    let entity_data = retrieves_or_queries_entities(&method, request.uri().path());
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let mut response = match negotiate(accept, entity_data) {
        Some(chosen) => {
            request
                .headers_mut()
                .insert(header::ACCEPT, HeaderValue::from_static(chosen));
            next.run(request).await
        }
        None => errors::not_acceptable(format!(
            "Accept {:?} names none of the representations offered here: {}",
            accept.unwrap_or_default(),
            if entity_data {
                OFFERED.join(", ")
            } else {
                OFFERED[..2].join(", ")
            }
        ))
        .into_response(),
    };
    if let Some(version) = version
        && response.status().is_success()
    {
        if entity_data && version < (1, 8) {
            response = amended(response, version).await;
        }
        if let Ok(applied) = HeaderValue::from_str(&format!("ngsi-ld={}.{}", version.0, version.1))
        {
            response.headers_mut().insert("preference-applied", applied);
        }
    }
    if let Some(tenant) = tenant {
        response.headers_mut().insert("ngsild-tenant", tenant);
    }
    response
}

/// The NGSI-LD version the client prefers answers in (clause 6.3.6, `Prefer: ngsi-ld=1.5`),
/// read as RFC 7240 writes preferences: among others, the name in any case, the value bare
/// or quoted, with parameters of its own. Versions 1.0 to 1.9 are honoured.
fn preferred_version(headers: &axum::http::HeaderMap) -> Option<(u32, u32)> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|preference| {
            let token = preference.split(';').next()?.trim();
            let (name, value) = token.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("ngsi-ld") {
                return None;
            }
            let (major, minor) = value.trim().trim_matches('"').split_once('.')?;
            let version = (major.parse().ok()?, minor.parse().ok()?);
            (version.0 == 1 && version.1 <= 9).then_some(version)
        })
}

/// Entities answered to a client that prefers an earlier version, amended as clause 4.3.6.8
/// says (Tables 4.3.6.8-1 to -3): attribute types that version did not have become the ones
/// it had; 203 when anything changed.
async fn amended(response: Response, version: (u32, u32)) -> Response {
    let (mut parts, body) = response.into_parts();
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(JSON) || t.starts_with(JSON_LD));
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(value) if json => value,
        _ => return Response::from_parts(parts, axum::body::Body::from(bytes)),
    };
    // Every entity is amended (no short cut once one changed).
    let mut changed = false;
    match &mut value {
        serde_json::Value::Array(entities) => {
            for entity in entities.iter_mut() {
                changed |= amend_entity(entity, version);
            }
        }
        entity => changed = amend_entity(entity, version),
    }
    if !changed {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    parts.status = StatusCode::NON_AUTHORITATIVE_INFORMATION;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(value.to_string()))
}

/// Amends an entity's attributes for `version`; whether anything changed.
fn amend_entity(entity: &mut serde_json::Value, version: (u32, u32)) -> bool {
    let Some(members) = entity.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for (name, member) in members.iter_mut() {
        if matches!(name.as_str(), "id" | "type" | "@context" | "scope") {
            continue;
        }
        changed |= amend_attribute(member, version);
    }
    changed
}

/// Amends one attribute (its instances, its sub-attributes) for `version`.
fn amend_attribute(attribute: &mut serde_json::Value, version: (u32, u32)) -> bool {
    use serde_json::Value;
    if let Value::Array(instances) = attribute {
        let mut changed = false;
        for instance in instances.iter_mut() {
            changed |= amend_attribute(instance, version);
        }
        return changed;
    }
    let Some(object) = attribute.as_object_mut() else {
        return false;
    };
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // (type, the version that brought it, its member, what it was before, as what member)
    let fallback = match kind {
        "VocabProperty" => Some(((1, 8), "vocab", "Property", "value")),
        "JsonProperty" => Some(((1, 8), "json", "Property", "value")),
        "ListProperty" => Some(((1, 8), "valueList", "Property", "value")),
        "ListRelationship" => Some(((1, 8), "objectList", "Relationship", "object")),
        "LanguageProperty" => Some(((1, 4), "languageMap", "Property", "value")),
        _ => None,
    };
    let mut changed = false;
    if let Some((since, member, before, as_member)) = fallback
        && version < since
    {
        let mut content = object.remove(member).unwrap_or(Value::Null);
        if member == "objectList"
            && let Value::Array(items) = &mut content
        {
            for item in items.iter_mut() {
                if let Some(id) = item.get("object").cloned() {
                    *item = id;
                }
            }
        }
        object.insert("type".into(), before.into());
        object.insert(as_member.into(), content);
        changed = true;
    }
    for (name, member) in object.iter_mut() {
        if member.is_object() && member.get("type").is_some() && name != "value" {
            changed |= amend_attribute(member, version);
        }
    }
    changed
}

#[cfg(test)]
mod tests {

    #[test]
    fn ids_in_paths_are_uris() {
        for (path, bad) in [
            ("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1", false),
            (
                "/ngsi-ld/v1/entities/urn%3Angsi-ld%3AVehicle%3A1/attrs",
                false,
            ),
            ("/ngsi-ld/v1/entities", false),
            ("/ngsi-ld/v1/entities//attrs", true),
            ("/ngsi-ld/v1/entities/thisisaninvaliduri/attrs", true),
            ("/ngsi-ld/v1/temporal/entities/thisisaninvaliduri", true),
            ("/ngsi-ld/v1/temporal/entities/urn:a:b", false),
            ("/ngsi-ld/v1/subscriptions/invalidId", true),
            ("/ngsi-ld/v1/csourceRegistrations/urn:ngsi-ld:R:1", false),
            ("/ngsi-ld/v1/types/Building", false),
            ("/api/v1/entities/x", false),
        ] {
            assert_eq!(super::invalid_path_id(path).is_some(), bad, "{path}");
        }
    }
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
            assert_eq!(
                retrieves_or_queries_entities(&method, path),
                offered,
                "{method} {path}"
            );
        }
    }
}
