//! `/api/v1/plan`: the plan, its targets with their status, and progress reports.

use crate::{NewReport, Plan, PlanDoc, Report, TargetStatus};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_http::{ApiJson, ApiPath, ApiResult};
use yunnao_identity::{AuditNote, Principal};

pub fn router() -> OpenApiRouter<Plan> {
    OpenApiRouter::new()
        .routes(routes!(plan_document))
        .routes(routes!(targets))
        .routes(routes!(reports, submit_report))
}

/// The plan: parts, sections and its 46 items with their responsible units and targets
/// (Chinese in Simplified characters). Public: it is a published government document.
#[utoipa::path(get, path = "/api/v1/plan", security(()), tag = "plan",
    responses((status = 200, body = PlanDoc)))]
async fn plan_document(State(plan): State<Plan>) -> axum::Json<PlanDoc> {
    axum::Json(plan.doc().clone())
}

/// The 47 targets, each with its current value, where it comes from (live measurement or a
/// verified sealed report) and its status.
#[utoipa::path(get, path = "/api/v1/plan/targets", tag = "plan",
    responses((status = 200, body = [TargetStatus]), (status = 401)))]
async fn targets(
    State(plan): State<Plan>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<TargetStatus>>> {
    let _ = principal;
    let live = plan.measure().await?;
    Ok(axum::Json(plan.statuses(&live).await?))
}

/// A target's progress reports, newest first, each with its seal verified now.
#[utoipa::path(get, path = "/api/v1/plan/targets/{id}/reports", tag = "plan",
    params(("id" = String, Path, description = "target id, e.g. 16.1")),
    responses((status = 200, body = [Report]), (status = 401), (status = 404)))]
async fn reports(
    State(plan): State<Plan>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<Vec<Report>>> {
    let _ = principal;
    Ok(axum::Json(plan.reports(&id).await?))
}

/// Submits a progress report for one of the department's targets; it is sealed with the
/// department's e-seal (SM2 over SM3 of the canonical document) and stored as sealed.
#[utoipa::path(post, path = "/api/v1/plan/targets/{id}/reports", tag = "plan",
    params(("id" = String, Path, description = "target id, e.g. 12.1")),
    request_body = NewReport,
    responses((status = 201, body = Report), (status = 400), (status = 403), (status = 404), (status = 422)))]
async fn submit_report(
    State(plan): State<Plan>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(report): ApiJson<NewReport>,
) -> ApiResult<impl IntoResponse> {
    let stored = plan.submit(&principal, &id, report).await?;
    Ok((
        StatusCode::CREATED,
        Extension(AuditNote::new(
            "plan.report",
            format!("plan-target:{}:{}", stored.target, stored.id),
        )),
        axum::Json(stored),
    ))
}
