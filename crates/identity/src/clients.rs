//! API clients: the scenario applications connected to the cloud brain (接入城市雲腦的場景應用).
//! Each belongs to a department and holds scopes; its key `ynk_<id>.<secret>` is shown once and
//! stored only as SM3 of the secret (the secret is 32 random bytes, so a fast hash suffices).

use crate::{Identity, Principal, PrincipalKind, departments};
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_store::{DbResultExt, sqlx};

const PREFIX: &str = "ynk_";

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiClient {
    pub name: String,
    pub department: String,
    /// e.g. `metrics:read`, `seals:write`; each `area:action` in lower case.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
pub struct ApiClientView {
    pub id: String,
    pub name: String,
    pub department: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: String,
    pub revoked: bool,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedApiClient {
    pub client: ApiClientView,
    /// Shown only now; send it as `X-Api-Key` or `Authorization: Bearer`.
    pub api_key: String,
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    name: String,
    department_code: String,
    key_hash: String,
    scopes: String,
    created_by: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
}

impl ClientRow {
    fn view(self) -> ApiClientView {
        ApiClientView {
            id: self.id,
            name: self.name,
            department: self.department_code,
            scopes: self.scopes.split_whitespace().map(str::to_owned).collect(),
            created_by: self.created_by,
            created_at: yunnao_core::time::rfc3339_ms(self.created_at_ms),
            revoked: self.revoked_at_ms.is_some(),
        }
    }
}

const COLUMNS: &str =
    "id, name, department_code, key_hash, scopes, created_by, created_at_ms, revoked_at_ms";

fn validate_scope(scope: &str) -> Result<(), Problem> {
    let valid = scope.split_once(':').is_some_and(|(area, action)| {
        let part = |s: &str| {
            !s.is_empty()
                && s.len() <= 40
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        };
        part(area) && part(action)
    });
    if valid {
        Ok(())
    } else {
        Err(
            Problem::validation(format!("scope {scope:?} is not of the form area:action"))
                .with_extension("field", "scopes"),
        )
    }
}

pub(crate) async fn create(
    identity: &Identity,
    creator: &Principal,
    new: NewApiClient,
) -> Result<CreatedApiClient, Problem> {
    if new.name.trim().is_empty() || new.name.chars().count() > 100 {
        return Err(Problem::validation("name must be 1 to 100 characters"));
    }
    for scope in &new.scopes {
        validate_scope(scope)?;
    }
    departments::require(&identity.db, &new.department).await?;
    let id = yunnao_core::new_id().replace('-', "");
    let secret: [u8; 32] =
        yunnao_gm::random_bytes().map_err(|e| Problem::internal(e.to_string()))?;
    let secret_hex = hex::encode(secret);
    let now = yunnao_core::time::now_ms();
    let mut scopes = new.scopes.clone();
    scopes.sort();
    scopes.dedup();
    let mut tx = identity.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO api_clients (id, name, department_code, key_hash, scopes, created_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&new.name)
    .bind(&new.department)
    .bind(hex::encode(yunnao_gm::sm3(secret_hex.as_bytes())))
    .bind(scopes.join(" "))
    .bind(&creator.name)
    .bind(now)
    .execute(&mut **tx)
    .await
    .db()?;
    tx.commit().await?;
    Ok(CreatedApiClient {
        client: ApiClientView {
            id: id.clone(),
            name: new.name,
            department: new.department,
            scopes,
            created_by: creator.name.clone(),
            created_at: yunnao_core::time::rfc3339_ms(now),
            revoked: false,
        },
        api_key: format!("{PREFIX}{id}.{secret_hex}"),
    })
}

pub(crate) fn looks_like_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

pub(crate) async fn resolve(identity: &Identity, key: &str) -> Result<Principal, Problem> {
    let invalid = || Problem::unauthorized("the API key is not valid");
    let (id, secret) = key
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('.'))
        .ok_or_else(invalid)?;
    let row = get_row(identity, id).await?.ok_or_else(invalid)?;
    let presented = hex::encode(yunnao_gm::sm3(secret.as_bytes()));
    if !constant_time_eq(presented.as_bytes(), row.key_hash.as_bytes()) {
        return Err(invalid());
    }
    if row.revoked_at_ms.is_some() {
        return Err(Problem::unauthorized("the API key was revoked"));
    }
    let view = row.view();
    Ok(Principal {
        kind: PrincipalKind::ApiClient,
        id: view.id,
        name: view.name,
        department: view.department,
        roles: Vec::new(),
        scopes: view.scopes,
        session: None,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn get_row(identity: &Identity, id: &str) -> Result<Option<ClientRow>, Problem> {
    sqlx::query_as::<_, ClientRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_clients WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(identity.db.pool())
    .await
    .db()
}

pub(crate) async fn get(identity: &Identity, id: &str) -> Result<Option<ApiClientView>, Problem> {
    Ok(get_row(identity, id).await?.map(ClientRow::view))
}

pub(crate) async fn list(
    identity: &Identity,
    department: Option<&str>,
) -> Result<Vec<ApiClientView>, Problem> {
    let rows = match department {
        Some(code) => sqlx::query_as::<_, ClientRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_clients WHERE department_code = $1 ORDER BY created_at_ms"
        )))
        .bind(code)
        .fetch_all(identity.db.pool())
        .await
        .db()?,
        None => sqlx::query_as::<_, ClientRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_clients ORDER BY created_at_ms"
        )))
        .fetch_all(identity.db.pool())
        .await
        .db()?,
    };
    Ok(rows.into_iter().map(ClientRow::view).collect())
}

pub(crate) async fn revoke(identity: &Identity, id: &str) -> Result<(), Problem> {
    let mut tx = identity.db.begin_write().await?;
    sqlx::query(
        "UPDATE api_clients SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(yunnao_core::time::now_ms())
    .bind(id)
    .execute(&mut **tx)
    .await
    .db()?;
    tx.commit().await?;
    Ok(())
}
