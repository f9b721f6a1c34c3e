//! Devices: registry rows, access tokens (stored as SM3), and the in-memory token cache used on
//! the ingestion path.

use crate::Sensing;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use yunnao_core::Problem;
use yunnao_store::{DbResultExt, sqlx};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Location {
    /// WGS84 longitude.
    pub lon: f64,
    /// WGS84 latitude.
    pub lat: f64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// Optional stable id (`[A-Za-z0-9._-]`, 1–64); generated if absent.
    pub id: Option<String>,
    pub name: String,
    /// Profile code, e.g. `rain-gauge`.
    pub profile: String,
    /// Owning department; defaults to the caller's.
    pub department: Option<String>,
    pub location: Option<Location>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Marks devices created by the city simulator.
    #[serde(default)]
    pub simulated: bool,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub location: Option<Location>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DeviceStatus {
    /// Reported within three reporting intervals.
    pub online: bool,
    pub last_seen: Option<String>,
    pub accepted_readings: i64,
    pub rejected_messages: i64,
    pub last_rejection: Option<String>,
    pub last_rejection_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub profile: String,
    pub department: String,
    pub location: Option<Location>,
    pub tags: Vec<String>,
    pub simulated: bool,
    pub created_at: String,
    pub status: DeviceStatus,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedDevice {
    pub device: DeviceView,
    /// The device's access token (MQTT username, or the `{token}` of the HTTP API). Shown once.
    pub access_token: String,
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeviceRow {
    pub id: String,
    pub name: String,
    pub profile_code: String,
    pub department_code: String,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub tags: String,
    pub simulated: i64,
    pub created_at_ms: i64,
    pub last_seen_ms: Option<i64>,
    pub accepted_count: i64,
    pub rejected_count: i64,
    pub last_rejection: Option<String>,
    pub last_rejection_ms: Option<i64>,
}

pub(crate) const COLUMNS: &str = "id, name, profile_code, department_code, lon, lat, tags, simulated, created_at_ms, last_seen_ms, accepted_count, rejected_count, last_rejection, last_rejection_ms";

/// What the ingestion path needs to know about an authenticated device.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub id: Arc<str>,
    pub profile: Arc<str>,
    pub department: Arc<str>,
}

pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(yunnao_gm::sm3(token.as_bytes()))
}

fn new_token() -> Result<String, Problem> {
    yunnao_gm::random_bytes::<16>()
        .map(hex::encode)
        .map_err(|e| Problem::internal(e.to_string()))
}

fn validate_id(id: &str) -> Result<(), Problem> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Problem::validation(
            "device id must be 1–64 characters of A–Z, a–z, 0–9, '.', '_' or '-'",
        )
        .with_extension("field", "id"))
    }
}

fn validate_location(location: &Option<Location>) -> Result<(), Problem> {
    if let Some(l) = location
        && !((-180.0..=180.0).contains(&l.lon) && (-90.0..=90.0).contains(&l.lat))
    {
        return Err(Problem::validation(
            "location must be WGS84 lon in -180..180 and lat in -90..90",
        )
        .with_extension("field", "location"));
    }
    Ok(())
}

impl Sensing {
    pub(crate) fn view(&self, row: DeviceRow) -> DeviceView {
        let interval_ms = self
            .profile(&row.profile_code)
            .map(|p| p.reporting_interval_s * 1000)
            .unwrap_or(300_000);
        let now = yunnao_core::time::now_ms();
        // Traffic of the last second or so is still in memory, not yet in the row.
        let (last_seen_ms, accepted) = match self.activity.pending(&row.id) {
            Some((seen, n)) => (
                Some(row.last_seen_ms.unwrap_or(seen).max(seen)),
                row.accepted_count + n,
            ),
            None => (row.last_seen_ms, row.accepted_count),
        };
        DeviceView {
            status: DeviceStatus {
                online: last_seen_ms.is_some_and(|seen| now - seen <= 3 * interval_ms),
                last_seen: last_seen_ms.map(yunnao_core::time::rfc3339_ms),
                accepted_readings: accepted,
                rejected_messages: row.rejected_count,
                last_rejection: row.last_rejection,
                last_rejection_at: row.last_rejection_ms.map(yunnao_core::time::rfc3339_ms),
            },
            id: row.id,
            name: row.name,
            profile: row.profile_code,
            department: row.department_code,
            location: row.lon.zip(row.lat).map(|(lon, lat)| Location { lon, lat }),
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            simulated: yunnao_store::flag(row.simulated),
            created_at: yunnao_core::time::rfc3339_ms(row.created_at_ms),
        }
    }

    pub async fn create_device(
        &self,
        new: NewDevice,
        department: String,
    ) -> Result<CreatedDevice, Problem> {
        let id = match new.id {
            Some(id) => {
                validate_id(&id)?;
                id
            }
            None => yunnao_core::new_id(),
        };
        if new.name.trim().is_empty() || new.name.chars().count() > 200 {
            return Err(Problem::validation("name must be 1 to 200 characters")
                .with_extension("field", "name"));
        }
        validate_location(&new.location)?;
        if self.find_profile(&new.profile).await?.is_none() {
            return Err(Problem::validation(format!(
                "there is no device profile {:?}",
                new.profile
            ))
            .with_extension("field", "profile"));
        }
        if !self.identity.department_exists(&department).await? {
            return Err(
                Problem::validation(format!("there is no department {department:?}"))
                    .with_extension("field", "department"),
            );
        }
        let token = new_token()?;
        let tags =
            serde_json::to_string(&new.tags).map_err(|e| Problem::internal(e.to_string()))?;
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO devices (id, name, profile_code, department_code, lon, lat, tags, token_hash, simulated, created_at_ms) \
             VALUES ($1, $2, $3, $4, CAST($5 AS DOUBLE PRECISION), CAST($6 AS DOUBLE PRECISION), $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(&new.profile)
        .bind(&department)
        .bind(yunnao_store::nullable_real(new.location.map(|l| l.lon)))
        .bind(yunnao_store::nullable_real(new.location.map(|l| l.lat)))
        .bind(tags)
        .bind(token_hash(&token))
        .bind(i64::from(new.simulated))
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await;
        if let Err(error) = inserted {
            let error = yunnao_store::StoreError::from(error);
            return Err(if error.is_unique_violation() {
                Problem::conflict(format!("a device with id {id:?} exists"))
            } else {
                error.into()
            });
        }
        tx.commit().await?;
        let device = self
            .get_device(&id)
            .await?
            .ok_or_else(|| Problem::internal("device vanished"))?;
        Ok(CreatedDevice {
            device,
            access_token: token,
        })
    }

    pub async fn get_device(&self, id: &str) -> Result<Option<DeviceView>, Problem> {
        Ok(self.get_devices(&[id]).await?.pop())
    }

    /// Several devices by id, one query per 500 (unknown ids are left out).
    pub async fn get_devices(&self, ids: &[&str]) -> Result<Vec<DeviceView>, Problem> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {COLUMNS} FROM devices WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut query = sqlx::query_as::<_, DeviceRow>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(self.db.pool()).await.db()?;
            out.extend(rows.into_iter().map(|r| self.view(r)));
        }
        Ok(out)
    }

    pub async fn list_devices(
        &self,
        department: Option<&str>,
        profile: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DeviceView>, i64), Problem> {
        let filter = "($1 = '' OR department_code = $1) AND ($2 = '' OR profile_code = $2)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM devices WHERE {filter}"
        )))
        .bind(department.unwrap_or(""))
        .bind(profile.unwrap_or(""))
        .fetch_one(self.db.pool())
        .await
        .db()?;
        let rows = sqlx::query_as::<_, DeviceRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM devices WHERE {filter} ORDER BY id LIMIT $3 OFFSET $4"
        )))
        .bind(department.unwrap_or(""))
        .bind(profile.unwrap_or(""))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok((rows.into_iter().map(|r| self.view(r)).collect(), total))
    }

    /// Devices whose id or name holds these words (a department's own, or all), by id.
    pub async fn search_devices(
        &self,
        department: Option<&str>,
        words: &str,
        limit: i64,
    ) -> Result<Vec<DeviceView>, Problem> {
        let pattern = format!(
            "%{}%",
            words
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows = sqlx::query_as::<_, DeviceRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM devices WHERE ($1 = '' OR department_code = $1) \
             AND (LOWER(id) LIKE LOWER($2) ESCAPE '\\' OR LOWER(name) LIKE LOWER($2) ESCAPE '\\') ORDER BY id LIMIT $3"
        )))
        .bind(department.unwrap_or(""))
        .bind(pattern)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows.into_iter().map(|r| self.view(r)).collect())
    }

    pub async fn update_device(&self, id: &str, patch: DevicePatch) -> Result<DeviceView, Problem> {
        validate_location(&patch.location)?;
        let mut tx = self.db.begin_write().await?;
        if let Some(name) = &patch.name {
            if name.trim().is_empty() || name.chars().count() > 200 {
                return Err(Problem::validation("name must be 1 to 200 characters"));
            }
            sqlx::query("UPDATE devices SET name = $1 WHERE id = $2")
                .bind(name)
                .bind(id)
                .execute(&mut **tx)
                .await
                .db()?;
        }
        if let Some(location) = patch.location {
            sqlx::query("UPDATE devices SET lon = $1, lat = $2 WHERE id = $3")
                .bind(location.lon)
                .bind(location.lat)
                .bind(id)
                .execute(&mut **tx)
                .await
                .db()?;
        }
        if let Some(tags) = &patch.tags {
            sqlx::query("UPDATE devices SET tags = $1 WHERE id = $2")
                .bind(serde_json::to_string(tags).map_err(|e| Problem::internal(e.to_string()))?)
                .bind(id)
                .execute(&mut **tx)
                .await
                .db()?;
        }
        tx.commit().await?;
        self.get_device(id)
            .await?
            .ok_or_else(|| Problem::not_found("no such device"))
    }

    /// Deletes the device and its readings; its token stops working at once.
    pub async fn delete_device(&self, id: &str) -> Result<(), Problem> {
        let mut tx = self.db.begin_write().await?;
        let hash: Option<String> =
            sqlx::query_scalar("SELECT token_hash FROM devices WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
                .db()?;
        sqlx::query("DELETE FROM telemetry WHERE device_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
        sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        if let Some(hash) = hash {
            self.forget_token(&hash);
        }
        self.forget_device(id);
        Ok(())
    }

    /// Issues a new access token; the old one stops working at once.
    pub async fn rotate_token(&self, id: &str) -> Result<String, Problem> {
        let token = new_token()?;
        let mut tx = self.db.begin_write().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT token_hash FROM devices WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
                .db()?;
        let old = old.ok_or_else(|| Problem::not_found(format!("there is no device {id:?}")))?;
        sqlx::query("UPDATE devices SET token_hash = $1 WHERE id = $2")
            .bind(token_hash(&token))
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        self.forget_token(&old);
        Ok(token)
    }

    /// The device a token belongs to (cached; misses go to the database).
    pub async fn device_for_token(&self, token: &str) -> Result<Option<DeviceInfo>, Problem> {
        let hash = token_hash(token);
        if let Some(info) = self.token_cache_get(&hash) {
            return Ok(Some(info));
        }
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT id, profile_code, department_code FROM devices WHERE token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(self.db.pool())
        .await
        .db()?;
        Ok(row.map(|(id, profile, department)| {
            let info = DeviceInfo {
                id: id.into(),
                profile: profile.into(),
                department: department.into(),
            };
            self.token_cache_put(hash, info.clone());
            info
        }))
    }

    pub(crate) async fn record_rejection(&self, device_id: &str, reason: &str) {
        let result = sqlx::query(
            "UPDATE devices SET rejected_count = rejected_count + 1, last_rejection = $1, last_rejection_ms = $2 WHERE id = $3",
        )
        .bind(reason)
        .bind(yunnao_core::time::now_ms())
        .bind(device_id)
        .execute(self.db.pool())
        .await;
        if let Err(error) = result {
            tracing::error!(%error, device_id, "could not record a rejected message");
        }
    }
}
