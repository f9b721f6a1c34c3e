//! Sharing sensors across departments (跨部門調用共享): the owning department grants another
//! department read access to chosen devices, or to every device of a profile (optionally inside
//! an area), until an expiry. Without an active grant another department gets 404, as if the
//! device did not exist. Every read through a grant is written to the audit chain by the caller
//! of [`Sensing::shared_read_allowed`].

use crate::{DeviceView, Sensing};
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_store::{DbResultExt, sqlx};

/// WGS84 bounding box.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Area {
    pub min_lon: f64,
    pub min_lat: f64,
    pub max_lon: f64,
    pub max_lat: f64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// The department receiving read access.
    pub grantee: String,
    /// One device…
    pub device: Option<String>,
    /// …or every device of a profile, optionally only inside `area`.
    pub profile: Option<String>,
    pub area: Option<Area>,
    /// Why the data is shared (shown to both departments and in the audit log).
    pub purpose: String,
    /// RFC 3339; must be in the future.
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Grant {
    pub id: String,
    pub owner: String,
    pub grantee: String,
    pub device: Option<String>,
    pub profile: Option<String>,
    pub area: Option<Area>,
    pub purpose: String,
    pub expires_at: String,
    pub created_by: String,
    pub created_at: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: String,
    owner_department: String,
    grantee_department: String,
    device_id: Option<String>,
    profile_code: Option<String>,
    min_lon: Option<f64>,
    min_lat: Option<f64>,
    max_lon: Option<f64>,
    max_lat: Option<f64>,
    purpose: String,
    expires_at_ms: i64,
    created_by: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
}

const COLUMNS: &str = "id, owner_department, grantee_department, device_id, profile_code, min_lon, min_lat, max_lon, max_lat, purpose, expires_at_ms, created_by, created_at_ms, revoked_at_ms";

impl GrantRow {
    fn area(&self) -> Option<Area> {
        Some(Area {
            min_lon: self.min_lon?,
            min_lat: self.min_lat?,
            max_lon: self.max_lon?,
            max_lat: self.max_lat?,
        })
    }

    fn covers(&self, device: &DeviceView) -> bool {
        let scope = match (&self.device_id, &self.profile_code) {
            (Some(id), _) => *id == device.id,
            (None, Some(profile)) => *profile == device.profile,
            (None, None) => false,
        };
        let inside = match (self.area(), device.location) {
            (None, _) => true,
            (Some(a), Some(l)) => {
                (a.min_lon..=a.max_lon).contains(&l.lon) && (a.min_lat..=a.max_lat).contains(&l.lat)
            }
            (Some(_), None) => false,
        };
        scope && inside
    }

    fn view(self, now: i64) -> Grant {
        let status = if self.revoked_at_ms.is_some() {
            "revoked"
        } else if self.expires_at_ms <= now {
            "expired"
        } else {
            "active"
        };
        Grant {
            area: self.area(),
            status: status.to_owned(),
            id: self.id,
            owner: self.owner_department,
            grantee: self.grantee_department,
            device: self.device_id,
            profile: self.profile_code,
            purpose: self.purpose,
            expires_at: yunnao_core::time::rfc3339_ms(self.expires_at_ms),
            created_by: self.created_by,
            created_at: yunnao_core::time::rfc3339_ms(self.created_at_ms),
        }
    }
}

impl Sensing {
    pub async fn create_grant(
        &self,
        owner: &str,
        created_by: &str,
        new: NewGrant,
    ) -> Result<Grant, Problem> {
        let now = yunnao_core::time::now_ms();
        let expires = yunnao_core::time::parse_rfc3339_ms(&new.expires_at)
            .ok_or_else(|| Problem::validation("expires_at must be an RFC 3339 time"))?;
        if expires <= now {
            return Err(Problem::validation("expires_at must be in the future"));
        }
        if new.device.is_some() == new.profile.is_some() {
            return Err(Problem::validation("give exactly one of device or profile"));
        }
        if new.grantee == owner {
            return Err(Problem::validation(
                "a department does not need a grant for its own devices",
            ));
        }
        if new.purpose.trim().is_empty() {
            return Err(Problem::validation("purpose is required"));
        }
        if !self.identity.department_exists(&new.grantee).await? {
            return Err(Problem::validation(format!(
                "there is no department {:?}",
                new.grantee
            )));
        }
        if let Some(profile) = &new.profile
            && self.find_profile(profile).await?.is_none()
        {
            return Err(Problem::validation(format!(
                "there is no device profile {profile:?}"
            )));
        }
        if let Some(device) = &new.device {
            let view = self.get_device(device).await?;
            if view.is_none_or(|d| d.department != owner) {
                return Err(Problem::validation(
                    "a department can only share its own devices",
                ));
            }
        }
        if let Some(a) = new.area
            && !(a.min_lon < a.max_lon && a.min_lat < a.max_lat)
        {
            return Err(Problem::validation("area must have min below max"));
        }
        let id = yunnao_core::new_id();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO device_grants (id, owner_department, grantee_department, device_id, profile_code, min_lon, min_lat, max_lon, max_lat, \
             purpose, expires_at_ms, created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, CAST($6 AS DOUBLE PRECISION), \
             CAST($7 AS DOUBLE PRECISION), CAST($8 AS DOUBLE PRECISION), CAST($9 AS DOUBLE PRECISION), $10, $11, $12, $13)",
        )
        .bind(&id)
        .bind(owner)
        .bind(&new.grantee)
        .bind(&new.device)
        .bind(&new.profile)
        .bind(yunnao_store::nullable_real(new.area.map(|a| a.min_lon)))
        .bind(yunnao_store::nullable_real(new.area.map(|a| a.min_lat)))
        .bind(yunnao_store::nullable_real(new.area.map(|a| a.max_lon)))
        .bind(yunnao_store::nullable_real(new.area.map(|a| a.max_lat)))
        .bind(&new.purpose)
        .bind(expires)
        .bind(created_by)
        .bind(now)
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
        self.grant(&id)
            .await?
            .ok_or_else(|| Problem::internal("grant vanished"))
    }

    pub async fn grant(&self, id: &str) -> Result<Option<Grant>, Problem> {
        let row: Option<GrantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM device_grants WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .db()?;
        Ok(row.map(|r| r.view(yunnao_core::time::now_ms())))
    }

    /// Grants given by or to `department` (all when `None`).
    pub async fn grants(&self, department: Option<&str>) -> Result<Vec<Grant>, Problem> {
        let rows: Vec<GrantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM device_grants WHERE $1 = '' OR owner_department = $1 OR grantee_department = $1 ORDER BY created_at_ms DESC"
        )))
        .bind(department.unwrap_or(""))
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let now = yunnao_core::time::now_ms();
        Ok(rows.into_iter().map(|r| r.view(now)).collect())
    }

    pub async fn revoke_grant(&self, id: &str) -> Result<(), Problem> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE device_grants SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(yunnao_core::time::now_ms())
        .bind(id)
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
        Ok(())
    }

    /// The active grant through which `department` may read `device`, if any.
    pub async fn shared_read_allowed(
        &self,
        department: &str,
        device: &DeviceView,
    ) -> Result<Option<String>, Problem> {
        let rows: Vec<GrantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM device_grants WHERE grantee_department = $1 AND owner_department = $2 \
             AND revoked_at_ms IS NULL AND expires_at_ms > $3"
        )))
        .bind(department)
        .bind(&device.department)
        .bind(yunnao_core::time::now_ms())
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows.into_iter().find(|g| g.covers(device)).map(|g| g.id))
    }
}
