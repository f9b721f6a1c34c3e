//! `/api/v1/services`: the catalogue (public: what a service needs is told to anyone, 一次告知),
//! holder bindings, e-licences (issue, read, mine, status) and their public verification.

use crate::applications::{Application, Applications, Completion, NewApplication, SharedCalendar};
use crate::catalogue::{ApplicationPlan, Bundle, Service};
use crate::figures::ServiceFigures;
use crate::grants::{Appeal, Grant, Grants, PolicyStanding, RunReport};
use crate::licences::{
    Holder, HolderBinding, Licence, LicenceUse, Licences, NewLicence, Verification,
};
use crate::messages::{Message, Messages};
use crate::policies::Policy;
use crate::uploads::Upload;
use crate::versions::CatalogueStore;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_http::{ApiJson, ApiPath, ApiQuery};
use yunnao_identity::{Action, AuditNote, Principal, Resource};

type ApiResult<T> = Result<T, Problem>;

#[derive(Clone)]
pub struct ServicesState {
    pub db: yunnao_store::Db,
    pub store: CatalogueStore,
    pub licences: Licences,
    pub applications: Applications,
    pub grants: Grants,
    pub messages: Messages,
    pub calendar: SharedCalendar,
    governance: yunnao_governance::Governance,
}

impl ServicesState {
    /// The hub on `db`, with the governance hub's working calendar.
    pub async fn start(
        db: yunnao_store::Db,
        identity: yunnao_identity::Identity,
        governance: yunnao_governance::Governance,
        scan_every: std::time::Duration,
    ) -> Result<ServicesState, Problem> {
        let store = CatalogueStore::load(db.clone()).await?;
        let licences = Licences::new(db.clone(), identity.clone());
        let messages = Messages::default();
        let calendar: SharedCalendar = Arc::new(RwLock::new(governance.calendar().await?));
        let grants = Grants::new(db.clone(), identity, licences.clone(), messages.clone())
            .map_err(Problem::internal)?;
        let state = ServicesState {
            applications: Applications::new(
                db.clone(),
                store.shared(),
                licences.clone(),
                calendar.clone(),
                messages.clone(),
            ),
            db,
            store,
            licences,
            grants,
            messages,
            calendar,
            governance,
        };
        state.spawn_deadline_watch(scan_every);
        // The enterprise data is made in the background, so the first policy run does not wait.
        let grants = state.grants.clone();
        tokio::task::spawn_blocking(move || grants.enterprises().len());
        Ok(state)
    }

    /// Every `every`: the calendar re-read (holidays change), then steps and applications
    /// past 80% warned and past their limit escalated.
    fn spawn_deadline_watch(&self, every: std::time::Duration) {
        let state = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                match state.governance.calendar().await {
                    Ok(calendar) => {
                        if let Ok(mut shared) = state.calendar.write() {
                            *shared = calendar;
                        }
                    }
                    Err(problem) => tracing::warn!(%problem, "reading the working calendar failed"),
                }
                if let Err(problem) = state
                    .applications
                    .scan_deadlines(yunnao_core::time::now_ms())
                    .await
                {
                    tracing::error!(%problem, "services deadline scan failed");
                }
            }
        });
    }

    /// The bureau's figures.
    pub async fn figures(&self) -> Result<ServiceFigures, Problem> {
        let names = self
            .grants
            .policies()
            .iter()
            .map(|p| (p.code.clone(), p.name_zh.clone()))
            .collect();
        crate::figures::figures(
            &self.db,
            &self.store.current(),
            &self.calendar,
            self.grants.ledger().await?,
            &names,
        )
        .await
    }
}

pub fn router() -> OpenApiRouter<ServicesState> {
    let uploads = OpenApiRouter::new().routes(routes!(upload_material)).layer(
        axum::extract::DefaultBodyLimit::max(crate::uploads::MAX_UPLOAD_BYTES),
    );
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(list_services))
        .routes(routes!(get_service, publish_service))
        .routes(routes!(service_versions))
        .routes(routes!(list_bundles))
        .routes(routes!(get_plan))
        .routes(routes!(bind_holder))
        .routes(routes!(issue_licence))
        .routes(routes!(my_licences))
        .routes(routes!(get_licence))
        .routes(routes!(licence_uses))
        .routes(routes!(set_licence_status))
        .routes(routes!(verify_licence))
        .routes(routes!(get_upload))
        .routes(routes!(submit_application))
        .routes(routes!(my_applications))
        .routes(routes!(open_steps))
        .routes(routes!(get_application, resubmit_application))
        .routes(routes!(receive_application))
        .routes(routes!(decide_step))
        .routes(routes!(my_messages))
        .routes(routes!(read_message))
        .routes(routes!(list_policies))
        .routes(routes!(run_policy))
        .routes(routes!(my_policies))
        .routes(routes!(confirm_grant))
        .routes(routes!(appeal_policy))
        .routes(routes!(list_appeals))
        .routes(routes!(decide_appeal))
        .routes(routes!(service_figures))
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
    let catalogue = state.store.current();
    let found: Vec<Service> = catalogue
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
        [("x-online-rate-pct", catalogue.online_rate_pct().to_string())],
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
        .store
        .current()
        .service(&code)
        .cloned()
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no service {code}")))
}

/// The “一件事” bundles: services that one application covers across departments.
#[utoipa::path(get, path = "/api/v1/services/bundles", tag = "services", security(()),
    responses((status = 200, body = [Bundle])))]
async fn list_bundles(State(state): State<ServicesState>) -> axum::Json<Vec<Bundle>> {
    axum::Json(state.store.current().bundles.clone())
}

/// What an application for a service or a “一件事” bundle is made on: its materials (a
/// bundle's once each), its form, its approval stages, the licences it issues.
#[utoipa::path(get, path = "/api/v1/services/plans/{code}", tag = "services", security(()),
    params(("code" = String, Path)), responses((status = 200, body = ApplicationPlan), (status = 404)))]
async fn get_plan(
    State(state): State<ServicesState>,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<axum::Json<ApplicationPlan>> {
    state
        .store
        .current()
        .plan(&code)
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no service or bundle {code}")))
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

/// Applies for a service or a bundle as the signed-in holder (or, at the window, for one):
/// materials an e-licence covers are taken from the library with the holder's consent, the
/// rest are uploads; the form is checked against the service's schema.
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
    /// `accept` (受理), `return` (for completion, once; the clock stops) or `decline` (不予受理).
    pub action: String,
    /// Required when returning or declining: what is missing, or why.
    #[serde(default)]
    pub reason: String,
}

/// The receiving department accepts a submitted application, returns it with the reasons, or
/// declines it.
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
        .receive(&principal, &id, &receipt.action, &receipt.reason)
        .await?;
    Ok(noted(
        AuditNote::new(
            match receipt.action.as_str() {
                "accept" => "application.accept",
                "return" => "application.return",
                _ => "application.decline",
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

/// Publishes a service's next version (its department's admins or the approval bureau's);
/// applications already made keep the version they were made on.
#[utoipa::path(put, path = "/api/v1/services/catalogue/{code}", tag = "services",
    params(("code" = String, Path)), request_body = Service,
    responses((status = 200, body = Service), (status = 400), (status = 403), (status = 409), (status = 422)))]
async fn publish_service(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(code): ApiPath<String>,
    ApiJson(service): ApiJson<Service>,
) -> ApiResult<impl IntoResponse> {
    if service.code != code {
        return Err(Problem::validation("code: the body's code is the path's")
            .with_extension("field", "code"));
    }
    let service = state.store.publish(&principal, service).await?;
    Ok(noted(
        AuditNote::new(
            "service.publish",
            format!("service:{code} version:{}", service.version),
        ),
        axum::Json(service),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceVersion {
    pub version: i64,
    pub changed_by: String,
    pub changed_at: String,
}

/// A service's published versions after the seed's (version 1).
#[utoipa::path(get, path = "/api/v1/services/catalogue/{code}/versions", tag = "services", security(()),
    params(("code" = String, Path)), responses((status = 200, body = [ServiceVersion]), (status = 404)))]
async fn service_versions(
    State(state): State<ServicesState>,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<axum::Json<Vec<ServiceVersion>>> {
    if state.store.current().service(&code).is_none() {
        return Err(Problem::not_found(format!("no service {code}")));
    }
    Ok(axum::Json(
        state
            .store
            .history(&code)
            .await?
            .into_iter()
            .map(|(version, changed_by, changed_at)| ServiceVersion {
                version,
                changed_by,
                changed_at,
            })
            .collect(),
    ))
}

/// Every use of one of the caller's licences (which application, which department).
#[utoipa::path(get, path = "/api/v1/services/licences/{id}/uses", tag = "services",
    params(("id" = String, Path)), responses((status = 200, body = [LicenceUse]), (status = 404)))]
async fn licence_uses(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<Vec<LicenceUse>>> {
    Ok(axum::Json(state.licences.uses(&principal, &id).await?))
}

/// Uploads a material no licence covers: the body is the file (PDF, JPEG or PNG, at most
/// 4 MiB), its type by `Content-Type` and checked against its first bytes.
#[utoipa::path(post, path = "/api/v1/services/uploads", tag = "services",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Upload), (status = 413), (status = 415), (status = 422)))]
async fn upload_material(
    State(state): State<ServicesState>,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let upload = crate::uploads::store(&state.db, &principal, declared, body.to_vec()).await?;
    Ok(noted(
        AuditNote::new(
            "upload.store",
            format!("upload:{} sm3:{}", upload.id, upload.sm3),
        ),
        (StatusCode::CREATED, axum::Json(upload)),
    ))
}

/// An uploaded material's bytes: for its uploader, or staff of a department acting on the
/// application that took it.
#[utoipa::path(get, path = "/api/v1/services/uploads/{id}", tag = "services",
    params(("id" = String, Path)), responses((status = 200, content_type = "application/octet-stream"), (status = 404)))]
async fn get_upload(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let missing = || Problem::not_found(format!("no upload {id} of yours"));
    let (upload, by) = crate::uploads::find(&state.db, &id)
        .await?
        .ok_or_else(missing)?;
    let allowed = by == principal.id
        || match &upload.application_id {
            Some(app) => state.applications.get(&principal, app).await.is_ok(),
            None => false,
        };
    if !allowed {
        return Err(missing());
    }
    let (media_type, bytes) = crate::uploads::bytes(&state.db, &id)
        .await?
        .ok_or_else(missing)?;
    Ok(noted(
        AuditNote::new("upload.read", format!("upload:{id}")),
        ([(header::CONTENT_TYPE, media_type)], bytes),
    ))
}

/// The applicant completes an application returned to them; its clock resumes.
#[utoipa::path(put, path = "/api/v1/services/applications/{id}", tag = "services",
    params(("id" = String, Path)), request_body = Completion,
    responses((status = 200, body = Application), (status = 404), (status = 409), (status = 422)))]
async fn resubmit_application(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(completion): ApiJson<Completion>,
) -> ApiResult<impl IntoResponse> {
    let app = state
        .applications
        .resubmit(&principal, &id, completion)
        .await?;
    Ok(noted(
        AuditNote::new("application.resubmit", format!("application:{id}")),
        axum::Json(app),
    ))
}

/// The caller's messages (消息中心), and their department's for staff.
#[utoipa::path(get, path = "/api/v1/services/messages", tag = "services",
    responses((status = 200, body = [Message])))]
async fn my_messages(
    State(state): State<ServicesState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<Message>>> {
    Ok(axum::Json(Messages::mine(&state.db, &principal).await?))
}

/// Marks one of the caller's messages read.
#[utoipa::path(post, path = "/api/v1/services/messages/{id}/read", tag = "services",
    params(("id" = String, Path)), responses((status = 204), (status = 404)))]
async fn read_message(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    Messages::mark_read(&state.db, &principal, &id).await?;
    Ok(noted(
        AuditNote::new("message.read", format!("message:{id}")),
        StatusCode::NO_CONTENT,
    ))
}

/// The policies (惠企政策) with their rules, amounts and budgets: public.
#[utoipa::path(get, path = "/api/v1/services/policies", tag = "services", security(()),
    responses((status = 200, body = [Policy])))]
async fn list_policies(State(state): State<ServicesState>) -> axum::Json<Vec<Policy>> {
    axum::Json(state.grants.policies().to_vec())
}

/// Runs a policy over every enterprise (its paying department): grants or invitations into
/// the ledger within the budget, each decision explained.
#[utoipa::path(post, path = "/api/v1/services/policies/{code}/runs", tag = "services",
    params(("code" = String, Path)), responses((status = 200, body = RunReport), (status = 403), (status = 404)))]
async fn run_policy(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let report = state.grants.run(&principal, &code).await?;
    Ok(noted(
        AuditNote::new(
            "policy.run",
            format!(
                "policy:{code} granted:{} invited:{} spent:{}",
                report.granted, report.invited, report.spent_yuan
            ),
        ),
        axum::Json(report),
    ))
}

/// Every policy as the signed-in enterprise meets it: the decision and why, what it received.
#[utoipa::path(get, path = "/api/v1/services/policies/mine", tag = "services",
    responses((status = 200, body = [PolicyStanding]), (status = 403)))]
async fn my_policies(
    State(state): State<ServicesState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<PolicyStanding>>> {
    Ok(axum::Json(state.grants.mine(&principal).await?))
}

/// The enterprise confirms an invitation (即申即享) and is paid.
#[utoipa::path(post, path = "/api/v1/services/policies/{code}/confirmation", tag = "services",
    params(("code" = String, Path)), responses((status = 200, body = Grant), (status = 403), (status = 404), (status = 409)))]
async fn confirm_grant(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let grant = state.grants.confirm(&principal, &code).await?;
    Ok(noted(
        AuditNote::new(
            "policy.confirm",
            format!("policy:{code} enterprise:{}", grant.credit_code),
        ),
        axum::Json(grant),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppealBody {
    pub reason: String,
}

/// The enterprise appeals a policy it was not granted.
#[utoipa::path(post, path = "/api/v1/services/policies/{code}/appeals", tag = "services",
    params(("code" = String, Path)), request_body = AppealBody,
    responses((status = 201, body = Appeal), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn appeal_policy(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(code): ApiPath<String>,
    ApiJson(body): ApiJson<AppealBody>,
) -> ApiResult<impl IntoResponse> {
    let appeal = state.grants.appeal(&principal, &code, &body.reason).await?;
    Ok(noted(
        AuditNote::new("policy.appeal", format!("appeal:{}", appeal.id)),
        (StatusCode::CREATED, axum::Json(appeal)),
    ))
}

/// Open appeals of the policies the caller's department pays.
#[utoipa::path(get, path = "/api/v1/services/appeals", tag = "services",
    responses((status = 200, body = [Appeal]), (status = 403)))]
async fn list_appeals(
    State(state): State<ServicesState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<Appeal>>> {
    Ok(axum::Json(state.grants.open_appeals(&principal).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppealDecision {
    /// true: grant on review; false: the refusal stands.
    pub grant: bool,
    pub answer: String,
}

/// The paying department answers an appeal.
#[utoipa::path(post, path = "/api/v1/services/appeals/{id}/decision", tag = "services",
    params(("id" = String, Path)), request_body = AppealDecision,
    responses((status = 200, body = Appeal), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn decide_appeal(
    State(state): State<ServicesState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AppealDecision>,
) -> ApiResult<impl IntoResponse> {
    let appeal = state
        .grants
        .decide_appeal(&principal, &id, body.grant, &body.answer)
        .await?;
    Ok(noted(
        AuditNote::new(
            "policy.appeal.decide",
            format!("appeal:{id} state:{}", appeal.state),
        ),
        axum::Json(appeal),
    ))
}

/// The approval bureau's figures (staff of any department).
#[utoipa::path(get, path = "/api/v1/services/figures", tag = "services",
    responses((status = 200, body = ServiceFigures), (status = 403)))]
async fn service_figures(
    State(state): State<ServicesState>,
    principal: Principal,
) -> ApiResult<axum::Json<ServiceFigures>> {
    principal.require(Resource::Applications, Action::Read, &principal.department)?;
    Ok(axum::Json(state.figures().await?))
}
