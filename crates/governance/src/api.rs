//! HTTP API of the governance hub under `/api/v1/governance` (Open311 is in [`crate::open311`]).

use crate::Governance;
use crate::catalogue::{
    CalendarDay, Category, CategoryInput, DispatchRule, GridAssignment, NewDispatchRule,
};
use crate::deadlines::ScanReport;
use crate::hotline::ImportReport;
use crate::incidents::{
    CreatedIncident, Incident, IncidentDetail, Location, MAX_PHOTO_BYTES, MAX_PHOTOS, Photo,
    Report, Source, TransitionInput, photo_type,
};
use crate::queries::{
    DailyCount, DailyQuery, Escalation, EscalationFilter, Figures, FiguresQuery, IncidentFilter,
    IncidentPage,
};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_city::{DistrictCoverage, GridRef};
use yunnao_core::Problem;
use yunnao_http::{ApiJson, ApiPath, ApiQuery, ApiResult};
use yunnao_identity::{AuditNote, Principal, Role};

/// Largest patrol report (photos) or hotline file.
pub const UPLOAD_LIMIT: usize = (MAX_PHOTOS + 1) * MAX_PHOTO_BYTES;

pub fn router() -> OpenApiRouter<Governance> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(patrol_report))
        .routes(routes!(import_hotline))
        .layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT));
    OpenApiRouter::new()
        .routes(routes!(grid_lookup))
        .routes(routes!(grid_coverage))
        .routes(routes!(grid_cell))
        .routes(routes!(list_assignments))
        .routes(routes!(get_worker_grids, put_worker_grids))
        .routes(routes!(list_categories))
        .routes(routes!(put_category))
        .routes(routes!(list_rules, add_rule))
        .routes(routes!(delete_rule))
        .routes(routes!(list_calendar))
        .routes(routes!(put_calendar_day, delete_calendar_day))
        .routes(routes!(list_incidents, create_incident))
        .routes(routes!(get_incident))
        .routes(routes!(transition))
        .routes(routes!(rate))
        .routes(routes!(get_media))
        .routes(routes!(escalations))
        .routes(routes!(figures))
        .routes(routes!(daily_figures))
        .routes(routes!(scan_now))
        .merge(uploads)
        .merge(crate::open311::router())
}

fn noted<T: IntoResponse>(note: AuditNote, body: T) -> impl IntoResponse {
    (Extension(note), body)
}

/// Configuration (categories, rules, calendar, grid workers): the command centre's admins
/// and platform admins.
fn require_centre_admin(governance: &Governance, principal: &Principal) -> Result<(), Problem> {
    if principal.is_platform_admin()
        || (principal.department == governance.config.centre && principal.has_role(Role::DeptAdmin))
    {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "this needs a dept_admin of the command centre ({}) or a platform_admin",
            governance.config.centre
        )))
    }
}

fn require_staff(principal: &Principal) -> Result<(), Problem> {
    principal.require_any(
        &[
            Role::PlatformAdmin,
            Role::DeptAdmin,
            Role::Operator,
            Role::GridWorker,
        ],
        "governance:read",
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub lon: f64,
    pub lat: f64,
}

/// The unit grid at a point (WGS84), with its street, community and district.
#[utoipa::path(get, path = "/api/v1/governance/grid/lookup", tag = "governance", params(Point),
    responses((status = 200, body = GridRef), (status = 422, description = "outside Qingdao")))]
async fn grid_lookup(
    State(governance): State<Governance>,
    principal: Principal,
    ApiQuery(point): ApiQuery<Point>,
) -> ApiResult<axum::Json<GridRef>> {
    let _ = principal;
    governance
        .grid
        .lookup(point.lon, point.lat)
        .map(axum::Json)
        .ok_or_else(|| {
            Problem::of(
                "out-of-area",
                format!(
                    "(lon {}, lat {}) lies outside Qingdao's ten districts",
                    point.lon, point.lat
                ),
            )
        })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Coverage {
    pub resolution: u8,
    pub grids: usize,
    pub districts: Vec<DistrictCoverage>,
    pub attribution: String,
    /// How grids are given to streets and communities.
    pub assignment_rule: String,
}

/// Coverage of the city grid per district and street (live: staffing follows grid workers'
/// assignments).
#[utoipa::path(get, path = "/api/v1/governance/grid/coverage", tag = "governance",
    responses((status = 200, body = Coverage)))]
async fn grid_coverage(
    State(governance): State<Governance>,
    principal: Principal,
) -> ApiResult<axum::Json<Coverage>> {
    let _ = principal;
    let assignments = governance.assignments();
    let grid = governance.grid.clone();
    let districts =
        tokio::task::spawn_blocking(move || grid.coverage(|code| assignments.is_staffed(code)))
            .await
            .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(axum::Json(Coverage {
        resolution: governance.grid.resolution,
        grids: governance.grid.len(),
        districts,
        attribution: yunnao_city::ATTRIBUTION.to_owned(),
        assignment_rule: "H3 cells over each district boundary (cut along it); a district's grids in H3 order are split into equal consecutive runs, one per community in code order; a street holds its communities' runs".to_owned(),
    }))
}

/// One grid as a GeoJSON Feature (its outline and codes).
#[utoipa::path(get, path = "/api/v1/governance/grid/cells/{code}", tag = "governance",
    params(("code" = String, Path)), responses((status = 200, description = "GeoJSON Feature"), (status = 404)))]
async fn grid_cell(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let _ = principal;
    let (Some(grid), Some(outline)) = (governance.grid.get(&code), governance.grid.geometry(&code))
    else {
        return Err(Problem::not_found(format!("no grid {code}")));
    };
    let polygons: Vec<serde_json::Value> = outline
        .0
        .iter()
        .map(|p| {
            let ring = |r: &geo::LineString| -> serde_json::Value {
                r.coords().map(|c| serde_json::json!([c.x, c.y])).collect()
            };
            let mut rings = vec![ring(p.exterior())];
            rings.extend(p.interiors().iter().map(ring));
            serde_json::Value::Array(rings)
        })
        .collect();
    let feature = serde_json::json!({
        "type": "Feature",
        "id": grid.code,
        "geometry": {"type": "MultiPolygon", "coordinates": polygons},
        "properties": grid,
    });
    Ok((
        [(header::CONTENT_TYPE, "application/geo+json")],
        feature.to_string(),
    ))
}

/// Every grid worker's assignment.
#[utoipa::path(get, path = "/api/v1/governance/grid-workers", tag = "governance",
    responses((status = 200, body = [GridAssignment])))]
async fn list_assignments(
    State(governance): State<Governance>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<GridAssignment>>> {
    require_staff(&principal)?;
    Ok(axum::Json(governance.grid_assignments().await?))
}

#[utoipa::path(get, path = "/api/v1/governance/grid-workers/{username}", tag = "governance",
    params(("username" = String, Path)), responses((status = 200, body = [GridAssignment])))]
async fn get_worker_grids(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<axum::Json<Vec<GridAssignment>>> {
    require_staff(&principal)?;
    Ok(axum::Json(
        governance
            .grid_assignments()
            .await?
            .into_iter()
            .filter(|a| a.username == username)
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerGrids {
    /// District, street, community or grid codes the worker covers.
    pub grids: Vec<String>,
}

/// Sets the grids a grid worker covers (replaces the previous assignment).
#[utoipa::path(put, path = "/api/v1/governance/grid-workers/{username}", tag = "governance",
    params(("username" = String, Path)), request_body = WorkerGrids,
    responses((status = 200, body = [GridAssignment]), (status = 403), (status = 422)))]
async fn put_worker_grids(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
    ApiJson(body): ApiJson<WorkerGrids>,
) -> ApiResult<impl IntoResponse> {
    require_centre_admin(&governance, &principal)?;
    let assigned = governance.assign_grids(&username, &body.grids).await?;
    Ok(noted(
        AuditNote::new("grid.assign", format!("user:{username}")),
        axum::Json(assigned),
    ))
}

/// Incident categories (GB/T 30428 classes, configured subclasses).
#[utoipa::path(get, path = "/api/v1/governance/categories", tag = "governance",
    responses((status = 200, body = [Category])))]
async fn list_categories(
    State(governance): State<Governance>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<Category>>> {
    let _ = principal;
    Ok(axum::Json(governance.categories().await?))
}

/// Creates or changes a subclass (its department, time limit, clock, attributes).
#[utoipa::path(put, path = "/api/v1/governance/categories/{service_code}", tag = "governance",
    params(("service_code" = String, Path)), request_body = CategoryInput,
    responses((status = 200, body = Category), (status = 403), (status = 422)))]
async fn put_category(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(service_code): ApiPath<String>,
    ApiJson(input): ApiJson<CategoryInput>,
) -> ApiResult<impl IntoResponse> {
    require_centre_admin(&governance, &principal)?;
    let category = governance.put_category(&service_code, input).await?;
    Ok(noted(
        AuditNote::new("category.put", format!("category:{service_code}")),
        axum::Json(category),
    ))
}

#[utoipa::path(get, path = "/api/v1/governance/dispatch-rules", tag = "governance",
    responses((status = 200, body = [DispatchRule])))]
async fn list_rules(
    State(governance): State<Governance>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<DispatchRule>>> {
    require_staff(&principal)?;
    Ok(axum::Json(governance.dispatch_rules().await?))
}

/// Adds a rule: (subclass or `*`, city / district / street) → handling department.
#[utoipa::path(post, path = "/api/v1/governance/dispatch-rules", tag = "governance",
    request_body = NewDispatchRule,
    responses((status = 201, body = DispatchRule), (status = 409), (status = 422)))]
async fn add_rule(
    State(governance): State<Governance>,
    principal: Principal,
    ApiJson(rule): ApiJson<NewDispatchRule>,
) -> ApiResult<impl IntoResponse> {
    require_centre_admin(&governance, &principal)?;
    let rule = governance.add_dispatch_rule(rule, &principal.name).await?;
    Ok(noted(
        AuditNote::new("dispatch-rule.create", format!("dispatch-rule:{}", rule.id)),
        (StatusCode::CREATED, axum::Json(rule)),
    ))
}

#[utoipa::path(delete, path = "/api/v1/governance/dispatch-rules/{id}", tag = "governance",
    params(("id" = String, Path)), responses((status = 204), (status = 404)))]
async fn delete_rule(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    require_centre_admin(&governance, &principal)?;
    if !governance.delete_dispatch_rule(&id).await? {
        return Err(Problem::not_found(format!("no dispatch rule {id}")));
    }
    Ok(noted(
        AuditNote::new("dispatch-rule.delete", format!("dispatch-rule:{id}")),
        StatusCode::NO_CONTENT,
    ))
}

/// The working calendar's exceptions (holidays, worked weekend days).
#[utoipa::path(get, path = "/api/v1/governance/calendar", tag = "governance",
    responses((status = 200, body = [CalendarDay])))]
async fn list_calendar(
    State(governance): State<Governance>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<CalendarDay>>> {
    let _ = principal;
    Ok(axum::Json(governance.calendar_days().await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarDayInput {
    pub working: bool,
    #[serde(default)]
    pub note: String,
}

/// Marks a date a holiday (`working: false`) or a worked weekend day (`working: true`).
/// Deadlines set from now on follow it.
#[utoipa::path(put, path = "/api/v1/governance/calendar/{day}", tag = "governance",
    params(("day" = String, Path, description = "YYYY-MM-DD")), request_body = CalendarDayInput,
    responses((status = 200, body = CalendarDay), (status = 422)))]
async fn put_calendar_day(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(day): ApiPath<String>,
    ApiJson(input): ApiJson<CalendarDayInput>,
) -> ApiResult<impl IntoResponse> {
    require_centre_admin(&governance, &principal)?;
    let day = governance
        .put_calendar_day(CalendarDay {
            day,
            working: input.working,
            note: input.note,
        })
        .await?;
    Ok(noted(
        AuditNote::new("calendar.put", format!("calendar:{}", day.day)),
        axum::Json(day),
    ))
}

#[utoipa::path(delete, path = "/api/v1/governance/calendar/{day}", tag = "governance",
    params(("day" = String, Path)), responses((status = 204), (status = 404)))]
async fn delete_calendar_day(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(day): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    require_centre_admin(&governance, &principal)?;
    if !governance.delete_calendar_day(&day).await? {
        return Err(Problem::not_found(format!("{day} is not in the calendar")));
    }
    Ok(noted(
        AuditNote::new("calendar.delete", format!("calendar:{day}")),
        StatusCode::NO_CONTENT,
    ))
}

/// A report through the platform API.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIncident {
    pub service_code: String,
    pub description: String,
    pub location: Location,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub media_urls: Vec<String>,
}

fn report_from(new: NewIncident, source: Source, principal: &Principal) -> Report {
    let mut report = Report::new(source, &new.service_code, &new.description, &principal.name);
    report.location = Some(new.location);
    report.address = new.address;
    report.attributes = new.attributes;
    report.media_urls = new.media_urls;
    report.reporter = Some((principal.id.clone(), principal.department.clone()));
    report
}

/// Incidents the caller may see: the command centre all, a department its cases, a grid
/// worker the cases of their grids, everyone their own reports. Newest first.
#[utoipa::path(get, path = "/api/v1/governance/incidents", tag = "governance", params(IncidentFilter),
    responses((status = 200, body = IncidentPage)))]
async fn list_incidents(
    State(governance): State<Governance>,
    principal: Principal,
    ApiQuery(filter): ApiQuery<IncidentFilter>,
) -> ApiResult<axum::Json<IncidentPage>> {
    Ok(axum::Json(governance.list(filter, &principal).await?))
}

/// Reports an incident (residents, enterprises, staff, connected systems). Located inside the
/// city, it is registered and dispatched at once by the dispatch rules; outside, refused (422).
#[utoipa::path(post, path = "/api/v1/governance/incidents", tag = "governance",
    request_body = NewIncident,
    responses((status = 201, body = CreatedIncident), (status = 404, description = "unknown service code"), (status = 422)))]
async fn create_incident(
    State(governance): State<Governance>,
    principal: Principal,
    ApiJson(new): ApiJson<NewIncident>,
) -> ApiResult<impl IntoResponse> {
    let source = if principal.has_role(Role::Resident) || principal.has_role(Role::Enterprise) {
        Source::Citizen
    } else {
        Source::Api
    };
    let created = governance
        .report(report_from(new, source, &principal))
        .await?;
    Ok(noted(
        AuditNote::new(
            "incident.report",
            format!("incident:{}", created.incident.id),
        ),
        (StatusCode::CREATED, axum::Json(created)),
    ))
}

#[utoipa::path(get, path = "/api/v1/governance/incidents/{id}", tag = "governance",
    params(("id" = String, Path)), responses((status = 200, body = IncidentDetail), (status = 404)))]
async fn get_incident(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<IncidentDetail>> {
    Ok(axum::Json(governance.incident(&id, &principal).await?))
}

/// One workflow step with a comment. 409 when the step does not fit the incident's state, 403
/// when the caller's role may not take it.
#[utoipa::path(post, path = "/api/v1/governance/incidents/{id}/transitions", tag = "governance",
    params(("id" = String, Path)), request_body = TransitionInput,
    responses((status = 200, body = Incident), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn transition(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<TransitionInput>,
) -> ApiResult<impl IntoResponse> {
    let action = format!("incident.{}", input.action);
    let incident = governance.transition(&id, input, &principal).await;
    // The audit names the step even when it was refused.
    let note = AuditNote::new(action, format!("incident:{id}"));
    match incident {
        Ok(incident) => Ok(noted(note, axum::Json(incident)).into_response()),
        Err(problem) => Ok(noted(note, problem).into_response()),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rating {
    /// 1 (very unsatisfied) to 5 (very satisfied).
    pub satisfaction: i64,
    #[serde(default)]
    pub comment: String,
}

/// The reporter rates how a closed incident was handled.
#[utoipa::path(post, path = "/api/v1/governance/incidents/{id}/rating", tag = "governance",
    params(("id" = String, Path)), request_body = Rating,
    responses((status = 200, body = Incident), (status = 403), (status = 409), (status = 422)))]
async fn rate(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(rating): ApiJson<Rating>,
) -> ApiResult<impl IntoResponse> {
    let incident = governance
        .rate(&id, rating.satisfaction, &rating.comment, &principal)
        .await?;
    Ok(noted(
        AuditNote::new("incident.rate", format!("incident:{id}")),
        axum::Json(incident),
    ))
}

/// A grid worker's patrol finding: `multipart/form-data` with a `report` part (JSON, as for
/// `POST /incidents`) and up to six `photo` parts (JPEG, PNG or WebP, 5 MiB each).
#[utoipa::path(post, path = "/api/v1/governance/patrol-reports", tag = "governance",
    request_body(content = String, content_type = "multipart/form-data"),
    responses((status = 201, body = CreatedIncident), (status = 403), (status = 413), (status = 422)))]
async fn patrol_report(
    State(governance): State<Governance>,
    principal: Principal,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<impl IntoResponse> {
    if !principal.has_role(Role::GridWorker) {
        return Err(Problem::forbidden(
            "patrol reports come from grid workers (role grid_worker)",
        ));
    }
    let mut multipart = multipart.map_err(|e| {
        Problem::unsupported_media_type(format!(
            "send multipart/form-data with report and photo parts: {e}"
        ))
    })?;
    let mut new: Option<NewIncident> = None;
    let mut photos = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| Problem::bad_request(format!("unreadable multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| Problem::bad_request(format!("part {name}: {e}")))?;
        match name.as_str() {
            "report" => {
                new = Some(serde_json::from_slice(&bytes).map_err(|e| {
                    Problem::invalid_json(format!("the report part is not a valid report: {e}"))
                })?);
            }
            "photo" => {
                if bytes.len() > MAX_PHOTO_BYTES {
                    return Err(Problem::payload_too_large(format!(
                        "photo {} is larger than 5 MiB",
                        photos.len() + 1
                    )));
                }
                let content_type = photo_type(&bytes).ok_or_else(|| {
                    Problem::validation(format!(
                        "photo {} is not a JPEG, PNG or WebP image",
                        photos.len() + 1
                    ))
                })?;
                photos.push(Photo {
                    content_type: content_type.to_owned(),
                    bytes: bytes.to_vec(),
                });
            }
            other => {
                return Err(Problem::bad_request(format!(
                    "unexpected part {other:?}: send report and photo parts"
                )));
            }
        }
    }
    let new = new.ok_or_else(|| Problem::bad_request("the report part is missing"))?;
    let mut report = report_from(new, Source::Patrol, &principal);
    report.photos = photos;
    let created = governance.report(report).await?;
    Ok(noted(
        AuditNote::new(
            "incident.patrol",
            format!("incident:{}", created.incident.id),
        ),
        (StatusCode::CREATED, axum::Json(created)),
    ))
}

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// Imports 12345 hotline records (CSV or XLSX); each row stands alone, a ticket already
/// imported is skipped.
#[utoipa::path(post, path = "/api/v1/governance/incidents/import", tag = "governance",
    request_body(content = String, description = "text/csv or XLSX"),
    responses((status = 200, body = ImportReport), (status = 400), (status = 415)))]
async fn import_hotline(
    State(governance): State<Governance>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    if !governance.is_centre(&principal) {
        return Err(Problem::forbidden(
            "hotline records are imported by the command centre",
        ));
    }
    let body = body.map_err(|e| Problem::payload_too_large(e.body_text()))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let grid = match content_type.as_str() {
        "text/csv" => crate::hotline::grid_from_csv(&body),
        XLSX => crate::hotline::grid_from_xlsx(&body),
        _ => {
            return Err(Problem::unsupported_media_type(format!(
                "send text/csv or {XLSX}"
            )));
        }
    }
    .map_err(Problem::bad_request)?;
    let report = governance.import_hotline(grid, &principal).await?;
    Ok(noted(
        AuditNote::new(
            "incident.import",
            format!("hotline:{} rows", report.created),
        ),
        axum::Json(report),
    ))
}

/// A photo of an incident the caller may see.
#[utoipa::path(get, path = "/api/v1/governance/media/{id}", tag = "governance",
    params(("id" = String, Path)), responses((status = 200, description = "the image"), (status = 404)))]
async fn get_media(
    State(governance): State<Governance>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let (content_type, bytes) = governance.media(&id, &principal).await?;
    Ok(([(header::CONTENT_TYPE, content_type)], bytes))
}

/// Deadline warnings and escalations (the command centre: all; department heads: theirs).
#[utoipa::path(get, path = "/api/v1/governance/escalations", tag = "governance",
    params(EscalationFilter), responses((status = 200, body = [Escalation]), (status = 403)))]
async fn escalations(
    State(governance): State<Governance>,
    principal: Principal,
    ApiQuery(filter): ApiQuery<EscalationFilter>,
) -> ApiResult<axum::Json<Vec<Escalation>>> {
    Ok(axum::Json(
        governance.escalations(filter, &principal).await?,
    ))
}

/// Open, overdue, closed today, closure rate, handling time, on-time rate and satisfaction
/// per district or department.
#[utoipa::path(get, path = "/api/v1/governance/figures", tag = "governance",
    params(FiguresQuery), responses((status = 200, body = [Figures])))]
async fn figures(
    State(governance): State<Governance>,
    principal: Principal,
    ApiQuery(query): ApiQuery<FiguresQuery>,
) -> ApiResult<axum::Json<Vec<Figures>>> {
    require_staff(&principal)?;
    Ok(axum::Json(governance.figures(query).await?))
}

/// Incidents reported per day (China Standard Time) and district, the last `days` days.
#[utoipa::path(get, path = "/api/v1/governance/figures/daily", tag = "governance",
    params(DailyQuery), responses((status = 200, body = [DailyCount])))]
async fn daily_figures(
    State(governance): State<Governance>,
    principal: Principal,
    ApiQuery(query): ApiQuery<DailyQuery>,
) -> ApiResult<axum::Json<Vec<DailyCount>>> {
    require_staff(&principal)?;
    Ok(axum::Json(governance.daily(query).await?))
}

/// Runs the deadline check now (it also runs on its own every `governance_scan_ms`).
#[utoipa::path(post, path = "/api/v1/governance/deadlines/scan", tag = "governance",
    responses((status = 200, body = ScanReport), (status = 403)))]
async fn scan_now(
    State(governance): State<Governance>,
    principal: Principal,
) -> ApiResult<impl IntoResponse> {
    if !governance.is_centre(&principal) {
        return Err(Problem::forbidden(
            "the command centre runs the deadline check",
        ));
    }
    let report = governance
        .scan_deadlines(yunnao_core::time::now_ms())
        .await?;
    Ok(noted(
        AuditNote::new("deadlines.scan", "incidents"),
        axum::Json(report),
    ))
}
