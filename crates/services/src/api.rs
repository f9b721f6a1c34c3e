//! `/api/v1/services`: the catalogue (public: what a service needs is told to anyone, 一次告知),
//! holder bindings, e-licences (issue, read, mine, status) and their public verification.

use crate::applications::{Application, Applications, NewApplication};
use crate::catalogue::{Bundle, Catalogue, Service};
use crate::licences::{Holder, HolderBinding, Licence, Licences, NewLicence, Verification};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_http::{ApiJson, ApiPath, ApiQuery};
use yunnao_identity::{AuditNote, Principal};

type ApiResult<T> = Result<T, Problem>;

#[derive(Clone)]
pub struct ServicesState {
    pub catalogue: Arc<Catalogue>,
    pub licences: Licences,
    pub applications: Applications,
}

impl ServicesState {
    pub fn new(
        db: yunnao_store::Db,
        identity: yunnao_identity::Identity,
    ) -> Result<ServicesState, String> {
        let catalogue = Arc::new(Catalogue::seed()?);
        let licences = Licences::new(db.clone(), identity);
        Ok(ServicesState {
            applications: Applications::new(db, catalogue.clone(), licences.clone()),
            catalogue,
            licences,
        })
    }
}

pub fn router() -> OpenApiRouter<ServicesState> {
    OpenApiRouter::new()
        .routes(routes!(list_services))
        .routes(routes!(get_service))
        .routes(routes!(list_bundles))
        .routes(routes!(bind_holder))
        .routes(routes!(issue_licence))
        .routes(routes!(my_licences))
        .routes(routes!(get_licence))
        .routes(routes!(set_licence_status))
        .routes(routes!(verify_licence))
        .routes(routes!(submit_application))
        .routes(routes!(my_applications))
        .routes(routes!(open_steps))
        .routes(routes!(get_application))
        .routes(routes!(receive_application))
        .routes(routes!(decide_step))
}

fn noted<T: IntoResponse>(note: AuditNote, response: T) -> axum::response::Response {
    (axum::Extension(note), response).into_response()
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ServiceQuery {
    /// Words in the name (Chinese or English).
    pub q: Option<String>,
    /// A department code.
    pub department: Option<String>,
}

/// The service catalogue (事项库), with the 可网办率 in the header `x-online-rate-pct`.
#[utoipa::path(get, path = "/api/v1/services/catalogue", tag = "services", security(()), params(ServiceQuery),
    responses((status = 200, body = [Service]), (status = 400)))]
async fn list_services(
    State(state): State<ServicesState>,
    ApiQuery(query): ApiQuery<ServiceQuery>,
) -> ApiResult<impl IntoResponse> {
    let words = query.q.as_deref().unwrap_or("").trim().to_lowercase();
    if words.chars().count() > 100 {
        return Err(Problem::bad_request("q is at most 100 characters"));
    }
    let found: Vec<Service> = state
        .catalogue
        .services
        .iter()
        .filter(|s| {
            query
                .department
                .as_deref()
                .is_none_or(|d| s.department == d)
        })
        .filter(|s| {
            words.is_empty()
                || s.name_zh.contains(&words)
                || s.name_en.to_lowercase().contains(&words)
        })
        .cloned()
        .collect();
    Ok((
        [(
            "x-online-rate-pct",
            state.catalogue.online_rate_pct().to_string(),
        )],
        axum::Json(found),
    ))
}

/// One service: its guide (everything the applicant needs to know, told once).
#[utoipa::path(get, path = "/api/v1/services/catalogue/{code}", tag = "services", security(()),
    params(("code" = String, Path)), responses((status = 200, body = Service), (status = 404)))]
async fn get_service(
    State(state): State<ServicesState>,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<axum::Json<Service>> {
    state
        .catalogue
        .service(&code)
        .cloned()
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no service {code}")))
}

/// The “一件事” bundles: services that one application covers across departments.
#[utoipa::path(get, path = "/api/v1/services/bundles", tag = "services", security(()),
    responses((status = 200, body = [Bundle])))]
async fn list_bundles(State(state): State<ServicesState>) -> axum::Json<Vec<Bundle>> {
    axum::Json(state.catalogue.bundles.clone())
}

/// Binds a user to the resident identity number or credit code they are (platform admin).
#[utoipa::path(put, path = "/api/v1/services/holders/{username}", tag = "services",
    params(("username" = String, Path)), request_body = HolderBinding,
    responses((status = 200, body = Holder), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn bind_holder(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
    ApiJson(binding): ApiJson<HolderBinding>,
) -> ApiResult<impl IntoResponse> {
    let holder = state.licences.bind(&principal, &username, binding).await?;
    Ok(noted(
        AuditNote::new("holder.bind", format!("user:{username}")),
        axum::Json(holder),
    ))
}

/// Issues an e-licence in the caller's department, sealed with its e-seal.
#[utoipa::path(post, path = "/api/v1/services/licences", tag = "services", request_body = NewLicence,
    responses((status = 201, body = Licence), (status = 403), (status = 422)))]
async fn issue_licence(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiJson(new): ApiJson<NewLicence>,
) -> ApiResult<impl IntoResponse> {
    let licence = state.licences.issue(&principal, new).await?;
    Ok(noted(
        AuditNote::new("licence.issue", format!("licence:{}", licence.document.id)),
        (StatusCode::CREATED, axum::Json(licence)),
    ))
}

/// The signed-in holder's licences (我的证照).
#[utoipa::path(get, path = "/api/v1/services/licences/mine", tag = "services",
    responses((status = 200, body = [Licence]), (status = 403)))]
async fn my_licences(
    State(state): State<ServicesState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<Licence>>> {
    Ok(axum::Json(state.licences.mine(&principal).await?))
}

/// One licence, for its holder or its issuer's staff (each read is audited).
#[utoipa::path(get, path = "/api/v1/services/licences/{id}", tag = "services",
    params(("id" = String, Path)), responses((status = 200, body = Licence), (status = 404)))]
async fn get_licence(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let licence = state.licences.get(&principal, &id).await?;
    Ok(noted(
        AuditNote::new("licence.read", format!("licence:{id}")),
        axum::Json(licence),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// `valid`, `suspended` or `revoked` (a revoked licence stays revoked).
    pub status: String,
    pub reason: String,
}

/// Suspends, revokes or restores a licence (its issuer's staff).
#[utoipa::path(put, path = "/api/v1/services/licences/{id}/status", tag = "services",
    params(("id" = String, Path)), request_body = StatusChange,
    responses((status = 200, body = Licence), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn set_licence_status(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(change): ApiJson<StatusChange>,
) -> ApiResult<impl IntoResponse> {
    let licence = state
        .licences
        .set_status(&principal, &id, &change.status, &change.reason)
        .await?;
    Ok(noted(
        AuditNote::new(
            "licence.status",
            format!("licence:{id} status:{}", change.status),
        ),
        axum::Json(licence),
    ))
}

/// Whether a licence is genuine: public, by its identifier, without the holder's data.
#[utoipa::path(get, path = "/api/v1/services/licences/{id}/verification", tag = "services", security(()),
    params(("id" = String, Path)), responses((status = 200, body = Verification), (status = 404)))]
async fn verify_licence(
    State(state): State<ServicesState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<Verification>> {
    Ok(axum::Json(state.licences.verify(&id).await?))
}

/// Applies for a service as the signed-in holder: materials an e-licence covers are taken from
/// the holder's library (the application is the consent to use them).
#[utoipa::path(post, path = "/api/v1/services/applications", tag = "services", request_body = NewApplication,
    responses((status = 201, body = Application), (status = 403), (status = 404), (status = 422)))]
async fn submit_application(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiJson(new): ApiJson<NewApplication>,
) -> ApiResult<impl IntoResponse> {
    let app = state.applications.submit(&principal, new).await?;
    let used: Vec<&str> = app
        .materials
        .iter()
        .filter_map(|m| m.licence_id.as_deref())
        .collect();
    Ok(noted(
        AuditNote::new(
            "application.submit",
            format!("application:{} licences:{}", app.id, used.join(",")),
        ),
        (StatusCode::CREATED, axum::Json(app)),
    ))
}

/// The signed-in applicant's applications.
#[utoipa::path(get, path = "/api/v1/services/applications/mine", tag = "services",
    responses((status = 200, body = [Application])))]
async fn my_applications(
    State(state): State<ServicesState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<Application>>> {
    Ok(axum::Json(state.applications.mine(&principal).await?))
}

/// Applications with a step open in the caller's department (the approval workbench).
#[utoipa::path(get, path = "/api/v1/services/steps", tag = "services",
    responses((status = 200, body = [Application]), (status = 403)))]
async fn open_steps(
    State(state): State<ServicesState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<Application>>> {
    Ok(axum::Json(state.applications.open_steps(&principal).await?))
}

/// One application, for its applicant or a department acting on it (reads are audited).
#[utoipa::path(get, path = "/api/v1/services/applications/{id}", tag = "services",
    params(("id" = String, Path)), responses((status = 200, body = Application), (status = 404)))]
async fn get_application(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let app = state.applications.get(&principal, &id).await?;
    Ok(noted(
        AuditNote::new("application.read", format!("application:{id}")),
        axum::Json(app),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// true: accepted (受理); false: returned for completion.
    pub accept: bool,
    /// Required when returning: what is missing.
    #[serde(default)]
    pub reason: String,
}

/// The owning department accepts a submitted application or returns it with the reasons.
#[utoipa::path(post, path = "/api/v1/services/applications/{id}/receipt", tag = "services",
    params(("id" = String, Path)), request_body = Receipt,
    responses((status = 200, body = Application), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn receive_application(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(receipt): ApiJson<Receipt>,
) -> ApiResult<impl IntoResponse> {
    let app = state
        .applications
        .receive(&principal, &id, receipt.accept, &receipt.reason)
        .await?;
    Ok(noted(
        AuditNote::new(
            if receipt.accept {
                "application.accept"
            } else {
                "application.return"
            },
            format!("application:{id}"),
        ),
        axum::Json(app),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub approve: bool,
    pub comment: String,
}

/// A department decides its open step of an application.
#[utoipa::path(post, path = "/api/v1/services/applications/{id}/steps/{stage}/{step}", tag = "services",
    params(("id" = String, Path), ("stage" = i64, Path), ("step" = i64, Path)), request_body = Decision,
    responses((status = 200, body = Application), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn decide_step(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath((id, stage, step)): ApiPath<(String, i64, i64)>,
    ApiJson(decision): ApiJson<Decision>,
) -> ApiResult<impl IntoResponse> {
    let app = state
        .applications
        .decide(
            &principal,
            &id,
            stage,
            step,
            decision.approve,
            &decision.comment,
        )
        .await?;
    Ok(noted(
        AuditNote::new(
            if decision.approve {
                "application.approve"
            } else {
                "application.reject"
            },
            format!("application:{id} step:{stage}.{step}"),
        ),
        axum::Json(app),
    ))
}
