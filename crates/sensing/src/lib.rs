//! The sensing hub (城市感知中樞): device profiles and devices, ingestion over MQTT and HTTP
//! acknowledged only after commit, and time-series queries.
//!
//! Shape (sources → transform → sink): the MQTT server and the HTTP handlers are sources; they
//! authenticate the device and validate each message against its profile ([`payload`]); the
//! [`writer::Writer`] commits in groups and answers each source when its readings are durable,
//! then hands each committed batch to its [`events::Sink`]s: the alarm engine's queue, the
//! newest values the context mirror takes, and the bus (`sensing.telemetry.committed`).
//!
//! Owns the tables in [`MIGRATIONS`].

pub mod alarms;
pub mod api;
pub mod bulk;
mod devices;
pub mod events;
pub mod grants;
mod migrations;
pub mod mqtt;
pub mod mqtt_external;
pub mod payload;
pub mod profiles;
pub mod retention;
pub mod series;
pub mod tables;
pub mod writer;

pub use devices::{
    CreatedDevice, DeviceInfo, DevicePatch, DeviceStatus, DeviceView, Location, NewDevice,
};
pub use migrations::MIGRATIONS;
pub use profiles::{NewProfile, Profile, ProfileRegistry};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use yunnao_bus::Bus;
use yunnao_core::Problem;
use yunnao_identity::Identity;
use yunnao_store::{Db, DbResultExt, sqlx};

#[derive(Debug, Clone)]
pub struct SensingConfig {
    /// Readings stamped further ahead than this are refused.
    pub max_future_skew_ms: i64,
    /// Largest telemetry message accepted (MQTT payload or HTTP body per device).
    pub max_message_bytes: usize,
    /// Write requests that may wait for the writer before sources are slowed down.
    pub writer_queue: usize,
    /// How often no-data (offline) rules are checked.
    pub no_data_check: std::time::Duration,
    /// How often retention runs.
    pub retention_every: std::time::Duration,
    /// How long 5-minute rollups are kept (hourly ones are kept).
    pub rollup_5m_days: i64,
    /// How often devices' last-seen time and counters are written (they are kept in memory in
    /// between, and status reads and no-data checks see them at once).
    pub status_flush: std::time::Duration,
}

impl Default for SensingConfig {
    fn default() -> Self {
        Self {
            max_future_skew_ms: 5 * 60 * 1000,
            max_message_bytes: 64 * 1024,
            writer_queue: 65_536,
            no_data_check: std::time::Duration::from_secs(30),
            retention_every: std::time::Duration::from_secs(3600),
            rollup_5m_days: 730,
            status_flush: std::time::Duration::from_secs(5),
        }
    }
}

/// Why a message was not stored.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestError {
    UnknownToken,
    TooLarge(usize),
    /// The message was invalid; nothing of it was stored.
    Rejected(String),
    /// Storage failed; the sender should retry.
    Unavailable(String),
}

impl From<IngestError> for Problem {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::UnknownToken => Problem::unauthorized("unknown device access token"),
            IngestError::TooLarge(limit) => Problem::payload_too_large(format!(
                "a telemetry message may be at most {limit} bytes"
            )),
            IngestError::Rejected(reason) => Problem::bad_request(reason),
            IngestError::Unavailable(reason) => Problem::unavailable(reason),
        }
    }
}

#[derive(Clone)]
pub struct Sensing {
    pub db: Db,
    pub bus: Bus,
    pub identity: Identity,
    pub config: SensingConfig,
    profiles: ProfileRegistry,
    pub alarms: Arc<alarms::AlarmEngine>,
    writer: writer::Writer,
    pub(crate) activity: Arc<events::Activity>,
    /// The newest committed values per device, for the context broker's mirror.
    pub latest: Arc<events::LatestValues>,
    tokens: Arc<RwLock<HashMap<String, DeviceInfo>>>,
    by_id: Arc<RwLock<HashMap<String, DeviceInfo>>>,
}

impl Sensing {
    /// Seeds the built-in profiles (idempotent), loads them and starts the writer.
    pub async fn start(
        db: Db,
        bus: Bus,
        identity: Identity,
        config: SensingConfig,
    ) -> Result<Self, Problem> {
        let mut tx = db.begin_write().await?;
        for profile in profiles::builtin() {
            sqlx::query(
                "INSERT INTO device_profiles (code, definition, created_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (code) DO UPDATE SET definition = excluded.definition",
            )
            .bind(&profile.code)
            .bind(serde_json::to_string(&profile).map_err(|e| Problem::internal(e.to_string()))?)
            .bind(yunnao_core::time::now_ms())
            .execute(&mut **tx)
            .await
            .db()?;
        }
        tx.commit().await?;
        let profiles = ProfileRegistry::default();
        profiles.replace_all(load_profiles(&db).await?);
        let activity = Arc::new(events::Activity::default());
        let latest = Arc::new(events::LatestValues::default());
        let (alarms, alarm_input) = alarms::AlarmEngine::start(
            db.clone(),
            bus.clone(),
            profiles.clone(),
            activity.clone(),
            config.no_data_check,
        )
        .await?;
        let writer = writer::Writer::start(
            db.clone(),
            config.writer_queue,
            activity.clone(),
            vec![
                alarm_input,
                events::Sink::Latest(latest.clone()),
                events::Sink::Bus(bus.clone()),
            ],
            config.status_flush,
        );
        let sensing = Self {
            db,
            bus,
            identity,
            config,
            profiles,
            alarms,
            writer,
            activity,
            latest,
            tokens: Arc::new(RwLock::new(HashMap::new())),
            by_id: Arc::new(RwLock::new(HashMap::new())),
        };
        // Profiles defined on another node appear here within a minute (and at once where a
        // device names one this node has not seen, see `find_profile`).
        let reloader = sensing.clone();
        tokio::spawn(async move {
            let period = std::time::Duration::from_secs(60);
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                interval.tick().await;
                match load_profiles(&reloader.db).await {
                    Ok(all) => reloader.profiles.replace_all(all),
                    Err(problem) => tracing::error!(%problem, "profile reload failed"),
                }
            }
        });
        let retention = sensing.clone();
        tokio::spawn(async move {
            // The first pass waits one period: start-up stays quick.
            let period = retention.config.retention_every;
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                interval.tick().await;
                if let Err(problem) = retention.run_retention(yunnao_core::time::now_ms()).await {
                    tracing::error!(%problem, "retention failed");
                }
            }
        });
        Ok(sensing)
    }

    /// Telemetry writes queued or being committed right now (0: the writer is idle).
    pub fn ingest_in_flight(&self) -> usize {
        self.writer.in_flight()
    }

    /// Writes what is only in memory (devices' last-seen times and counters); call at shutdown.
    pub async fn flush(&self) {
        self.writer.flush_status().await;
    }

    pub fn profile_registry(&self) -> &ProfileRegistry {
        &self.profiles
    }

    pub fn profile(&self, code: &str) -> Option<Arc<Profile>> {
        self.profiles.get(code)
    }

    /// [`Sensing::profile`], looking in the database when this node has not seen `code` yet.
    pub async fn find_profile(&self, code: &str) -> Result<Option<Arc<Profile>>, Problem> {
        if let Some(profile) = self.profiles.get(code) {
            return Ok(Some(profile));
        }
        let stored: Option<String> =
            sqlx::query_scalar("SELECT definition FROM device_profiles WHERE code = $1")
                .bind(code)
                .fetch_optional(self.db.pool())
                .await
                .db()?;
        match stored.and_then(|text| serde_json::from_str::<Profile>(&text).ok()) {
            Some(profile) => {
                self.profiles.put(profile);
                Ok(self.profiles.get(code))
            }
            None => Ok(None),
        }
    }

    pub fn profiles(&self) -> Vec<Arc<Profile>> {
        self.profiles.all()
    }

    /// Stores a new department profile; 409 when the code is taken.
    pub async fn create_profile(&self, profile: Profile) -> Result<Profile, Problem> {
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO device_profiles (code, definition, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (code) DO NOTHING",
        )
        .bind(&profile.code)
        .bind(profile_json(&profile)?)
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await
        .db()?;
        if inserted.rows_affected() == 0 {
            return Err(Problem::conflict(format!(
                "a profile with code {:?} exists",
                profile.code
            )));
        }
        tx.commit().await?;
        self.profiles.put(profile.clone());
        Ok(profile)
    }

    /// Replaces a department profile's definition (built-in ones are fixed). Devices keep
    /// their data; new readings are checked against the new keys and ranges.
    pub async fn replace_profile(&self, profile: Profile) -> Result<Profile, Problem> {
        let mut tx = self.db.begin_write().await?;
        let updated = sqlx::query("UPDATE device_profiles SET definition = $2 WHERE code = $1")
            .bind(&profile.code)
            .bind(profile_json(&profile)?)
            .execute(&mut **tx)
            .await
            .db()?;
        if updated.rows_affected() == 0 {
            return Err(Problem::not_found(format!(
                "there is no profile {:?}",
                profile.code
            )));
        }
        tx.commit().await?;
        self.profiles.put(profile.clone());
        Ok(profile)
    }

    /// Deletes a department profile no device and no alarm rule uses.
    pub async fn delete_profile(&self, code: &str) -> Result<(), Problem> {
        let mut tx = self.db.begin_write().await?;
        let devices: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE profile_code = $1")
                .bind(code)
                .fetch_one(&mut **tx)
                .await
                .db()?;
        let rules: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM alarm_rules WHERE profile_code = $1")
                .bind(code)
                .fetch_one(&mut **tx)
                .await
                .db()?;
        let grants: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM device_grants WHERE profile_code = $1")
                .bind(code)
                .fetch_one(&mut **tx)
                .await
                .db()?;
        if devices + rules + grants > 0 {
            return Err(Problem::conflict(format!(
                "profile {code:?} is in use by {devices} device(s), {rules} alarm rule(s) and {grants} grant(s)"
            )));
        }
        sqlx::query("DELETE FROM device_profiles WHERE code = $1")
            .bind(code)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        self.profiles.remove(code);
        Ok(())
    }

    /// Validates one telemetry message from `device` and returns once it is committed.
    pub async fn ingest(&self, device: &DeviceInfo, payload: &[u8]) -> Result<usize, IngestError> {
        if payload.len() > self.config.max_message_bytes {
            let reason = format!(
                "message of {} bytes exceeds {}",
                payload.len(),
                self.config.max_message_bytes
            );
            self.record_rejection(&device.id, &reason).await;
            return Err(IngestError::TooLarge(self.config.max_message_bytes));
        }
        let profile = self.profile(&device.profile).ok_or_else(|| {
            IngestError::Unavailable(format!("profile {} is not loaded", device.profile))
        })?;
        let now = yunnao_core::time::now_ms();
        let readings =
            match payload::readings(payload, &profile, now, self.config.max_future_skew_ms) {
                Ok(readings) => readings,
                Err(reason) => {
                    tracing::debug!(device = %device.id, %reason, "telemetry rejected");
                    self.record_rejection(&device.id, &reason).await;
                    return Err(IngestError::Rejected(reason));
                }
            };
        let count = readings.len();
        self.writer
            .write(device.clone(), readings, now)
            .await
            .map_err(IngestError::Unavailable)?;
        Ok(count)
    }

    /// Validates without storing: the readings of one message, or why it is refused.
    pub fn validate(
        &self,
        device: &DeviceInfo,
        message: serde_json::Value,
    ) -> Result<Vec<payload::Reading>, String> {
        let profile = self
            .profile(&device.profile)
            .ok_or_else(|| format!("profile {} is not loaded", device.profile))?;
        payload::readings_from_value(
            message,
            &profile,
            yunnao_core::time::now_ms(),
            self.config.max_future_skew_ms,
        )
    }

    /// Stores already validated readings; returns once committed.
    pub async fn store(
        &self,
        device: &DeviceInfo,
        readings: Vec<payload::Reading>,
    ) -> Result<(), IngestError> {
        self.store_many(vec![(device.clone(), readings)]).await
    }

    /// Stores already validated readings of several devices together; returns once committed.
    pub async fn store_many(
        &self,
        items: Vec<(DeviceInfo, Vec<payload::Reading>)>,
    ) -> Result<(), IngestError> {
        if items.is_empty() {
            return Ok(());
        }
        self.writer
            .write_many(items, yunnao_core::time::now_ms())
            .await
            .map_err(IngestError::Unavailable)
    }

    /// The ingestion view of a device by id (cached; misses go to the database).
    pub async fn device_info(&self, id: &str) -> Result<Option<DeviceInfo>, Problem> {
        Ok(self.device_infos([id]).await?.remove(id))
    }

    /// The ingestion view of many devices at once: cache hits, then one query per 500
    /// misses (a gateway's first upload names thousands of devices). Unknown ids are absent.
    pub async fn device_infos<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, DeviceInfo>, Problem> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.by_id.read().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                if found.contains_key(id) {
                    continue;
                }
                match cache.get(id) {
                    Some(info) => {
                        found.insert(id.to_owned(), info.clone());
                    }
                    None => missing.push(id),
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        for chunk in missing.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, profile_code, department_code FROM devices WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut query = sqlx::query_as::<_, (String, String, String)>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(self.db.pool()).await.db()?;
            let mut cache = self.by_id.write().unwrap_or_else(|p| p.into_inner());
            for (id, profile, department) in rows {
                let info = DeviceInfo {
                    id: id.as_str().into(),
                    profile: profile.into(),
                    department: department.into(),
                };
                cache.insert(id.clone(), info.clone());
                found.insert(id, info);
            }
        }
        Ok(found)
    }

    /// [`Sensing::ingest`] for a device named by its access token.
    pub async fn ingest_with_token(
        &self,
        token: &str,
        payload: &[u8],
    ) -> Result<usize, IngestError> {
        let device = self
            .device_for_token(token)
            .await
            .map_err(|p| IngestError::Unavailable(p.to_string()))?
            .ok_or(IngestError::UnknownToken)?;
        self.ingest(&device, payload).await
    }

    fn token_cache_get(&self, hash: &str) -> Option<DeviceInfo> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    fn token_cache_put(&self, hash: String, info: DeviceInfo) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, info);
    }

    fn forget_token(&self, hash: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    fn forget_device(&self, id: &str) {
        self.by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

async fn load_profiles(db: &Db) -> Result<Vec<Profile>, Problem> {
    let stored: Vec<String> = sqlx::query_scalar("SELECT definition FROM device_profiles")
        .fetch_all(db.pool())
        .await
        .db()?;
    Ok(stored
        .iter()
        .filter_map(|text| serde_json::from_str::<Profile>(text).ok())
        .collect())
}

fn profile_json(profile: &Profile) -> Result<String, Problem> {
    serde_json::to_string(profile).map_err(|e| Problem::internal(e.to_string()))
}

/// The sensing hub at a glance, for the overview.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SensingSummary {
    pub devices: i64,
    /// Reported within three of their profile's intervals (as last flushed, ≤ 5 s old).
    pub online: i64,
    pub simulated: i64,
    /// Per profile: (code, devices, online).
    pub by_profile: Vec<(String, i64, i64)>,
    /// Active (uncleared) alarms per severity.
    pub alarms: std::collections::BTreeMap<String, i64>,
    /// Readings committed since this node started.
    pub readings_total: u64,
}

impl Sensing {
    /// Counts for the overview: one scan of the device table and one of active alarms.
    pub async fn summary(&self) -> Result<SensingSummary, Problem> {
        let now = yunnao_core::time::now_ms();
        // Each profile's own "online" window; codes are validated ([a-z0-9-]) at definition.
        let mut window = String::from("CASE profile_code");
        for profile in self.profiles() {
            if profile
                .code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                window.push_str(&format!(
                    " WHEN '{}' THEN {}",
                    profile.code,
                    3000 * profile.reporting_interval_s.max(1)
                ));
            }
        }
        window.push_str(" ELSE 900000 END");
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT profile_code, COUNT(*), \
             CAST(SUM(CASE WHEN last_seen_ms IS NOT NULL AND last_seen_ms >= $1 - {window} THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(simulated) AS BIGINT) FROM devices GROUP BY profile_code ORDER BY profile_code"
        )))
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let alarms: Vec<(String, i64)> = sqlx::query_as(
            "SELECT severity, COUNT(*) FROM alarms WHERE cleared_at_ms IS NULL GROUP BY severity",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(SensingSummary {
            devices: rows.iter().map(|r| r.1).sum(),
            online: rows.iter().map(|r| r.2).sum(),
            simulated: rows.iter().map(|r| r.3).sum(),
            by_profile: rows.into_iter().map(|(p, n, on, _)| (p, n, on)).collect(),
            alarms: alarms.into_iter().collect(),
            readings_total: self
                .activity
                .accepted_total
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}
