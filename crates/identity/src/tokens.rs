//! Bearer tokens: `yn1.<payload>.<signature>`, both base64url. The payload names the session
//! (`jti`), the user and the expiry; the signature is SM2 over `yn1.<payload>` with the platform
//! key, so any node (or anyone holding the published public key) can check it. Revocation and
//! the user's current roles are read from the database on each request, so sign-out, a
//! disabled account or a role change take effect at once.

use crate::Role;
use crate::users::{self, UserView};
use crate::{Identity, Principal, PrincipalKind};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_gm::Sm2Signature;
use yunnao_store::{Arg, DbResultExt, sqlx};

const PREFIX: &str = "yn1.";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    jti: String,
    sub: String,
    iat: i64,
    exp: i64,
}

/// Tokens whose SM2 signature this node has already verified, with their claims. A signature
/// check gives the same answer every time, so repeating it per request (a third of a request's
/// CPU) buys nothing; the session and the account are still read on every request, so sign-out
/// and disabling keep acting at once. Bounded: emptied when full.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: std::sync::Mutex<std::collections::HashMap<String, Claims>>,
}

const VERIFIED_TOKENS_MAX: usize = 100_000;

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedTokens")
    }
}

impl VerifiedTokens {
    fn get(&self, token: &str) -> Option<Claims> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    fn insert(&self, token: &str, claims: &Claims) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= VERIFIED_TOKENS_MAX {
            entries.clear();
        }
        entries.insert(token.to_owned(), claims.clone());
    }
}

/// Sessions recently checked, so that a client's burst of requests reads its session once a
/// second instead of once a request. A change that can end or alter a session on this node
/// (sign-out, a user's password, roles or disabling) bumps the generation, which drops every
/// entry at once; other nodes (PostgreSQL deployments) see such a change within the
/// [`SESSION_RECHECK`] interval.
#[derive(Default)]
pub struct CheckedSessions {
    entries: std::sync::Mutex<std::collections::HashMap<String, CheckedSession>>,
    generation: std::sync::atomic::AtomicU64,
}

struct CheckedSession {
    principal: Principal,
    checked: std::time::Instant,
    generation: u64,
}

/// How long a checked session is trusted without reading it again.
pub const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);
const CHECKED_SESSIONS_MAX: usize = 10_000;

impl std::fmt::Debug for CheckedSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckedSessions")
    }
}

impl CheckedSessions {
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn get(&self, jti: &str) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(jti)?;
        (entry.generation == self.generation() && entry.checked.elapsed() < SESSION_RECHECK)
            .then(|| entry.principal.clone())
    }

    /// Keeps what was read, unless a change happened since the read began (`generation`).
    fn put(&self, jti: &str, principal: &Principal, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if generation != self.generation() {
            return;
        }
        if entries.len() >= CHECKED_SESSIONS_MAX {
            entries.clear();
        }
        entries.insert(
            jti.to_owned(),
            CheckedSession {
                principal: principal.clone(),
                checked: std::time::Instant::now(),
                generation,
            },
        );
    }

    /// Something that can end or change sessions was committed: check every session afresh.
    pub(crate) fn changed(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        entries.clear();
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignedIn {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
    pub user: UserView,
}

pub(crate) async fn sign_in(
    identity: &Identity,
    username: &str,
    password: &str,
) -> Result<SignedIn, Problem> {
    let row = users::find_by_username(&identity.db, username).await?;
    let stored = row.as_ref().map(|r| r.password_hash.clone());
    let password_ok = users::verify_password(password.to_owned(), stored).await;
    let refused = || Problem::unauthorized("wrong username or password");
    let row = match row {
        Some(row) if password_ok => row,
        _ => return Err(refused()),
    };
    if yunnao_store::flag(row.disabled) {
        return Err(Problem::unauthorized("this account is disabled"));
    }
    let now = yunnao_core::time::now_ms();
    let claims = Claims {
        jti: yunnao_core::new_id(),
        sub: row.id.clone(),
        iat: now,
        exp: now + identity.config.token_ttl_secs * 1000,
    };
    let mut tx = identity.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO sessions (jti, user_id, issued_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(&claims.jti)
    .bind(&claims.sub)
    .bind(claims.iat)
    .bind(claims.exp)
    .execute(&mut **tx)
    .await
    .db()?;
    tx.commit().await?;
    let token = encode(identity, &claims)?;
    Ok(SignedIn {
        access_token: token,
        token_type: "Bearer".to_owned(),
        expires_at: yunnao_core::time::rfc3339_ms(claims.exp),
        user: users::view(&identity.db, row).await?,
    })
}

fn encode(identity: &Identity, claims: &Claims) -> Result<String, Problem> {
    let payload = serde_json::to_vec(claims).map_err(|e| Problem::internal(e.to_string()))?;
    let signed_part = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = identity.keys.signer().sign(signed_part.as_bytes());
    Ok(format!(
        "{signed_part}.{}",
        URL_SAFE_NO_PAD.encode(signature.0)
    ))
}

/// Checks signature and expiry, then the session and user in the database.
pub(crate) async fn resolve(identity: &Identity, token: &str) -> Result<Principal, Problem> {
    let invalid = || Problem::unauthorized("the bearer token is not valid");
    let claims = match identity.verified_tokens.get(token) {
        Some(claims) => claims,
        None => {
            let (signed_part, signature) = token.rsplit_once('.').ok_or_else(invalid)?;
            let payload = signed_part.strip_prefix(PREFIX).ok_or_else(invalid)?;
            let signature = URL_SAFE_NO_PAD
                .decode(signature)
                .ok()
                .and_then(|bytes| Sm2Signature::from_slice(&bytes).ok())
                .ok_or_else(invalid)?;
            identity
                .keys
                .public_key()
                .verify(signed_part.as_bytes(), &signature)
                .map_err(|_| invalid())?;
            let claims: Claims = URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .ok_or_else(invalid)?;
            identity.verified_tokens.insert(token, &claims);
            claims
        }
    };
    let now = yunnao_core::time::now_ms();
    if claims.exp <= now {
        return Err(Problem::unauthorized(
            "the bearer token has expired; sign in again",
        ));
    }
    if let Some(principal) = identity.checked_sessions.get(&claims.jti) {
        return Ok(principal);
    }
    let generation = identity.checked_sessions.generation();
    // Session, account and roles in one query: this runs on every authenticated request.
    let roles = identity.db.dialect().comma_list("role");
    let sql = format!(
        "SELECT s.revoked_at_ms, s.user_id, u.username, u.department_code, u.disabled, \
         (SELECT {roles} FROM user_roles r WHERE r.user_id = u.id) \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.jti = $1"
    );
    let row: Option<SessionRow> = identity
        .db
        .fetch_optional(&sql, &[Arg::text(&claims.jti)])
        .await?;
    let Some((revoked, user_id, username, department, disabled, roles)) = row else {
        return Err(invalid());
    };
    if revoked.is_some() {
        return Err(Problem::unauthorized(
            "the session was signed out or revoked",
        ));
    }
    if user_id != claims.sub {
        return Err(invalid());
    }
    if yunnao_store::flag(disabled) {
        return Err(Problem::unauthorized("this account is disabled"));
    }
    let mut roles: Vec<Role> = roles
        .unwrap_or_default()
        .split(',')
        .filter_map(Role::parse)
        .collect();
    roles.sort_by_key(|r| r.as_str());
    let principal = Principal {
        kind: PrincipalKind::User,
        roles,
        id: user_id,
        name: username,
        department,
        scopes: Vec::new(),
        session: Some(claims.jti.clone()),
    };
    identity
        .checked_sessions
        .put(&claims.jti, &principal, generation);
    Ok(principal)
}

/// (revoked at, user id, username, department, disabled, roles joined by ',')
type SessionRow = (Option<i64>, String, String, String, i64, Option<String>);

pub(crate) async fn revoke(identity: &Identity, jti: &str) -> Result<(), Problem> {
    let mut tx = identity.db.begin_write().await?;
    sqlx::query("UPDATE sessions SET revoked_at_ms = $1 WHERE jti = $2 AND revoked_at_ms IS NULL")
        .bind(yunnao_core::time::now_ms())
        .bind(jti)
        .execute(&mut **tx)
        .await
        .db()?;
    tx.commit().await?;
    identity.checked_sessions.changed();
    Ok(())
}
