//! EntityMaps (clause 5.14): the ids of the entities a query selected, each with where it
//! came from (`@none`: this broker; else the registrations whose sources answered), kept for
//! a while so that later requests naming the map (`NGSILD-EntityMap`) work on the same set
//! (clause 5.5.14). Rows of `ngsi_entity_maps` (migration 10); one that has expired is as if
//! it never was, and expired rows are cleared when a map is made.

use crate::errors;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use yunnao_core::Problem;
use yunnao_store::{Db, DbResultExt, sqlx};

/// How long a map lives unless `entityMapLifetime` says otherwise.
pub const DEFAULT_LIFETIME_MS: i64 = 3_600_000;
/// The longest a map may live.
pub const MAX_LIFETIME_MS: i64 = 86_400_000;
/// The origin of an entity this broker holds (clause 5.2.39).
pub const HERE: &str = "@none";

#[derive(Debug, Clone)]
pub struct EntityMap {
    pub id: String,
    /// The department whose request made it (empty: a platform admin, or no credential).
    pub owner: String,
    pub expires_at_ms: i64,
    /// Entity id → where it came from.
    pub entities: BTreeMap<String, Vec<String>>,
}

impl EntityMap {
    pub fn new(owner: String, entities: BTreeMap<String, Vec<String>>, lifetime_ms: i64) -> Self {
        Self {
            id: format!("urn:ngsi-ld:EntityMap:{}", yunnao_core::new_id()),
            owner,
            expires_at_ms: yunnao_core::time::now_ms() + lifetime_ms,
            entities,
        }
    }

    /// The map's resource, as the `NGSILD-EntityMap` header names it.
    pub fn location(&self) -> String {
        format!("/ngsi-ld/v1/entityMaps/{}", self.id)
    }

    /// The EntityMap data type (clause 5.2.38).
    pub fn render(&self) -> Value {
        json!({
            "id": self.id,
            "type": "EntityMap",
            "expiresAt": yunnao_core::time::rfc3339_ms(self.expires_at_ms),
            "entityMap": self.entities,
        })
    }
}

/// The lifetime `entityMapLifetime` asks for (an ISO 8601 duration, at most a day).
pub fn lifetime_ms(text: Option<&String>) -> Result<i64, Problem> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIFETIME_MS);
    };
    let ms = crate::temporal::duration_ms(text)?;
    if ms <= 0 || ms > MAX_LIFETIME_MS {
        return Err(errors::bad_request(format!(
            "entityMapLifetime {text:?}: from one second to one day (P1D)"
        )));
    }
    Ok(ms)
}

/// Keeps `map`, clearing the tenant's expired maps.
pub async fn insert(db: &Db, tenant: &str, map: &EntityMap) -> Result<(), Problem> {
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM ngsi_entity_maps WHERE tenant = $1 AND expires_at_ms < $2")
        .bind(tenant.to_owned())
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await
        .db()?;
    sqlx::query(
        "INSERT INTO ngsi_entity_maps (tenant, id, owner_department, expires_at_ms, entities) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant.to_owned())
    .bind(map.id.clone())
    .bind(map.owner.clone())
    .bind(map.expires_at_ms)
    .bind(json!(map.entities).to_string())
    .execute(&mut **tx)
    .await
    .db()?;
    tx.commit().await?;
    Ok(())
}

/// Map `id` of `tenant`, unless there is none or it has expired.
pub async fn get(db: &Db, tenant: &str, id: &str) -> Result<Option<EntityMap>, Problem> {
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT owner_department, expires_at_ms, entities FROM ngsi_entity_maps \
         WHERE tenant = $1 AND id = $2",
    )
    .bind(tenant.to_owned())
    .bind(id.to_owned())
    .fetch_optional(db.pool())
    .await
    .db()?;
    Ok(row.and_then(|(owner, expires_at_ms, entities)| {
        (expires_at_ms > yunnao_core::time::now_ms()).then(|| EntityMap {
            id: id.to_owned(),
            owner,
            expires_at_ms,
            entities: serde_json::from_str(&entities).unwrap_or_default(),
        })
    }))
}

/// Sets when map `id` expires.
pub async fn set_expiry(db: &Db, tenant: &str, id: &str, at_ms: i64) -> Result<(), Problem> {
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE ngsi_entity_maps SET expires_at_ms = $3 WHERE tenant = $1 AND id = $2")
        .bind(tenant.to_owned())
        .bind(id.to_owned())
        .bind(at_ms)
        .execute(&mut **tx)
        .await
        .db()?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete(db: &Db, tenant: &str, id: &str) -> Result<(), Problem> {
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM ngsi_entity_maps WHERE tenant = $1 AND id = $2")
        .bind(tenant.to_owned())
        .bind(id.to_owned())
        .execute(&mut **tx)
        .await
        .db()?;
    tx.commit().await?;
    Ok(())
}
