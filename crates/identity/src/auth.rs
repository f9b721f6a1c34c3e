//! Who is calling, and the record of what they wrote.
//!
//! [`authenticate_and_audit`] runs on every route: it resolves `Authorization: Bearer …` (a
//! sign-in token or an API key) or `X-Api-Key` into a [`Principal`] placed in the request's
//! extensions, refuses a bad credential with 401 at once, and after the handler has answered
//! appends an audit record for every write (POST, PUT, PATCH, DELETE) — successful, denied or
//! failed alike. Handlers name the action and target with an [`AuditNote`] response extension.
//! Handlers that need a caller take [`Principal`] as an extractor, which answers 401 when the
//! request carried no credential; so a route is public only if its handler does not ask.

use crate::{AuditNote, Identity, Role, clients, tokens};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use yunnao_core::Problem;
use yunnao_http::RequestId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ApiClient,
}

/// The authenticated caller.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub id: String,
    /// Username, or the API client's name.
    pub name: String,
    pub department: String,
    pub roles: Vec<Role>,
    pub scopes: Vec<String>,
    #[serde(skip)]
    pub session: Option<String>,
}

impl Principal {
    /// How far this caller reaches `resource` for `action` ([`crate::access`]): the widest of
    /// a user's roles, or the department for an API client holding exactly that scope.
    pub fn reach(&self, resource: crate::Resource, action: crate::Action) -> crate::Reach {
        match self.kind {
            PrincipalKind::User => self
                .roles
                .iter()
                .map(|role| crate::access::reach(*role, resource, action))
                .max()
                .unwrap_or(crate::Reach::None),
            PrincipalKind::ApiClient => {
                if self.has_scope(&crate::access::scope(resource, action)) {
                    crate::Reach::Own
                } else {
                    crate::Reach::None
                }
            }
        }
    }

    /// May this caller do `action` on `resource` of `department`?
    pub fn may(&self, resource: crate::Resource, action: crate::Action, department: &str) -> bool {
        match self.reach(resource, action) {
            crate::Reach::All => true,
            crate::Reach::Own => self.department == department,
            crate::Reach::None => false,
        }
    }

    /// [`Principal::may`] as a 403 problem that says what is missing.
    pub fn require(
        &self,
        resource: crate::Resource,
        action: crate::Action,
        department: &str,
    ) -> Result<(), Problem> {
        if self.may(resource, action, department) {
            return Ok(());
        }
        let what = crate::access::scope(resource, action);
        Err(Problem::forbidden(match self.reach(resource, action) {
            crate::Reach::None => {
                format!("{} may not {what} (no role or scope grants it)", self.name)
            }
            _ => format!(
                "{} may not {what} for department {department:?} (only for {})",
                self.name, self.department
            ),
        }))
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_platform_admin(&self) -> bool {
        self.has_role(Role::PlatformAdmin)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Platform admins manage every department; department admins only their own.
    pub fn can_manage(&self, department: &str) -> bool {
        self.is_platform_admin()
            || (self.has_role(Role::DeptAdmin) && self.department == department)
    }

    pub fn require_manage(&self, department: &str) -> Result<(), Problem> {
        if self.can_manage(department) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "{} may not manage department {department:?}",
                self.name
            )))
        }
    }

    pub fn require_platform_admin(&self) -> Result<(), Problem> {
        if self.is_platform_admin() {
            Ok(())
        } else {
            Err(Problem::forbidden("this needs the platform_admin role"))
        }
    }

    /// A user with any of `roles`, or an API client with `scope`.
    pub fn require_any(&self, roles: &[Role], scope: &str) -> Result<(), Problem> {
        if roles.iter().any(|r| self.has_role(*r)) || self.has_scope(scope) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this needs one of the roles {} or the scope {scope}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            Problem::unauthorized(
                "sign in first: send Authorization: Bearer <token> (POST /api/v1/auth/sign-in) or an API key",
            )
        })
    }
}

fn credential(parts: &axum::http::HeaderMap) -> Option<String> {
    if let Some(value) = parts
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    parts
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

pub(crate) async fn resolve(identity: &Identity, credential: &str) -> Result<Principal, Problem> {
    if clients::looks_like_key(credential) {
        clients::resolve(identity, credential).await
    } else {
        tokens::resolve(identity, credential).await
    }
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn outcome(status: u16) -> &'static str {
    match status {
        200..=399 => "success",
        401 | 403 => "denied",
        400..=499 => "rejected",
        _ => "error",
    }
}

pub async fn authenticate_and_audit(
    State(identity): State<Identity>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let request_id = RequestId::from_headers(request.headers());
    let (principal, response) = match credential(request.headers()) {
        None => {
            let response = next.run(request).await;
            (None, response)
        }
        Some(credential) => match resolve(&identity, &credential).await {
            Ok(principal) => {
                request.extensions_mut().insert(principal.clone());
                let response = next.run(request).await;
                (Some(principal), response)
            }
            Err(problem) => (None, problem.into_response()),
        },
    };
    // Unknown routes are not writes to anything; there is nothing to audit.
    if !is_write(&method) || route.is_none() {
        return response;
    }
    let note = response
        .extensions()
        .get::<AuditNote>()
        .cloned()
        .unwrap_or_default();
    if note.skip || note.recorded {
        return response;
    }
    let entry = note.entry(
        principal.as_ref(),
        || format!("{method} {}", route.as_deref().unwrap_or(&path)),
        || path.clone(),
        request_id.0,
        outcome(response.status().as_u16()),
    );
    if let Err(problem) = identity.audit(entry).await {
        // The write itself has happened; losing its audit record is an operational alarm.
        tracing::error!(%problem, "audit append failed");
    }
    response
}
