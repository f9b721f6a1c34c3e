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
use yunnao_http::{ApiJson, RequestId};
use yunnao_identity::{AuditNote, Principal};

pub fn router() -> OpenApiRouter<Catalogue> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(import, versions))
        .routes(routes!(infer))
        .layer(axum::extract::DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(rows))
        .routes(routes!(monitoring))
        .routes(routes!(capabilities, register_capability))
        .routes(routes!(list_subscriptions, subscribe))
        .routes(routes!(cancel_subscription))
        .routes(routes!(call_get, call_post))
        .routes(routes!(list_requests, file_request))
        .routes(routes!(get_request))
        .routes(routes!(decide))
        .routes(routes!(revoke))
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
    request_id: &str,
    action: &str,
    params: serde_json::Map<String, serde_json::Value>,
) -> axum::response::Response {
    match crate::ckan::run(catalogue, principal, action, &params, request_id).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// CKAN's action API, read only, with parameters in the query string. Public.
#[utoipa::path(get, path = "/api/3/action/{action}", tag = "data", security(()),
    params(("action" = String, Path, description = "package_list, package_show, package_search, organization_list, organization_show, group_list, tag_list, license_list, status_show")),
    responses((status = 200, body = Object, description = "CKAN's answer: help, success, result"), (status = 400), (status = 403), (status = 404), (status = 422), (status = 502), (status = 503)))]
async fn ckan_get(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    request_id: RequestId,
    Path(action): Path<String>,
    QueryString(params): QueryString<Vec<(String, String)>>,
) -> axum::response::Response {
    let params = params
        .into_iter()
        .take(50)
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    ckan(
        &catalogue,
        principal.as_ref(),
        &request_id.0,
        &action,
        params,
    )
    .await
}

/// CKAN's action API with the parameters as a JSON object (as ckanapi sends them). Public.
#[utoipa::path(post, path = "/api/3/action/{action}", tag = "data", security(()),
    params(("action" = String, Path)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Object, description = "CKAN's answer: help, success, result"), (status = 400), (status = 403), (status = 404), (status = 413), (status = 422), (status = 502), (status = 503)))]
async fn ckan_post(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    request_id: RequestId,
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
    ckan(
        &catalogue,
        principal.as_ref(),
        &request_id.0,
        &action,
        params,
    )
    .await
}

/// CKAN's action API under its unversioned path (`/api/action/…`, where ckanapi calls it).
#[utoipa::path(get, path = "/api/action/{action}", tag = "data", security(()),
    params(("action" = String, Path)),
    responses((status = 200, body = Object, description = "CKAN's answer: help, success, result"), (status = 400), (status = 403), (status = 404), (status = 422), (status = 502), (status = 503)))]
async fn ckan_get_unversioned(
    state: State<Catalogue>,
    caller: Caller,
    request_id: RequestId,
    action: Path<String>,
    params: QueryString<Vec<(String, String)>>,
) -> axum::response::Response {
    ckan_get(state, caller, request_id, action, params).await
}

/// CKAN's action API under its unversioned path, with the parameters as JSON.
#[utoipa::path(post, path = "/api/action/{action}", tag = "data", security(()),
    params(("action" = String, Path)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Object, description = "CKAN's answer: help, success, result"), (status = 400), (status = 403), (status = 404), (status = 413), (status = 422), (status = 502), (status = 503)))]
async fn ckan_post_unversioned(
    state: State<Catalogue>,
    caller: Caller,
    request_id: RequestId,
    action: Path<String>,
    body: Bytes,
) -> axum::response::Response {
    ckan_post(state, caller, request_id, action, body).await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `csv`, `xlsx`, `json` (an array of objects) or `jsonl`; from the content type when not
    /// given.
    pub format: Option<String>,
    /// For CSV: `auto` (default: UTF-8, else GBK), `utf-8` or `gbk`.
    pub encoding: Option<String>,
}

fn format_of(query: &ImportQuery, headers: &HeaderMap) -> Result<crate::import::Format, Problem> {
    let named = query.format.clone().or_else(|| {
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
    });
    match named.as_deref() {
        Some(name) => crate::import::Format::parse(name).ok_or_else(|| {
            Problem::unsupported_media_type(format!(
                "{name} is not csv, xlsx, json or jsonl (name it with ?format=)"
            ))
        }),
        None => Err(Problem::unsupported_media_type(
            "name the file's format: ?format=csv, xlsx, json or jsonl",
        )),
    }
}

/// Streams a request body to a temporary file, at most `limit` bytes.
async fn spool(body: axum::body::Body, limit: u64) -> Result<tempfile::TempPath, Problem> {
    use futures::StreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    let file = tempfile::Builder::new()
        .prefix("yunnao-import-")
        .tempfile()
        .map_err(|e| Problem::internal(format!("no room for the upload: {e}")))?;
    let (file, path) = file.into_parts();
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Problem::bad_request(format!("the upload broke off: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(Problem::payload_too_large(format!(
                "an import is at most {} MiB",
                limit >> 20
            )));
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| Problem::internal(format!("no room for the upload: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| Problem::internal(format!("no room for the upload: {e}")))?;
    if size == 0 {
        return Err(Problem::validation("the file is empty"));
    }
    Ok(path)
}

/// Imports a file (CSV in UTF-8 or GBK, XLSX, JSON, JSON Lines) as the dataset's next version,
/// the old ones kept. Typed by the schema; a file with a bad row is refused whole, every bad
/// row named (`errors`, the first 100, and `error_count`). The dataset's department admins.
#[utoipa::path(post, path = "/api/v1/data/datasets/{id}/versions", tag = "data",
    params(("id" = String, Path), ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "the file"),
    responses((status = 201, body = crate::rows::ImportReport), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 413), (status = 415), (status = 422)))]
async fn import(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    Path(id): Path<String>,
    QueryString(query): QueryString<ImportQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<impl IntoResponse, Problem> {
    let dataset = catalogue.get(Some(&principal), &id)?.dataset;
    principal.require(
        yunnao_identity::Resource::Datasets,
        yunnao_identity::Action::Write,
        &dataset.department,
    )?;
    let format = format_of(&query, &headers)?;
    let path = spool(body, catalogue.import_limit()).await?;
    let report = catalogue
        .import(&principal, &id, path.to_path_buf(), format, query.encoding)
        .await?;
    drop(path);
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditNote::new(
            "data.import",
            format!(
                "dataset:{id} version:{} rows:{}",
                report.version.version, report.version.rows
            ),
        )),
        axum::Json(report),
    ))
}

/// Every imported version of a dataset, newest first. Public like the catalogue.
#[utoipa::path(get, path = "/api/v1/data/datasets/{id}/versions", tag = "data", security(()),
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<crate::rows::Version>), (status = 404)))]
async fn versions(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<crate::rows::Version>>, Problem> {
    catalogue.get(principal.as_ref(), &id)?;
    Ok(axum::Json(catalogue.versions(&id).await?))
}

/// The fields a file would have, typed from every value of the whole file (to register a
/// dataset from a file). Department admins.
#[utoipa::path(post, path = "/api/v1/data/infer", tag = "data", params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "the file"),
    responses((status = 200, body = Vec<crate::Field>), (status = 400), (status = 401), (status = 403), (status = 413), (status = 415), (status = 422)))]
async fn infer(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    QueryString(query): QueryString<ImportQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<Vec<crate::Field>>, Problem> {
    principal.require(
        yunnao_identity::Resource::Datasets,
        yunnao_identity::Action::Write,
        &principal.department,
    )?;
    let format = format_of(&query, &headers)?;
    let path = spool(body, catalogue.import_limit()).await?;
    let encoding = query.encoding.clone();
    let fields = tokio::task::spawn_blocking(move || {
        crate::import::infer(&path, format, encoding.as_deref())
    })
    .await
    .map_err(|e| Problem::internal(format!("inference task: {e}")))??;
    Ok(axum::Json(fields))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RowsQuery {
    /// A JSON object: field → a value or a list of values (CKAN's `filters`).
    pub filters: Option<String>,
    /// Text any text field contains.
    pub q: Option<String>,
    /// `field [asc|desc]`, comma-separated, at most 3.
    pub sort: Option<String>,
    /// Field names, comma-separated.
    pub fields: Option<String>,
    /// At most 1000; 100 unless given.
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    /// Count the rows matching (default true).
    pub include_total: Option<bool>,
}

/// Rows of a dataset as the caller may read them: its department every field; open data
/// anyone; conditional data the holder of a live grant, its fields and rows only, masked as
/// it says; data not shared no one else. Every read is metered and audited.
#[utoipa::path(get, path = "/api/v1/data/datasets/{id}/rows", tag = "data", security((), ("bearer" = [])),
    params(("id" = String, Path), RowsQuery),
    responses((status = 200, body = crate::rows::Rows), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 502, description = "a live view's source (a department API) failed"), (status = 503, description = "live views are not connected")))]
async fn rows(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
    request_id: RequestId,
    Path(id): Path<String>,
    QueryString(query): QueryString<RowsQuery>,
) -> Result<axum::Json<crate::rows::Rows>, Problem> {
    let filters = match query.filters.as_deref().map(str::trim) {
        None | Some("") => serde_json::Map::new(),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return Err(Problem::bad_request(
                    "filters: a JSON object of field: value or field: [values]",
                )
                .with_extension("field", "filters"));
            }
        },
    };
    let read = crate::table::ReadQuery {
        filters,
        q: query.q,
        sort: query.sort,
        fields: query
            .fields
            .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect()),
        limit: query.limit.unwrap_or(100).min(crate::table::MAX_LIMIT),
        offset: query.offset.unwrap_or(0).min(crate::table::MAX_OFFSET),
        include_total: query.include_total.unwrap_or(true),
    };
    Ok(axum::Json(
        catalogue
            .read(principal.as_ref(), &request_id.0, &id, &read)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    /// `pending`, `approved`, `refused`, `revoked`, `expired`.
    pub status: Option<String>,
}

/// Requests the caller's department filed or received; the bureau sees all.
#[utoipa::path(get, path = "/api/v1/data/requests", tag = "data", params(RequestsQuery),
    responses((status = 200, body = Vec<crate::sharing::Request>), (status = 401), (status = 403)))]
async fn list_requests(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    QueryString(query): QueryString<RequestsQuery>,
) -> Result<axum::Json<Vec<crate::sharing::Request>>, Problem> {
    Ok(axum::Json(
        catalogue
            .requests(&principal, query.status.as_deref())
            .await?,
    ))
}

/// Files a request for another department's conditional dataset (purpose, legal basis,
/// fields, rows, period, volume). Core data and data not shared are refused.
#[utoipa::path(post, path = "/api/v1/data/requests", tag = "data", request_body = crate::sharing::NewRequest,
    responses((status = 201, body = crate::sharing::Request), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413), (status = 415), (status = 422)))]
async fn file_request(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    ApiJson(new): ApiJson<crate::sharing::NewRequest>,
) -> Result<impl IntoResponse, Problem> {
    let request = catalogue.file_request(&principal, new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditNote::new(
            "data.request.file",
            format!("request:{} dataset:{}", request.id, request.dataset),
        )),
        axum::Json(request),
    ))
}

/// One request, to its owner's and its consumer's staff.
#[utoipa::path(get, path = "/api/v1/data/requests/{id}", tag = "data", params(("id" = String, Path)),
    responses((status = 200, body = crate::sharing::Request), (status = 401), (status = 404)))]
async fn get_request(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<crate::sharing::Request>, Problem> {
    Ok(axum::Json(catalogue.request(&principal, &id).await?))
}

/// The owner approves (narrowing fields, rows or period, choosing each field's masking) or
/// refuses with a reason.
#[utoipa::path(post, path = "/api/v1/data/requests/{id}/decision", tag = "data", params(("id" = String, Path)),
    request_body = crate::sharing::Decision,
    responses((status = 200, body = crate::sharing::Request), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 413), (status = 415), (status = 422)))]
async fn decide(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(decision): ApiJson<crate::sharing::Decision>,
) -> Result<impl IntoResponse, Problem> {
    let request = catalogue.decide(&principal, &id, decision).await?;
    Ok((
        axum::Extension(AuditNote::new(
            format!("data.request.{}", request.status),
            format!(
                "request:{} dataset:{} consumer:{}",
                request.id, request.dataset, request.consumer
            ),
        )),
        axum::Json(request),
    ))
}

/// Revokes a grant (or withdraws a request) at once: the owner's or the consumer's admins.
#[utoipa::path(post, path = "/api/v1/data/requests/{id}/revoke", tag = "data", params(("id" = String, Path)),
    request_body = crate::sharing::Revocation,
    responses((status = 200, body = crate::sharing::Request), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 413), (status = 415), (status = 422)))]
async fn revoke(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(revocation): ApiJson<crate::sharing::Revocation>,
) -> Result<impl IntoResponse, Problem> {
    let request = catalogue.revoke(&principal, &id, revocation).await?;
    Ok((
        axum::Extension(AuditNote::new(
            "data.request.revoke",
            format!(
                "request:{} dataset:{} consumer:{}",
                request.id, request.dataset, request.consumer
            ),
        )),
        axum::Json(request),
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MonitoringQuery {
    /// Reads counted over this many days (1 to 366; 30 unless given).
    pub days: Option<i64>,
}

/// Monitoring and evaluation: per dataset requests, decisions and their time, reads, rows
/// served, freshness and quality; the departments ranked by data supplied and used; open
/// staleness alerts. Signed-in staff.
#[utoipa::path(get, path = "/api/v1/data/monitoring", tag = "data", params(MonitoringQuery),
    responses((status = 200, body = crate::monitoring::Monitoring), (status = 401)))]
async fn monitoring(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    QueryString(query): QueryString<MonitoringQuery>,
) -> Result<axum::Json<crate::monitoring::Monitoring>, Problem> {
    Ok(axum::Json(
        catalogue
            .monitoring(Some(&principal), query.days.unwrap_or(30))
            .await?,
    ))
}

/// The marketplace (一体化应用能力服务超市): the platform's capabilities and the departments'
/// registered APIs, with their live subscriptions. Public.
#[utoipa::path(get, path = "/api/v1/data/capabilities", tag = "data", security(()),
    responses((status = 200, body = Vec<crate::market::Capability>)))]
async fn capabilities(
    State(catalogue): State<Catalogue>,
    Caller(principal): Caller,
) -> Result<axum::Json<Vec<crate::market::Capability>>, Problem> {
    Ok(axum::Json(
        catalogue.capabilities(principal.as_ref()).await?,
    ))
}

/// Registers a department API in the marketplace; the hub proxies calls to it. Department
/// admins.
#[utoipa::path(post, path = "/api/v1/data/capabilities", tag = "data", request_body = crate::market::NewCapability,
    responses((status = 201, body = crate::market::Capability), (status = 400), (status = 401), (status = 403), (status = 409), (status = 413), (status = 415), (status = 422)))]
async fn register_capability(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    ApiJson(new): ApiJson<crate::market::NewCapability>,
) -> Result<impl IntoResponse, Problem> {
    let capability = catalogue.register_capability(&principal, new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditNote::new(
            "data.capability.register",
            format!("capability:{}", capability.id),
        )),
        axum::Json(capability),
    ))
}

/// The caller's department's scenario-app subscriptions (the bureau: all).
#[utoipa::path(get, path = "/api/v1/data/subscriptions", tag = "data",
    responses((status = 200, body = Vec<crate::market::Subscription>), (status = 401), (status = 403)))]
async fn list_subscriptions(
    State(catalogue): State<Catalogue>,
    principal: Principal,
) -> Result<axum::Json<Vec<crate::market::Subscription>>, Problem> {
    Ok(axum::Json(catalogue.subscriptions(&principal).await?))
}

/// Subscribes a scenario app (an API client of the department) to a capability or a dataset.
#[utoipa::path(post, path = "/api/v1/data/subscriptions", tag = "data", request_body = crate::market::NewSubscription,
    responses((status = 201, body = crate::market::Subscription), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 413), (status = 415), (status = 422)))]
async fn subscribe(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    ApiJson(new): ApiJson<crate::market::NewSubscription>,
) -> Result<impl IntoResponse, Problem> {
    let subscription = catalogue.subscribe(&principal, new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditNote::new(
            "data.subscription.create",
            format!(
                "subscription:{} client:{} {}:{}",
                subscription.id,
                subscription.client_id,
                subscription.target_kind,
                subscription.target
            ),
        )),
        axum::Json(subscription),
    ))
}

/// Cancels a subscription.
#[utoipa::path(post, path = "/api/v1/data/subscriptions/{id}/cancel", tag = "data", params(("id" = String, Path)),
    responses((status = 200, body = crate::market::Subscription), (status = 401), (status = 403), (status = 404)))]
async fn cancel_subscription(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    let subscription = catalogue.cancel_subscription(&principal, &id).await?;
    Ok((
        axum::Extension(AuditNote::new(
            "data.subscription.cancel",
            format!("subscription:{}", subscription.id),
        )),
        axum::Json(subscription),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CallQuery {
    /// The upstream path to call (`/permits/3702…`); the other query parameters go with it.
    pub path: String,
}

/// A call to a department capability (GET), forwarded to `{upstream}{path}` with the app's
/// identity (`X-Yunnao-Client`, `X-Yunnao-Department`), within its subscription's budget,
/// metered. Scenario apps, with their API key.
#[utoipa::path(get, path = "/api/v1/data/capabilities/{id}/call", tag = "data",
    params(("id" = String, Path), CallQuery),
    responses((status = 200, description = "the upstream's answer"), (status = 400), (status = 401), (status = 403), (status = 404), (status = 429), (status = 502)))]
async fn call_get(
    state: State<Catalogue>,
    principal: Principal,
    id: Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<axum::response::Response, Problem> {
    call_capability(
        state,
        principal,
        id,
        axum::http::Method::GET,
        uri,
        headers,
        Bytes::new(),
    )
    .await
}

/// A call to a department capability (POST, the body forwarded as it is).
#[utoipa::path(post, path = "/api/v1/data/capabilities/{id}/call", tag = "data",
    params(("id" = String, Path), CallQuery),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, description = "the upstream's answer"), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413), (status = 429), (status = 502)))]
async fn call_post(
    state: State<Catalogue>,
    principal: Principal,
    id: Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::response::Response, Problem> {
    call_capability(
        state,
        principal,
        id,
        axum::http::Method::POST,
        uri,
        headers,
        body,
    )
    .await
}

async fn call_capability(
    State(catalogue): State<Catalogue>,
    principal: Principal,
    Path(id): Path<String>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::response::Response, Problem> {
    let mut path = None;
    let mut rest = Vec::new();
    for (key, value) in url_pairs(uri.query().unwrap_or("")) {
        if key == "path" && path.is_none() {
            path = Some(value);
        } else {
            rest.push((key, value));
        }
    }
    let path = path.ok_or_else(|| Problem::bad_request("path: the upstream path to call"))?;
    let capability = catalogue.admit_call(&principal, &id).await?;
    let upstream = capability
        .upstream
        .ok_or_else(|| Problem::internal("a department capability without an upstream"))?;
    if !path.starts_with('/') || path.split('/').any(|segment| segment == "..") || path.len() > 2000
    {
        return Err(Problem::bad_request("path: an absolute path without `..`"));
    }
    let mut target = reqwest::Url::parse(&format!("{upstream}{path}"))
        .map_err(|_| Problem::bad_request("path: not a URL path"))?;
    if !rest.is_empty() {
        target.query_pairs_mut().extend_pairs(rest.iter());
    }
    let mut request = catalogue
        .upstream_client()
        .request(method, target)
        .header("x-yunnao-client", principal.id.as_str())
        .header("x-yunnao-department", principal.department.as_str())
        .body(body);
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let answer = request.send().await.map_err(|e| {
        tracing::warn!(capability = %id, error = %e, "capability upstream failed");
        Problem::for_status(
            502,
            "Bad Gateway",
            format!("{id}'s upstream did not answer"),
        )
    })?;
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = answer.bytes().await.map_err(|_| {
        Problem::for_status(502, "Bad Gateway", format!("{id}'s upstream broke off"))
    })?;
    if bytes.len() > 8 << 20 {
        return Err(Problem::for_status(
            502,
            "Bad Gateway",
            format!("{id}'s answer is over 8 MiB"),
        ));
    }
    let mut response = (status, bytes).into_response();
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response.extensions_mut().insert(AuditNote::skip());
    Ok(response)
}

/// A query string's pairs, percent-decoded.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}
