//! `/api/v1/data`: the catalogue (search with facets, one dataset, registering one), its DCAT-AP
//! exports; and the CKAN-compatible `/api/3/action/{action}`. Metadata is public (a core
//! dataset is listed only to its department and the bureau); registering needs the department.

use crate::search::{FACETS, Filter, Query, Sort};
use crate::{Catalogue, Dataset, Entry};
use axum::body::Bytes;
use axum::extract::{Path, Query as QueryString, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_http::ApiJson;
use yunnao_identity::{AuditNote, Principal};

pub fn router() -> OpenApiRouter<Catalogue> {
    OpenApiRouter::new()
        .routes(routes!(search, create))
        .routes(routes!(dataset))
        .routes(routes!(catalog_jsonld))
        .routes(routes!(catalog_ttl))
        .routes(routes!(ckan_get, ckan_post))
        .routes(routes!(ckan_get_unversioned, ckan_post_unversioned))
}

/// The caller when signed in (these routes are public).
pub struct Caller(pub Option<Principal>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller(parts.extensions.get::<Principal>().cloned()))
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words, Chinese or not: every one must match.
    pub q: Option<String>,
    pub department: Option<String>,
    pub theme: Option<String>,
    pub keyword: Option<String>,
    /// `open`, `conditional`, `none`.
    pub sharing: Option<String>,
    /// `general`, `important`, `core`.
    pub level: Option<String>,
    pub frequency: Option<String>,
    /// `relevance` (default), `modified`, `name`, `title`.
    pub sort: Option<String>,
    pub start: Option<usize>,
    /// At most 1000; 20 unless given.
    pub rows: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchAnswer {
    pub count: usize,
    pub results: Vec<Entry>,
    /// facet → [value, count], most frequent first.
    #[schema(value_type = Object)]
    pub facets: BTreeMap<&'static str, Vec<(String, usize)>>,
}

/// Searches the catalogue (目录): full text in Chinese and English, facets by department,
/// theme, keyword, sharing, level and frequency. Public.
#[utoipa::path(get, path = "/api/v1/data/datasets", tag = "data", security(()), params(SearchQuery),
    responses((status = 200, body = SearchAnswer), (status = 400), (status = 422)))]
async fn search(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    QueryString(q): QueryString<SearchQuery>,
) -> Result<axum::Json<SearchAnswer>, Problem> {
    if q.q.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(Problem::validation("q: at most 200 characters").with_extension("field", "q"));
    }
    let mut filters = Vec::new();
    for (field, value) in [
        ("department", &q.department),
        ("theme", &q.theme),
        ("keyword", &q.keyword),
        ("sharing", &q.sharing),
        ("level", &q.level),
        ("frequency", &q.frequency),
    ] {
        if let Some(value) = value {
            debug_assert!(FACETS.contains(&field));
            filters.push(Filter {
                field: field.into(),
                value: value.clone(),
            });
        }
    }
    let sort = match q.sort.as_deref() {
        None | Some("relevance") => Sort::Relevance,
        Some("modified") => Sort::Modified,
        Some("name") => Sort::Name,
        Some("title") => Sort::Title,
        Some(other) => {
            return Err(Problem::validation(format!(
                "sort: {other} is not relevance, modified, name or title"
            ))
            .with_extension("field", "sort"));
        }
    };
    let found = catalogue.search(
        principal.as_ref(),
        &Query {
            text: q.q,
            filters,
            sort,
            start: q.start.unwrap_or(0),
            rows: q.rows.unwrap_or(20).min(1000),
        },
    );
    Ok(axum::Json(SearchAnswer {
        count: found.count,
        results: found.results.into_iter().map(|(e, _)| e).collect(),
        facets: found.facets,
    }))
}

/// One dataset with its schema (fields with types, units, levels, personal information). Public.
#[utoipa::path(get, path = "/api/v1/data/datasets/{id}", tag = "data", security(()),
    params(("id" = String, Path)),
    responses((status = 200, body = Entry), (status = 404)))]
async fn dataset(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Entry>, Problem> {
    Ok(axum::Json(catalogue.get(principal.as_ref(), &id)?))
}

/// Registers a dataset of the caller's department (its admins, or the bureau).
#[utoipa::path(post, path = "/api/v1/data/datasets", tag = "data", request_body = Dataset,
    responses((status = 201, body = Entry), (status = 400), (status = 401), (status = 403), (status = 409), (status = 413), (status = 415), (status = 422)))]
async fn create(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    ApiJson(new): ApiJson<Dataset>,
) -> Result<impl IntoResponse, Problem> {
    let entry = catalogue.create(&principal, new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditNote::new(
            "data.dataset.create",
            format!("dataset:{}", entry.dataset.id),
        )),
        axum::Json(entry),
    ))
}

/// The base URL the exports name things under: the request's host.
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The catalogue as DCAT-AP 3 in JSON-LD (expanded form). Public.
#[utoipa::path(get, path = "/api/v1/data/catalog.jsonld", tag = "data", security(()),
    responses((status = 200, content_type = "application/ld+json")))]
async fn catalog_jsonld(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    headers: HeaderMap,
) -> impl IntoResponse {
    let names = catalogue.department_names().await;
    let triples = crate::dcat::triples(
        &base(&headers),
        &catalogue.listed(principal.as_ref()),
        &names,
    );
    (
        [(header::CONTENT_TYPE, "application/ld+json")],
        crate::dcat::json_ld(&triples).to_string(),
    )
}

/// The catalogue as DCAT-AP 3 in Turtle. Public.
#[utoipa::path(get, path = "/api/v1/data/catalog.ttl", tag = "data", security(()),
    responses((status = 200, content_type = "text/turtle")))]
async fn catalog_ttl(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    headers: HeaderMap,
) -> impl IntoResponse {
    let names = catalogue.department_names().await;
    let triples = crate::dcat::triples(
        &base(&headers),
        &catalogue.listed(principal.as_ref()),
        &names,
    );
    (
        [(header::CONTENT_TYPE, "text/turtle; charset=utf-8")],
        crate::dcat::turtle(&triples),
    )
}

async fn ckan(
    catalogue: &Catalogue,
    principal: Option<&Principal>,
    action: &str,
    params: serde_json::Map<String, serde_json::Value>,
) -> axum::response::Response {
    match crate::ckan::run(catalogue, principal, action, &params).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// CKAN's action API, read only, with parameters in the query string. Public.
#[utoipa::path(get, path = "/api/3/action/{action}", tag = "data", security(()),
    params(("action" = String, Path, description = "package_list, package_show, package_search, organization_list, organization_show, group_list, tag_list, license_list, status_show")),
    responses((status = 200, body = Object, description = "CKAN's answer: help, success, result"), (status = 400), (status = 403), (status = 404), (status = 422)))]
async fn ckan_get(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    Path(action): Path<String>,
    QueryString(params): QueryString<Vec<(String, String)>>,
) -> axum::response::Response {
    let params = params
        .into_iter()
        .take(50)
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    ckan(&catalogue, principal.as_ref(), &action, params).await
}

/// CKAN's action API with the parameters as a JSON object (as ckanapi sends them). Public.
#[utoipa::path(post, path = "/api/3/action/{action}", tag = "data", security(()),
    params(("action" = String, Path)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Object, description = "CKAN's answer: help, success, result"), (status = 400), (status = 403), (status = 404), (status = 413), (status = 422)))]
async fn ckan_post(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    Path(action): Path<String>,
    body: Bytes,
) -> axum::response::Response {
    if body.len() > 64 * 1024 {
        return crate::ckan::error(
            Problem::payload_too_large("a CKAN action's parameters are at most 64 KiB"),
            "Validation Error",
        )
        .into_response();
    }
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return crate::ckan::error(
                    Problem::bad_request("the parameters are a JSON object"),
                    "Validation Error",
                )
                .into_response();
            }
        }
    };
    ckan(&catalogue, principal.as_ref(), &action, params).await
}

/// CKAN's action API under its unversioned path (`/api/action/…`, where ckanapi calls it).
#[utoipa::path(get, path = "/api/action/{action}", tag = "data", security(()),
    params(("action" = String, Path)),
    responses((status = 200, body = Object, description = "CKAN's answer: help, success, result"), (status = 400), (status = 403), (status = 404), (status = 422)))]
async fn ckan_get_unversioned(
    state: State<Catalogue>,
    caller: Caller,
    action: Path<String>,
    params: QueryString<Vec<(String, String)>>,
) -> axum::response::Response {
    ckan_get(state, caller, action, params).await
}

/// CKAN's action API under its unversioned path, with the parameters as JSON.
#[utoipa::path(post, path = "/api/action/{action}", tag = "data", security(()),
    params(("action" = String, Path)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Object, description = "CKAN's answer: help, success, result"), (status = 400), (status = 403), (status = 404), (status = 413), (status = 422)))]
async fn ckan_post_unversioned(
    state: State<Catalogue>,
    caller: Caller,
    action: Path<String>,
    body: Bytes,
) -> axum::response::Response {
    ckan_post(state, caller, action, body).await
}
