//! Bearer tokens: `yn1.<payload>.<signature>`, both base64url. The payload names the session
//! (`jti`), the user and the expiry; the signature is SM2 over `yn1.<payload>` with the platform
//! key, so any node (or anyone holding the published public key) can check it. Revocation and
//! the user's current roles are read from the database on each request, so sign-out, a
//! disabled account or a role change take effect at once.

use crate::users::{self, UserView};
use crate::{Identity, Principal, PrincipalKind};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_gm::Sm2Signature;
use yunnao_store::{DbResultExt, sqlx};

const PREFIX: &str = "yn1.";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    jti: String,
    sub: String,
    iat: i64,
    exp: i64,
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
    let now = yunnao_core::time::now_ms();
    if claims.exp <= now {
        return Err(Problem::unauthorized(
            "the bearer token has expired; sign in again",
        ));
    }
    let session: Option<(Option<i64>, String)> =
        sqlx::query_as("SELECT revoked_at_ms, user_id FROM sessions WHERE jti = $1")
            .bind(&claims.jti)
            .fetch_optional(identity.db.pool())
            .await
            .db()?;
    match session {
        Some((None, user_id)) if user_id == claims.sub => {}
        Some((Some(_), _)) => {
            return Err(Problem::unauthorized(
                "the session was signed out or revoked",
            ));
        }
        _ => return Err(invalid()),
    }
    let row = users::find_by_id(&identity.db, &claims.sub)
        .await?
        .ok_or_else(invalid)?;
    if yunnao_store::flag(row.disabled) {
        return Err(Problem::unauthorized("this account is disabled"));
    }
    Ok(Principal {
        kind: PrincipalKind::User,
        roles: users::roles_of(&identity.db, &row.id).await?,
        id: row.id,
        name: row.username,
        department: row.department_code,
        scopes: Vec::new(),
        session: Some(claims.jti),
    })
}

pub(crate) async fn revoke(identity: &Identity, jti: &str) -> Result<(), Problem> {
    let mut tx = identity.db.begin_write().await?;
    sqlx::query("UPDATE sessions SET revoked_at_ms = $1 WHERE jti = $2 AND revoked_at_ms IS NULL")
        .bind(yunnao_core::time::now_ms())
        .bind(jti)
        .execute(&mut **tx)
        .await
        .db()?;
    tx.commit().await?;
    Ok(())
}
