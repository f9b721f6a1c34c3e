//! HTTP API of the identity crate, under `/api/v1`.

use crate::seals::{self, SealContent, SealPublicKey, SealedDocument};
use crate::{
    ApiClientView, AuditNote, AuditRecord, CreatedApiClient, Department, Identity, NewApiClient,
    NewUser, Principal, Role, SignedIn, UserPatch, UserView, VerifyReport, audit, clients,
    departments, tokens, users,
};
use axum::Extension;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_http::{ApiJson, ApiPath, ApiQuery, ApiResult};

pub fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(me))
        .routes(routes!(token_public_key))
        .routes(routes!(list_departments))
        .routes(routes!(get_department))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(list_api_clients, create_api_client))
        .routes(routes!(revoke_api_client))
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
        .routes(routes!(seal_public_key))
        .routes(routes!(seal_document))
        .routes(routes!(verify_seal))
}

fn noted<T: IntoResponse>(note: AuditNote, body: T) -> impl IntoResponse {
    (Extension(note), body)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    pub username: String,
    pub password: String,
}

/// Sign in with username and password; returns an SM2-signed bearer token.
#[utoipa::path(post, path = "/api/v1/auth/sign-in", security(()), tag = "identity",
    request_body = SignInRequest,
    responses((status = 200, body = SignedIn), (status = 401, description = "wrong username or password")))]
async fn sign_in(
    axum::extract::State(identity): axum::extract::State<Identity>,
    ApiJson(body): ApiJson<SignInRequest>,
) -> impl IntoResponse {
    let note = AuditNote {
        action: Some("auth.sign_in".into()),
        target: Some(format!("user:{}", body.username)),
        actor: Some(body.username.clone()),
        department: None,
        ..AuditNote::default()
    };
    let result = tokens::sign_in(&identity, &body.username, &body.password).await;
    let note = AuditNote {
        department: result.as_ref().ok().map(|s| s.user.department.clone()),
        ..note
    };
    noted(note, result.map(axum::Json))
}

/// End the current session: the token stops working on every node at once.
#[utoipa::path(post, path = "/api/v1/auth/sign-out", tag = "identity",
    responses((status = 204), (status = 401)))]
async fn sign_out(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
) -> ApiResult<impl IntoResponse> {
    let session = principal
        .session
        .clone()
        .ok_or_else(|| Problem::bad_request("API keys have no session; revoke the key instead"))?;
    tokens::revoke(&identity, &session).await?;
    Ok(noted(
        AuditNote::new("auth.sign_out", format!("session:{session}")),
        StatusCode::NO_CONTENT,
    ))
}

/// The caller: user or API client, department, roles and scopes.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "identity",
    responses((status = 200, body = Principal), (status = 401)))]
async fn me(principal: Principal) -> axum::Json<Principal> {
    axum::Json(principal)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenKey {
    pub algorithm: String,
    /// SEC1 uncompressed point, hex.
    pub public_key: String,
    pub sm2_id: String,
}

/// The platform's SM2 public key, which signs bearer tokens and audit checkpoints (public).
#[utoipa::path(get, path = "/api/v1/auth/public-key", security(()), tag = "identity",
    responses((status = 200, body = TokenKey)))]
async fn token_public_key(
    axum::extract::State(identity): axum::extract::State<Identity>,
) -> axum::Json<TokenKey> {
    axum::Json(TokenKey {
        algorithm: "SM2-with-SM3".into(),
        public_key: identity.keys.public_key().to_hex(),
        sm2_id: yunnao_gm::DEFAULT_SM2_ID.into(),
    })
}

/// All departments (委辦局) with their codes and names.
#[utoipa::path(get, path = "/api/v1/departments", tag = "identity",
    responses((status = 200, body = [Department]), (status = 401)))]
async fn list_departments(
    axum::extract::State(identity): axum::extract::State<Identity>,
    _principal: Principal,
) -> ApiResult<axum::Json<Vec<Department>>> {
    Ok(axum::Json(departments::list(&identity.db).await?))
}

#[utoipa::path(get, path = "/api/v1/departments/{code}", tag = "identity",
    params(("code" = String, Path, description = "department code")),
    responses((status = 200, body = Department), (status = 404)))]
async fn get_department(
    axum::extract::State(identity): axum::extract::State<Identity>,
    _principal: Principal,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<axum::Json<Department>> {
    Ok(axum::Json(departments::require(&identity.db, &code).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DepartmentFilter {
    /// Only this department. Department admins see only their own.
    pub department: Option<String>,
}

/// Department scope for list endpoints: platform admins choose freely, department admins get
/// their own department, anyone else is refused.
fn scoped_department(
    principal: &Principal,
    asked: Option<String>,
) -> Result<Option<String>, Problem> {
    if principal.is_platform_admin() {
        return Ok(asked);
    }
    let own = principal.department.clone();
    if let Some(asked) = &asked
        && *asked != own
    {
        principal.require_manage(asked)?;
    }
    principal.require_manage(&own)?;
    Ok(Some(own))
}

/// Users, by department.
#[utoipa::path(get, path = "/api/v1/users", tag = "identity",
    params(DepartmentFilter),
    responses((status = 200, body = [UserView]), (status = 403)))]
async fn list_users(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
    ApiQuery(filter): ApiQuery<DepartmentFilter>,
) -> ApiResult<axum::Json<Vec<UserView>>> {
    let department = scoped_department(&principal, filter.department)?;
    Ok(axum::Json(
        users::list(&identity.db, department.as_deref()).await?,
    ))
}

/// Create a user. Department admins create users in their own department only, and cannot
/// grant platform_admin.
#[utoipa::path(post, path = "/api/v1/users", tag = "identity",
    request_body = NewUser,
    responses((status = 201, body = UserView), (status = 403), (status = 409), (status = 422)))]
async fn create_user(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult<impl IntoResponse> {
    principal.require_manage(&new.department)?;
    if new.roles.contains(&Role::PlatformAdmin) {
        principal.require_platform_admin()?;
    }
    let user = users::insert(&identity, new).await?;
    let event = crate::UserCreated {
        id: user.id.clone(),
        username: user.username.clone(),
        department: user.department.clone(),
        roles: user.roles.clone(),
    };
    if let Err(error) = identity.bus.publish(&event).await {
        tracing::error!(%error, "user.created event not published");
    }
    Ok(noted(
        AuditNote::new("user.create", format!("user:{}", user.id)),
        (StatusCode::CREATED, axum::Json(user)),
    ))
}

async fn visible_user(
    identity: &Identity,
    principal: &Principal,
    id: &str,
) -> Result<users::UserRow, Problem> {
    let row = users::find_by_id(&identity.db, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no user {id:?}")))?;
    if row.id == principal.id || principal.can_manage(&row.department_code) {
        Ok(row)
    } else {
        // Same answer as a missing user: another department's staff list is not ours to probe.
        Err(Problem::not_found(format!("there is no user {id:?}")))
    }
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "identity",
    params(("id" = String, Path)),
    responses((status = 200, body = UserView), (status = 404)))]
async fn get_user(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<UserView>> {
    let row = visible_user(&identity, &principal, &id).await?;
    Ok(axum::Json(users::view(&identity.db, row).await?))
}

/// Change a user. Users may change their own display name and password (which ends their
/// other sessions, not this one); roles and disabling need an admin of the user's department,
/// and no admin takes away their own administration.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "identity",
    params(("id" = String, Path)), request_body = UserPatch,
    responses((status = 200, body = UserView), (status = 403), (status = 404),
        (status = 409, description = "an admin taking away their own administration")))]
async fn update_user(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<impl IntoResponse> {
    let row = visible_user(&identity, &principal, &id).await?;
    if patch.roles.is_some() || patch.disabled.is_some() {
        principal.require_manage(&row.department_code)?;
        if patch
            .roles
            .as_ref()
            .is_some_and(|r| r.contains(&Role::PlatformAdmin))
        {
            principal.require_platform_admin()?;
        }
        // Nobody locks themselves out: taking away one's own administration or disabling
        // oneself is left to another admin, so the platform always keeps one who can act.
        if id == principal.id {
            let keeps_roles = patch.roles.as_ref().is_none_or(|roles| {
                principal.roles.iter().all(|held| {
                    !matches!(held, Role::PlatformAdmin | Role::DeptAdmin) || roles.contains(held)
                })
            });
            if !keeps_roles || patch.disabled == Some(true) {
                return Err(Problem::conflict(
                    "you cannot take away your own administration or disable yourself; \
                     another admin can",
                ));
            }
        }
    }
    let keep_session = (id == principal.id)
        .then(|| principal.session.clone())
        .flatten();
    let user = users::update(&identity, &id, patch, keep_session.as_deref()).await?;
    Ok(noted(
        AuditNote::new("user.update", format!("user:{id}")),
        axum::Json(user),
    ))
}

#[utoipa::path(get, path = "/api/v1/api-clients", tag = "identity",
    params(DepartmentFilter),
    responses((status = 200, body = [ApiClientView]), (status = 403)))]
async fn list_api_clients(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
    ApiQuery(filter): ApiQuery<DepartmentFilter>,
) -> ApiResult<axum::Json<Vec<ApiClientView>>> {
    let department = scoped_department(&principal, filter.department)?;
    Ok(axum::Json(
        clients::list(&identity, department.as_deref()).await?,
    ))
}

/// Register a scenario application; its key is in the response and nowhere else.
#[utoipa::path(post, path = "/api/v1/api-clients", tag = "identity",
    request_body = NewApiClient,
    responses((status = 201, body = CreatedApiClient), (status = 403), (status = 422)))]
async fn create_api_client(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
    ApiJson(new): ApiJson<NewApiClient>,
) -> ApiResult<impl IntoResponse> {
    principal.require_manage(&new.department)?;
    let created = clients::create(&identity, &principal, new).await?;
    Ok(noted(
        AuditNote::new(
            "api_client.create",
            format!("api_client:{}", created.client.id),
        ),
        (StatusCode::CREATED, axum::Json(created)),
    ))
}

#[utoipa::path(delete, path = "/api/v1/api-clients/{id}", tag = "identity",
    params(("id" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn revoke_api_client(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let client = clients::get(&identity, &id)
        .await?
        .filter(|c| principal.can_manage(&c.department))
        .ok_or_else(|| Problem::not_found(format!("there is no API client {id:?}")))?;
    clients::revoke(&identity, &client.id).await?;
    Ok(noted(
        AuditNote::new("api_client.revoke", format!("api_client:{id}")),
        StatusCode::NO_CONTENT,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub department: Option<String>,
    /// Records after this sequence number (for paging).
    #[serde(default)]
    pub after: i64,
    /// At most this many (1–1000, default 100).
    pub limit: Option<i64>,
}

/// The audit log, oldest first. Department admins see their own department's records.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(AuditQuery),
    responses((status = 200, body = [AuditRecord]), (status = 403)))]
async fn list_audit(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<axum::Json<Vec<AuditRecord>>> {
    let department = scoped_department(&principal, query.department)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 1000"));
    }
    Ok(axum::Json(
        audit::list(&identity.db, department.as_deref(), query.after, limit).await?,
    ))
}

/// Walk the audit chain and its signed checkpoints (platform admins).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = VerifyReport), (status = 403)))]
async fn verify_audit(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
) -> ApiResult<axum::Json<VerifyReport>> {
    principal.require_platform_admin()?;
    Ok(axum::Json(
        audit::verify(&identity.db, &identity.keys.public_key()).await?,
    ))
}

/// A department's published seal key (public, for offline verification).
#[utoipa::path(get, path = "/api/v1/seals/{department}", security(()), tag = "seals",
    params(("department" = String, Path)),
    responses((status = 200, body = SealPublicKey), (status = 404)))]
async fn seal_public_key(
    axum::extract::State(identity): axum::extract::State<Identity>,
    ApiPath(department): ApiPath<String>,
) -> ApiResult<axum::Json<SealPublicKey>> {
    Ok(axum::Json(seals::public_key(&identity, &department).await?))
}

/// Seal a document with the department's e-seal. Needs a department admin or operator of that
/// department, or an API client of it with the scope `seals:write`.
#[utoipa::path(post, path = "/api/v1/seals/{department}/seal", tag = "seals",
    params(("department" = String, Path)), request_body = SealContent,
    responses((status = 201, body = SealedDocument), (status = 403)))]
async fn seal_document(
    axum::extract::State(identity): axum::extract::State<Identity>,
    principal: Principal,
    ApiPath(department): ApiPath<String>,
    ApiJson(content): ApiJson<SealContent>,
) -> ApiResult<impl IntoResponse> {
    departments::require(&identity.db, &department).await?;
    if principal.department != department {
        return Err(Problem::forbidden(format!(
            "only staff of {department:?} may use its seal"
        )));
    }
    principal.require_any(&[Role::DeptAdmin, Role::Operator], "seals:write")?;
    let sealed = seals::seal(&identity, &department, content).await?;
    Ok(noted(
        AuditNote::new(
            "seal.apply",
            format!("seal:{}:{}", department, sealed.seal.digest),
        ),
        (StatusCode::CREATED, axum::Json(sealed)),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SealVerification {
    pub valid: bool,
    pub department: String,
    pub key_id: String,
    pub reason: Option<String>,
}

/// Check a sealed document against the department's published key (public).
#[utoipa::path(post, path = "/api/v1/seals/verify", security(()), tag = "seals",
    request_body = SealedDocument,
    responses((status = 200, body = SealVerification),
        (status = 404, description = "the seal names a department or key this platform does not know")))]
async fn verify_seal(
    axum::extract::State(identity): axum::extract::State<Identity>,
    ApiJson(sealed): ApiJson<SealedDocument>,
) -> ApiResult<axum::Json<SealVerification>> {
    // An unknown department is a 404, not an invalid seal.
    let published = seals::public_key(&identity, &sealed.seal.department).await?;
    let outcome = seals::verify_published(&sealed, &published);
    Ok(axum::Json(SealVerification {
        valid: outcome.is_ok(),
        department: sealed.seal.department,
        key_id: sealed.seal.key_id,
        reason: outcome.err().and_then(|p| p.detail),
    }))
}
