//! Time-series queries over committed readings.

use crate::Sensing;
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_store::{DbResultExt, sqlx};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Point {
    /// Milliseconds since the epoch, UTC.
    pub ts: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct LatestValue {
    pub key: String,
    pub ts: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RawPage {
    pub key: String,
    pub points: Vec<Point>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Bucket {
    /// Start of the interval, ms since the epoch.
    pub start: i64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
}

impl Bucket {
    fn empty(start: i64) -> Self {
        Self {
            start,
            avg: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            count: 0,
        }
    }

    /// Folds another summary of the same interval into this one.
    fn absorb(&mut self, min: f64, max: f64, sum: f64, count: i64) {
        self.min = self.min.min(min);
        self.max = self.max.max(max);
        self.sum += sum;
        self.count += count;
        self.avg = self.sum / self.count.max(1) as f64;
    }
}

/// Merges per-interval summaries (of several sources) by interval start.
pub fn merge_buckets(buckets: impl IntoIterator<Item = Bucket>) -> Vec<Bucket> {
    let mut merged: std::collections::BTreeMap<i64, Bucket> = std::collections::BTreeMap::new();
    for b in buckets {
        merged
            .entry(b.start)
            .or_insert_with(|| Bucket::empty(b.start))
            .absorb(b.min, b.max, b.sum, b.count);
    }
    merged.into_values().collect()
}

impl Sensing {
    /// The messages of `department`'s devices of `profile` since `since_ms`, newest first, at
    /// most `max`: (device id, device name, time, the message's values as JSON). What the data
    /// hub's live series views read.
    pub async fn profile_messages(
        &self,
        department: &str,
        profile: &str,
        since_ms: i64,
        max: i64,
    ) -> Result<Vec<(String, String, i64, String)>, Problem> {
        sqlx::query_as(
            "SELECT t.device_id, d.name, t.ts_ms, t.values_json FROM devices d \
             JOIN telemetry t ON t.device_id = d.id AND t.ts_ms >= $3 \
             WHERE d.department_code = $1 AND d.profile_code = $2 \
             ORDER BY t.ts_ms DESC, t.device_id LIMIT $4",
        )
        .bind(department)
        .bind(profile)
        .bind(since_ms)
        .bind(max)
        .fetch_all(self.db.pool())
        .await
        .db()
    }

    /// The newest value of each of `keys` (all profile keys when empty) that has one.
    pub async fn latest(
        &self,
        device_id: &str,
        keys: &[String],
    ) -> Result<Vec<LatestValue>, Problem> {
        let mut out = Vec::new();
        for key in keys {
            let row: Option<(i64, f64)> = sqlx::query_as(
                "SELECT ts_ms, value FROM readings WHERE device_id = $1 AND key = $2 ORDER BY ts_ms DESC LIMIT 1",
            )
            .bind(device_id)
            .bind(key)
            .fetch_optional(self.db.pool())
            .await
            .db()?;
            if let Some((ts, value)) = row {
                out.push(LatestValue {
                    key: key.clone(),
                    ts,
                    value,
                });
            }
        }
        Ok(out)
    }

    /// Raw points of one key in `[from, to)`, oldest first, `limit` per page after `after`.
    pub async fn raw(
        &self,
        device_id: &str,
        key: &str,
        from: i64,
        to: i64,
        after: Option<i64>,
        limit: i64,
    ) -> Result<RawPage, Problem> {
        let start = after.map_or(from, |a| a.saturating_add(1).max(from));
        let rows: Vec<(i64, f64)> = sqlx::query_as(
            "SELECT ts_ms, value FROM readings WHERE device_id = $1 AND key = $2 AND ts_ms >= $3 AND ts_ms < $4 \
             ORDER BY ts_ms LIMIT $5",
        )
        .bind(device_id)
        .bind(key)
        .bind(start)
        .bind(to)
        .bind(limit + 1)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let more = rows.len() as i64 > limit;
        let points: Vec<Point> = rows
            .into_iter()
            .take(limit as usize)
            .map(|(ts, value)| Point { ts, value })
            .collect();
        Ok(RawPage {
            key: key.to_owned(),
            next_after: if more {
                points.last().map(|p| p.ts)
            } else {
                None
            },
            points,
        })
    }

    /// avg/min/max/sum/count of one key per `interval_ms` bucket in `[from, to)`; buckets are
    /// aligned to the epoch (so hourly buckets start on the hour, UTC).
    pub async fn aggregate(
        &self,
        device_id: &str,
        key: &str,
        from: i64,
        to: i64,
        interval_ms: i64,
    ) -> Result<Vec<Bucket>, Problem> {
        let rows: Vec<(i64, f64, f64, f64, f64, i64)> = sqlx::query_as(
            "SELECT (ts_ms / $1) * $1 AS bucket, AVG(value), MIN(value), MAX(value), SUM(value), COUNT(*) \
             FROM readings WHERE device_id = $2 AND key = $3 AND ts_ms >= $4 AND ts_ms < $5 \
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(interval_ms)
        .bind(device_id)
        .bind(key)
        .bind(from)
        .bind(to)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut buckets: std::collections::BTreeMap<i64, Bucket> = rows
            .into_iter()
            .map(|(start, avg, min, max, sum, count)| {
                (
                    start,
                    Bucket {
                        start,
                        avg,
                        min,
                        max,
                        sum,
                        count,
                    },
                )
            })
            .collect();
        // Where retention removed raw data, the coarsest rollup that divides the interval
        // fills in (raw and rollups never cover the same time).
        let rollup = crate::retention::ROLLUP_INTERVALS_S
            .iter()
            .rev()
            .copied()
            .find(|s| interval_ms % (s * 1000) == 0);
        if let Some(rollup_s) = rollup {
            let rolled: Vec<(i64, f64, f64, f64, i64)> = sqlx::query_as(
                "SELECT (bucket_ms / $1) * $1 AS bucket, MIN(min_value), MAX(max_value), SUM(sum_value), CAST(SUM(count_value) AS BIGINT) \
                 FROM readings_rollup WHERE device_id = $2 AND key = $3 AND interval_s = $4 AND bucket_ms >= $5 AND bucket_ms < $6 \
                 GROUP BY bucket ORDER BY bucket",
            )
            .bind(interval_ms)
            .bind(device_id)
            .bind(key)
            .bind(rollup_s)
            .bind(from)
            .bind(to)
            .fetch_all(self.db.pool())
            .await
            .db()?;
            for (start, min, max, sum, count) in rolled {
                buckets
                    .entry(start)
                    .or_insert_with(|| Bucket::empty(start))
                    .absorb(min, max, sum, count);
            }
        }
        Ok(buckets.into_values().collect())
    }
}
