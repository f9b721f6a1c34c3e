//! `/api/v1/services`: the catalogue (public: what a service needs is told to anyone, 一次告知),
//! holder bindings, e-licences (issue, read, mine, status) and their public verification.

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
