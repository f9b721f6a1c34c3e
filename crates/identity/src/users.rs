use crate::{Identity, Role, departments};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_store::{Db, DbResultExt, sqlx};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 3–64 characters: lower-case ASCII letters, digits, `.`, `_`, `-`.
    pub username: String,
    pub display_name: String,
    /// At least 8 characters.
    pub password: String,
    /// Department code; a department admin may only use their own.
    pub department: String,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub password: Option<String>,
    pub roles: Option<Vec<Role>>,
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub department: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub department_code: String,
    pub password_hash: String,
    pub disabled: i64,
    pub created_at_ms: i64,
}

const USER_COLUMNS: &str =
    "id, username, display_name, department_code, password_hash, disabled, created_at_ms";

pub(crate) fn validate_username(username: &str) -> Result<(), Problem> {
    let ok = (3..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(
            Problem::validation("username must be 3–64 characters of a–z, 0–9, '.', '_' or '-'")
                .with_extension("field", "username"),
        )
    }
}

pub(crate) fn validate_password(password: &str) -> Result<(), Problem> {
    if password.chars().count() < 8 || password.len() > 256 {
        return Err(
            Problem::validation("password must be 8 to 256 characters long")
                .with_extension("field", "password"),
        );
    }
    Ok(())
}

fn validate_display_name(name: &str) -> Result<(), Problem> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(
            Problem::validation("display_name must be 1 to 100 characters")
                .with_extension("field", "display_name"),
        );
    }
    Ok(())
}

/// argon2id with the crate's defaults (19 MiB, 2 passes), off the async threads.
pub(crate) async fn hash_password(password: String) -> Result<String, Problem> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Problem::internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| Problem::internal(format!("password hashing task failed: {e}")))?
}

/// Verifies a password; with no stored hash it still does the work, so response time does not
/// tell whether a username exists.
pub(crate) async fn verify_password(password: String, stored: Option<String>) -> bool {
    // A real hash of a throwaway password, made once, so unknown usernames cost the same.
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let hash_text = stored.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    Argon2::default()
                        .hash_password(b"yunnao-timing-equaliser")
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                })
                .clone()
        });
        let Ok(hash) = PasswordHash::new(&hash_text) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

pub(crate) async fn roles_of(db: &Db, user_id: &str) -> Result<Vec<Role>, Problem> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
            .bind(user_id)
            .fetch_all(db.pool())
            .await
            .db()?;
    Ok(names.iter().filter_map(|n| Role::parse(n)).collect())
}

pub(crate) async fn view(db: &Db, row: UserRow) -> Result<UserView, Problem> {
    let roles = roles_of(db, &row.id).await?;
    Ok(UserView {
        id: row.id,
        username: row.username,
        display_name: row.display_name,
        department: row.department_code,
        roles,
        disabled: yunnao_store::flag(row.disabled),
        created_at: yunnao_core::time::rfc3339_ms(row.created_at_ms),
    })
}

pub(crate) async fn find_by_username(db: &Db, username: &str) -> Result<Option<UserRow>, Problem> {
    sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
    )))
    .bind(username)
    .fetch_optional(db.pool())
    .await
    .db()
}

pub(crate) async fn find_by_id(db: &Db, id: &str) -> Result<Option<UserRow>, Problem> {
    sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .db()
}

pub(crate) async fn list(db: &Db, department: Option<&str>) -> Result<Vec<UserView>, Problem> {
    let rows = match department {
        Some(code) => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE department_code = $1 ORDER BY username"
        )))
        .bind(code)
        .fetch_all(db.pool())
        .await
        .db()?,
        None => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        )))
        .fetch_all(db.pool())
        .await
        .db()?,
    };
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        views.push(view(db, row).await?);
    }
    Ok(views)
}

/// Validates and stores a user (authorisation is the caller's job).
pub(crate) async fn insert(identity: &Identity, new: NewUser) -> Result<UserView, Problem> {
    validate_username(&new.username)?;
    validate_display_name(&new.display_name)?;
    validate_password(&new.password)?;
    if new.roles.is_empty() {
        return Err(
            Problem::validation("a user needs at least one role").with_extension("field", "roles")
        );
    }
    departments::require(&identity.db, &new.department)
        .await
        .map_err(|_| {
            Problem::validation(format!(
                "there is no department with code {:?}",
                new.department
            ))
            .with_extension("field", "department")
        })?;
    let password_hash = hash_password(new.password).await?;
    let id = yunnao_core::new_id();
    let now = yunnao_core::time::now_ms();
    let mut tx = identity.db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, username, display_name, department_code, password_hash, disabled, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
    )
    .bind(&id)
    .bind(&new.username)
    .bind(&new.display_name)
    .bind(&new.department)
    .bind(&password_hash)
    .bind(now)
    .execute(&mut **tx)
    .await;
    if let Err(error) = inserted {
        let error = yunnao_store::StoreError::from(error);
        if error.is_unique_violation() {
            return Err(Problem::conflict(format!(
                "the username {:?} is taken",
                new.username
            )));
        }
        return Err(error.into());
    }
    set_roles(&mut tx, &id, &new.roles).await?;
    tx.commit().await?;
    let row = find_by_id(&identity.db, &id)
        .await?
        .ok_or_else(|| Problem::internal("user vanished after insert"))?;
    view(&identity.db, row).await
}

async fn set_roles(
    tx: &mut yunnao_store::WriteTx,
    user_id: &str,
    roles: &[Role],
) -> Result<(), Problem> {
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut ***tx)
        .await
        .db()?;
    let mut unique = roles.to_vec();
    unique.sort_by_key(|r| r.as_str());
    unique.dedup();
    for role in unique {
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(user_id)
            .bind(role.as_str())
            .execute(&mut ***tx)
            .await
            .db()?;
    }
    Ok(())
}

/// Changes a user; a new password ends their sessions but `keep_session` (the caller's own,
/// when they change their own password).
pub(crate) async fn update(
    identity: &Identity,
    id: &str,
    patch: UserPatch,
    keep_session: Option<&str>,
) -> Result<UserView, Problem> {
    if let Some(name) = &patch.display_name {
        validate_display_name(name)?;
    }
    if let Some(password) = &patch.password {
        validate_password(password)?;
    }
    if let Some(roles) = &patch.roles
        && roles.is_empty()
    {
        return Err(Problem::validation("a user needs at least one role"));
    }
    let password_hash = match patch.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let now = yunnao_core::time::now_ms();
    let mut tx = identity.db.begin_write().await?;
    if let Some(name) = &patch.display_name {
        sqlx::query("UPDATE users SET display_name = $1, updated_at_ms = $2 WHERE id = $3")
            .bind(name)
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
    }
    if let Some(hash) = &password_hash {
        sqlx::query("UPDATE users SET password_hash = $1, updated_at_ms = $2 WHERE id = $3")
            .bind(hash)
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
        // A new password ends every session that the old one opened (but the one changing it).
        revoke_sessions(&mut tx, id, now, keep_session).await?;
    }
    if let Some(disabled) = patch.disabled {
        sqlx::query("UPDATE users SET disabled = $1, updated_at_ms = $2 WHERE id = $3")
            .bind(i64::from(disabled))
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
        if disabled {
            revoke_sessions(&mut tx, id, now, None).await?;
        }
    }
    if let Some(roles) = &patch.roles {
        set_roles(&mut tx, id, roles).await?;
    }
    tx.commit().await?;
    // Roles, a password or disabling change what a session may do, or end it.
    identity.checked_sessions.changed();
    let row = find_by_id(&identity.db, id)
        .await?
        .ok_or_else(|| Problem::not_found("no such user"))?;
    view(&identity.db, row).await
}

async fn revoke_sessions(
    tx: &mut yunnao_store::WriteTx,
    user_id: &str,
    now: i64,
    except: Option<&str>,
) -> Result<(), Problem> {
    sqlx::query(
        "UPDATE sessions SET revoked_at_ms = $1 WHERE user_id = $2 AND revoked_at_ms IS NULL \
         AND jti <> $3",
    )
    .bind(now)
    .bind(user_id)
    .bind(except.unwrap_or(""))
    .execute(&mut ***tx)
    .await
    .db()?;
    Ok(())
}
