//! Open311 GeoReport v2 (<http://wiki.open311.org/GeoReport_v2/>) under `/open311/v2`, in JSON
//! and XML. Reading is public (the services and the requests, without personal data); posting
//! a request needs an API key (`api_key` form field, `X-Api-Key` or a bearer token). Errors use
//! Open311's own format, `[{"code": …, "description": …}]` or `<errors>`.
//!
//! Only requests filed through Open311 are listed; their free text (description, address,
//! status notes) is shown with phone numbers, ID numbers and e-mail addresses masked.
//!
//! Decisions: a request needs `lat` and `long` (there is no geocoder for `address_string`), and
//! one outside Qingdao's districts is refused with 400 and the reason. Statuses: `closed` for
//! closed (结案) and rejected (不予立案), `open` otherwise. Requests from sensor alarms and
//! connected systems are not listed (they are operational, not citizen requests).

use crate::Governance;
use crate::incidents::{Incident, Location, Report, Source, mask_personal};
use crate::workflow::State as CaseState;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_http::ApiPath;
use yunnao_identity::AuditNote;

pub fn router() -> OpenApiRouter<Governance> {
    OpenApiRouter::new()
        .routes(routes!(services_json))
        .routes(routes!(services_xml))
        .routes(routes!(service_definition))
        .routes(routes!(get_requests_json, post_request_json))
        .routes(routes!(get_requests_xml, post_request_xml))
        .routes(routes!(get_request))
        .routes(routes!(get_token))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Xml,
}

/// `name.json` / `name.xml` → (name, format).
fn split_format(file: &str) -> Result<(&str, Format), Open311Error> {
    if let Some(name) = file.strip_suffix(".json") {
        Ok((name, Format::Json))
    } else if let Some(name) = file.strip_suffix(".xml") {
        Ok((name, Format::Xml))
    } else {
        Err(Open311Error::new(
            Format::Json,
            404,
            "add the format: .json or .xml",
        ))
    }
}

/// An error in Open311's format.
struct Open311Error {
    format: Format,
    status: u16,
    description: String,
}

impl Open311Error {
    fn new(format: Format, status: u16, description: impl Into<String>) -> Self {
        Self {
            format,
            status,
            description: description.into(),
        }
    }

    fn from_problem(format: Format, problem: Problem) -> Self {
        // Open311 clients know 400, 403, 404 and 500; validation and out-of-area are 400.
        let status = match problem.status {
            422 => 400,
            s => s,
        };
        let description = problem.detail.clone().unwrap_or(problem.title.clone());
        Self::new(format, status, description)
    }
}

impl IntoResponse for Open311Error {
    fn into_response(self) -> Response {
        let body = json!([{"code": self.status, "description": self.description}]);
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, render(self.format, "errors", &body)).into_response()
    }
}

type Open311Result<T> = Result<T, Open311Error>;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// The element name of an array's items.
fn item_name(list: &str) -> &str {
    match list {
        "services" => "service",
        "service_requests" => "request",
        "errors" => "error",
        "attributes" => "attribute",
        "values" => "value",
        _ => "item",
    }
}

fn xml_value(name: &str, value: &Value, out: &mut String) {
    match value {
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        Value::Array(items) => {
            out.push_str(&format!("<{name}>"));
            for item in items {
                xml_value(item_name(name), item, out);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Object(fields) => {
            out.push_str(&format!("<{name}>"));
            for (key, value) in fields {
                xml_value(key, value, out);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

fn render(format: Format, root: &str, body: &Value) -> Response {
    match format {
        Format::Json => (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body.to_string(),
        )
            .into_response(),
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
            xml_value(root, body, &mut out);
            ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], out).into_response()
        }
    }
}

async fn services(governance: &Governance, format: Format) -> Open311Result<Response> {
    let categories = governance
        .categories()
        .await
        .map_err(|p| Open311Error::from_problem(format, p))?;
    let list: Vec<Value> = categories
        .iter()
        .filter(|c| c.active)
        .map(|c| {
            json!({
                "service_code": c.service_code,
                "service_name": c.name,
                "description": format!("{} · {} ({}), {} {}", c.class_name, c.name, c.name_en,
                    if c.kind == "component" { "部件" } else { "事件" },
                    deadline_text(c.deadline_minutes, &c.clock)),
                "metadata": !c.attributes.is_empty(),
                "type": "realtime",
                "keywords": format!("{},{}", c.class_name, c.kind),
                "group": format!("{}-{}", if c.kind == "component" { "部件" } else { "事件" }, c.class_name),
            })
        })
        .collect();
    Ok(render(format, "services", &Value::Array(list)))
}

fn deadline_text(minutes: i64, clock: &str) -> String {
    let unit = if clock == "natural" {
        "小时"
    } else {
        "工作小时"
    };
    if minutes % 60 == 0 {
        format!("处置时限 {} {unit}", minutes / 60)
    } else {
        format!("处置时限 {minutes} 分钟")
    }
}

/// Service list (JSON).
#[utoipa::path(get, path = "/open311/v2/services.json", security(()), tag = "open311",
    responses((status = 200, description = "Open311 service list")))]
async fn services_json(State(governance): State<Governance>) -> Open311Result<Response> {
    services(&governance, Format::Json).await
}

/// Service list (XML).
#[utoipa::path(get, path = "/open311/v2/services.xml", security(()), tag = "open311",
    responses((status = 200, description = "Open311 service list")))]
async fn services_xml(State(governance): State<Governance>) -> Open311Result<Response> {
    services(&governance, Format::Xml).await
}

/// Service definition: `services/{service_code}.json` or `.xml`.
#[utoipa::path(get, path = "/open311/v2/services/{file}", security(()), tag = "open311",
    params(("file" = String, Path, description = "E0102.json or E0102.xml")),
    responses((status = 200, description = "Open311 service definition"), (status = 404)))]
async fn service_definition(
    State(governance): State<Governance>,
    ApiPath(file): ApiPath<String>,
) -> Open311Result<Response> {
    let (code, format) = split_format(&file)?;
    let category = governance
        .category(code)
        .await
        .map_err(|p| Open311Error::from_problem(format, p))?
        .filter(|c| c.active)
        .ok_or_else(|| Open311Error::new(format, 404, format!("service_code {code} not found")))?;
    let attributes: Vec<Value> = category
        .attributes
        .iter()
        .map(|a| {
            json!({
                "variable": true,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": Value::Null,
                "order": a.order,
                "description": a.description,
                "values": a.values.iter().map(|v| json!({"key": v, "name": v})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({"service_code": category.service_code, "attributes": attributes});
    Ok(render(format, "service_definition", &body))
}

fn parse_form(body: &[u8]) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut fields = BTreeMap::new();
    let mut attributes = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(body) {
        if let Some(code) = key
            .strip_prefix("attribute[")
            .and_then(|k| k.strip_suffix(']'))
        {
            attributes.insert(code.to_owned(), value.into_owned());
        } else {
            fields.insert(key.into_owned(), value.into_owned());
        }
    }
    (fields, attributes)
}

async fn post_request(
    governance: Governance,
    format: Format,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match create(&governance, format, &headers, body).await {
        Ok((note, response)) => (Extension(note), response).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn create(
    governance: &Governance,
    format: Format,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Open311Result<(AuditNote, Response)> {
    let body = body.map_err(|e| Open311Error::new(format, 413, e.body_text()))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(Open311Error::new(
            format,
            415,
            "send the request as application/x-www-form-urlencoded (GeoReport v2)",
        ));
    }
    let (fields, attributes) = parse_form(&body);
    let credential = fields
        .get("api_key")
        .cloned()
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
        .ok_or_else(|| Open311Error::new(format, 403, "api_key is required to post a request"))?;
    let principal = governance
        .identity
        .authenticate(credential.trim())
        .await
        .map_err(|_| Open311Error::new(format, 403, "api_key is not valid"))?;
    let field = |name: &str| fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let service_code = field("service_code")
        .ok_or_else(|| Open311Error::new(format, 400, "service_code is required"))?;
    let (Some(lat), Some(long)) = (field("lat"), field("long")) else {
        return Err(Open311Error::new(
            format,
            400,
            "lat and long are required (this endpoint has no geocoder for address_string or address_id)",
        ));
    };
    let (Ok(lat), Ok(lon)) = (lat.parse::<f64>(), long.parse::<f64>()) else {
        return Err(Open311Error::new(
            format,
            400,
            "lat and long must be numbers",
        ));
    };
    let description = field("description").unwrap_or_default();
    let mut report = Report::new(Source::Open311, service_code, description, &principal.name);
    report.location = Some(Location { lon, lat });
    report.address = field("address_string").unwrap_or_default().to_owned();
    report.attributes = attributes;
    report.media_urls = field("media_url")
        .map(|u| vec![u.to_owned()])
        .unwrap_or_default();
    report.reporter = Some((principal.id.clone(), principal.department.clone()));
    let contact: serde_json::Map<String, Value> = [
        "email",
        "first_name",
        "last_name",
        "phone",
        "device_id",
        "account_id",
    ]
    .into_iter()
    .filter_map(|k| field(k).map(|v| (k.to_owned(), Value::String(v.to_owned()))))
    .collect();
    if !contact.is_empty() {
        report.contact = Some(Value::Object(contact));
    }
    let created = governance
        .report(report)
        .await
        .map_err(|p| Open311Error::from_problem(format, p))?;
    let incident = created.incident;
    let names = governance
        .department_names()
        .await
        .map_err(|p| Open311Error::from_problem(format, p))?;
    let notice = match (&incident.department, &incident.due_at) {
        (Some(department), Some(due)) => format!(
            "已受理并派遣至{}，处置时限至 {due}",
            names.get(department).unwrap_or(department)
        ),
        _ => "已受理，等待指挥中心立案".to_owned(),
    };
    let body = json!([{
        "service_request_id": incident.id,
        "token": incident.token,
        "service_notice": notice,
        "account_id": fields.get("account_id"),
    }]);
    let note = AuditNote {
        action: Some("open311.request".into()),
        target: Some(format!("incident:{}", incident.id)),
        actor: Some(principal.name.clone()),
        department: Some(principal.department.clone()),
        ..AuditNote::default()
    };
    Ok((
        note,
        (
            StatusCode::CREATED,
            render(format, "service_requests", &body),
        )
            .into_response(),
    ))
}

/// Post a service request (JSON answer); form fields as GeoReport v2.
#[utoipa::path(post, path = "/open311/v2/requests.json", tag = "open311",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 201, description = "[{service_request_id, token, service_notice}]"), (status = 400), (status = 403), (status = 404)))]
async fn post_request_json(
    State(governance): State<Governance>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    post_request(governance, Format::Json, headers, body).await
}

/// Post a service request (XML answer).
#[utoipa::path(post, path = "/open311/v2/requests.xml", tag = "open311",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 201, description = "<service_requests>"), (status = 400), (status = 403), (status = 404)))]
async fn post_request_xml(
    State(governance): State<Governance>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    post_request(governance, Format::Xml, headers, body).await
}

fn status(state: CaseState) -> &'static str {
    if state.is_open() { "open" } else { "closed" }
}

fn request_json(incident: &Incident) -> Value {
    json!({
        "service_request_id": incident.id,
        "status": status(incident.state),
        "status_notes": if incident.status_notes.is_empty() {
            Value::String(incident.state_name.clone())
        } else {
            Value::String(mask_personal(&format!("{}: {}", incident.state_name, incident.status_notes)))
        },
        "service_name": incident.service_name,
        "service_code": incident.service_code,
        "description": mask_personal(&incident.description),
        "agency_responsible": incident.department,
        "service_notice": Value::Null,
        "requested_datetime": incident.created_at,
        "updated_datetime": incident.updated_at,
        "expected_datetime": incident.due_at,
        "address": mask_personal(&incident.address),
        "address_id": Value::Null,
        "zipcode": Value::Null,
        "lat": incident.location.map(|l| l.lat),
        "long": incident.location.map(|l| l.lon),
        "media_url": incident.media_urls.first(),
    })
}

/// Publicly listed: requests filed through Open311, which is a public channel. What residents
/// file through the signed-in API, hotline calls and patrol reports stay with the staff.
const LISTED: &str = "source = 'open311'";

fn parse_time(format: Format, name: &str, value: &str) -> Open311Result<i64> {
    yunnao_core::time::parse_rfc3339_ms(value).ok_or_else(|| {
        Open311Error::new(
            format,
            400,
            format!("{name} {value:?} is not a W3C datetime (e.g. 2026-11-29T10:00:00+08:00)"),
        )
    })
}

async fn get_requests(
    governance: &Governance,
    format: Format,
    query: Option<String>,
) -> Open311Result<Response> {
    let params: BTreeMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    const DAY: i64 = 86_400_000;
    let now = yunnao_core::time::now_ms();
    let mut conditions = vec![LISTED.to_owned()];
    let mut texts: Vec<String> = Vec::new();
    let mut push_list = |column: &str, list: &str, texts: &mut Vec<String>| {
        let mut placeholders = Vec::new();
        for item in list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .take(1000)
        {
            texts.push(item.to_owned());
            placeholders.push(format!("${}", texts.len()));
        }
        if !placeholders.is_empty() {
            conditions.push(format!("{column} IN ({})", placeholders.join(", ")));
        }
    };
    if let Some(ids) = params.get("service_request_id") {
        // Ids given: every other parameter is ignored, as the spec says.
        push_list("id", ids, &mut texts);
    } else {
        if let Some(codes) = params.get("service_code") {
            push_list("service_code", codes, &mut texts);
        }
        let end = match params.get("end_date") {
            Some(v) => parse_time(format, "end_date", v)?,
            None => now,
        };
        let start = match params.get("start_date") {
            Some(v) => parse_time(format, "start_date", v)?,
            None => end - 90 * DAY,
        };
        if end < start {
            return Err(Open311Error::new(
                format,
                400,
                "end_date is before start_date",
            ));
        }
        if end - start > 90 * DAY {
            return Err(Open311Error::new(
                format,
                400,
                "start_date and end_date may not span more than 90 days",
            ));
        }
        conditions.push(format!("created_at_ms BETWEEN {start} AND {end}"));
        if let Some(statuses) = params.get("status") {
            let mut states = Vec::new();
            for s in statuses.split(',').map(str::trim) {
                match s {
                    "open" => states.push("state NOT IN ('closed', 'rejected')"),
                    "closed" => states.push("state IN ('closed', 'rejected')"),
                    other => {
                        return Err(Open311Error::new(
                            format,
                            400,
                            format!("status {other:?} is not open or closed"),
                        ));
                    }
                }
            }
            conditions.push(format!("({})", states.join(" OR ")));
        }
    }
    let rows = governance
        .open311_rows(&conditions.join(" AND "), &texts)
        .await
        .map_err(|p| Open311Error::from_problem(format, p))?;
    let list: Vec<Value> = rows.iter().map(request_json).collect();
    Ok(render(format, "service_requests", &Value::Array(list)))
}

/// Service requests (JSON): `service_request_id`, `service_code`, `start_date`, `end_date`
/// (at most 90 days apart; the last 90 days by default), `status`; at most 1,000.
#[utoipa::path(get, path = "/open311/v2/requests.json", security(()), tag = "open311",
    responses((status = 200, description = "Open311 service requests"), (status = 400)))]
async fn get_requests_json(
    State(governance): State<Governance>,
    RawQuery(query): RawQuery,
) -> Open311Result<Response> {
    get_requests(&governance, Format::Json, query).await
}

/// Service requests (XML).
#[utoipa::path(get, path = "/open311/v2/requests.xml", security(()), tag = "open311",
    responses((status = 200, description = "Open311 service requests"), (status = 400)))]
async fn get_requests_xml(
    State(governance): State<Governance>,
    RawQuery(query): RawQuery,
) -> Open311Result<Response> {
    get_requests(&governance, Format::Xml, query).await
}

/// One service request: `requests/{id}.json` or `.xml`.
#[utoipa::path(get, path = "/open311/v2/requests/{file}", security(()), tag = "open311",
    params(("file" = String, Path)), responses((status = 200), (status = 404)))]
async fn get_request(
    State(governance): State<Governance>,
    ApiPath(file): ApiPath<String>,
) -> Open311Result<Response> {
    let (id, format) = split_format(&file)?;
    let rows = governance
        .open311_rows(&format!("{LISTED} AND id = $1"), &[id.to_owned()])
        .await
        .map_err(|p| Open311Error::from_problem(format, p))?;
    if rows.is_empty() {
        return Err(Open311Error::new(
            format,
            404,
            format!("service_request_id {id} not found"),
        ));
    }
    let list: Vec<Value> = rows.iter().map(request_json).collect();
    Ok(render(format, "service_requests", &Value::Array(list)))
}

/// The request id of a token: `tokens/{token}.json` or `.xml`.
#[utoipa::path(get, path = "/open311/v2/tokens/{file}", security(()), tag = "open311",
    params(("file" = String, Path)), responses((status = 200), (status = 404)))]
async fn get_token(
    State(governance): State<Governance>,
    ApiPath(file): ApiPath<String>,
) -> Open311Result<Response> {
    let (token, format) = split_format(&file)?;
    let rows = governance
        .open311_rows(&format!("{LISTED} AND token = $1"), &[token.to_owned()])
        .await
        .map_err(|p| Open311Error::from_problem(format, p))?;
    let incident = rows
        .first()
        .ok_or_else(|| Open311Error::new(format, 404, format!("token {token} not found")))?;
    let body = json!([{"service_request_id": incident.id, "token": incident.token}]);
    Ok(render(format, "service_requests", &body))
}

impl Governance {
    async fn open311_rows(
        &self,
        condition: &str,
        texts: &[String],
    ) -> Result<Vec<Incident>, Problem> {
        use yunnao_store::{DbResultExt, sqlx};
        let mut query = sqlx::query_as::<_, crate::incidents::Row>(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM gov_incidents WHERE {condition} ORDER BY created_at_ms DESC LIMIT 1000",
            crate::incidents::COLUMNS
        )));
        for text in texts {
            query = query.bind(text.clone());
        }
        let rows = query.fetch_all(self.db.pool()).await.db()?;
        let categories = self.categories().await?;
        let names = self.department_names().await?;
        Ok(rows
            .iter()
            .map(|row| {
                let mut incident = self.view(row, &categories, Vec::new());
                // Open311 names the agency; people read its name, not our code.
                incident.department = incident
                    .department
                    .map(|code| names.get(&code).cloned().unwrap_or(code));
                incident
            })
            .collect())
    }
}
