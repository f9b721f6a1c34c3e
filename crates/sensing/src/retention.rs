//! Retention that actually deletes. Raw readings older than their profile's `retention_days`
//! are first summarised into 5-minute and hourly rollups (avg/min/max/sum/count), then deleted,
//! in one transaction per profile. Aggregate queries read rollups where raw data is gone, so
//! long-range charts keep working. 5-minute rollups are kept for `rollup_5m_days`; hourly ones
//! are kept.

use crate::Sensing;
use serde::Serialize;
use yunnao_core::Problem;
use yunnao_store::{DbResultExt, sqlx};

pub const ROLLUP_INTERVALS_S: [i64; 2] = [300, 3600];
const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RetentionReport {
    /// Raw rows deleted: one per device and time (a message's values are one row).
    pub raw_deleted: u64,
    pub rollups_written: u64,
    pub rollups_deleted: u64,
}

impl Sensing {
    /// Applies retention for every profile as of `now_ms`.
    pub async fn run_retention(&self, now_ms: i64) -> Result<RetentionReport, Problem> {
        let mut report = RetentionReport::default();
        for profile in self.profiles() {
            // Cut on an hour boundary so every rolled-up bucket is complete.
            let cutoff =
                (now_ms - profile.retention_days * 24 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
            let mut tx = self.db.begin_write().await?;
            for interval_s in ROLLUP_INTERVALS_S {
                let bucket = interval_s * 1000;
                let written = sqlx::query(
                    "INSERT INTO readings_rollup (device_id, key, interval_s, bucket_ms, avg_value, min_value, max_value, sum_value, count_value) \
                     SELECT r.device_id, r.key, $1, (r.ts_ms / $2) * $2, AVG(r.value), MIN(r.value), MAX(r.value), SUM(r.value), COUNT(*) \
                     FROM readings r JOIN devices d ON d.id = r.device_id \
                     WHERE d.profile_code = $3 AND r.ts_ms < $4 \
                     GROUP BY r.device_id, r.key, (r.ts_ms / $2) * $2 \
                     ON CONFLICT (device_id, key, interval_s, bucket_ms) DO UPDATE SET \
                       avg_value = (readings_rollup.sum_value + excluded.sum_value) / (readings_rollup.count_value + excluded.count_value), \
                       min_value = CASE WHEN excluded.min_value < readings_rollup.min_value THEN excluded.min_value ELSE readings_rollup.min_value END, \
                       max_value = CASE WHEN excluded.max_value > readings_rollup.max_value THEN excluded.max_value ELSE readings_rollup.max_value END, \
                       sum_value = readings_rollup.sum_value + excluded.sum_value, \
                       count_value = readings_rollup.count_value + excluded.count_value",
                )
                .bind(interval_s)
                .bind(bucket)
                .bind(&profile.code)
                .bind(cutoff)
                .execute(&mut **tx)
                .await
                .db()?;
                report.rollups_written += written.rows_affected();
            }
            let deleted = sqlx::query(
                "DELETE FROM telemetry WHERE ts_ms < $1 AND device_id IN (SELECT id FROM devices WHERE profile_code = $2)",
            )
            .bind(cutoff)
            .bind(&profile.code)
            .execute(&mut **tx)
            .await
            .db()?;
            report.raw_deleted += deleted.rows_affected();
            tx.commit().await?;
        }
        let rollup_cutoff = now_ms - self.config.rollup_5m_days * 24 * HOUR_MS;
        let mut tx = self.db.begin_write().await?;
        let deleted =
            sqlx::query("DELETE FROM readings_rollup WHERE interval_s = 300 AND bucket_ms < $1")
                .bind(rollup_cutoff)
                .execute(&mut **tx)
                .await
                .db()?;
        tx.commit().await?;
        report.rollups_deleted = deleted.rows_affected();
        if report.raw_deleted > 0 {
            tracing::info!(
                raw_deleted = report.raw_deleted,
                rollups = report.rollups_written,
                "retention applied"
            );
        }
        Ok(report)
    }
}
