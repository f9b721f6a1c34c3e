//! Monitoring and evaluation (共享应用监测, 效能评价): per dataset, requests and the time to
//! decide them, reads, rows served, freshness against the stated update frequency and the
//! quality measured on import (completeness, validity, uniqueness) with timeliness computed
//! each minute; staleness alerts, raised and cleared by the minute's check; and a ranking of
//! departments by data supplied and used.

use crate::Catalogue;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use yunnao_core::Problem;
use yunnao_identity::Principal;
use yunnao_store::Arg;

const DAY_MS: i64 = 86_400_000;

/// (dataset, owner, consumer, outcome, reads, rows, bytes, fields) summed.
type ReadRow = (String, String, String, String, i64, i64, i64, i64);

/// How long a dataset of each frequency stays fresh; `None`: no deadline.
pub fn period_ms(frequency: &str) -> Option<i64> {
    Some(match frequency {
        "realtime" => DAY_MS / 24,
        "daily" => DAY_MS,
        "weekly" => 7 * DAY_MS,
        "monthly" => 31 * DAY_MS,
        "quarterly" => 92 * DAY_MS,
        "yearly" => 366 * DAY_MS,
        _ => return None,
    })
}

/// Timeliness from 0 to 1: 1 within the period, falling to 0 at three periods.
pub fn timeliness(frequency: &str, age_ms: i64) -> f64 {
    match period_ms(frequency) {
        None => 1.0,
        Some(p) if age_ms <= p => 1.0,
        Some(p) => ((3 * p - age_ms) as f64 / (2 * p) as f64).clamp(0.0, 1.0),
    }
}

/// Stale: older than twice its period (a day's grace for a daily dataset).
pub fn is_stale(frequency: &str, age_ms: i64) -> bool {
    period_ms(frequency).is_some_and(|p| age_ms > 2 * p)
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DatasetFigures {
    pub dataset: String,
    pub title_zh: String,
    pub department: String,
    pub sharing: String,
    pub level: String,
    pub frequency: String,
    pub version: Option<i64>,
    pub rows: i64,
    pub last_import: Option<String>,
    /// `fresh`, `stale`, `no-data`, `no-deadline` (irregular), or `live` (a live view).
    pub freshness: String,
    pub completeness: Option<f64>,
    pub validity: Option<f64>,
    pub uniqueness: Option<f64>,
    pub timeliness: Option<f64>,
    pub requests: i64,
    pub pending: i64,
    pub approved: i64,
    pub refused: i64,
    pub revoked: i64,
    /// Mean hours from filing to decision.
    pub mean_decision_hours: Option<f64>,
    pub reads: i64,
    pub denied_reads: i64,
    pub rows_served: i64,
    pub bytes_served: i64,
    /// Departments (and `public`) that read it.
    pub consumers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DepartmentFigures {
    pub department: String,
    pub name_zh: String,
    pub datasets: i64,
    pub fresh_datasets: i64,
    pub rows_supplied: i64,
    /// Reads of its data by other departments and the public.
    pub reads_supplied: i64,
    pub rows_served_to_others: i64,
    /// Its reads of other departments' data.
    pub reads_used: i64,
    pub rows_used: i64,
    pub requests_filed: i64,
    pub requests_received: i64,
    /// 10 a fresh dataset, 1 a read supplied, 1 a read used: what it gives and takes.
    pub score: i64,
    pub rank: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Alert {
    pub dataset: String,
    /// `stale`.
    pub kind: String,
    pub detail: String,
    pub raised_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Monitoring {
    /// Reads counted over this many days.
    pub days: i64,
    pub datasets: Vec<DatasetFigures>,
    /// Ranked, best first.
    pub departments: Vec<DepartmentFigures>,
    pub alerts: Vec<Alert>,
    pub totals: BTreeMap<String, i64>,
}

impl Catalogue {
    /// Raises an alert for each dataset gone stale, clears those fresh again.
    pub async fn check_staleness(&self) -> Result<(), Problem> {
        let now = yunnao_core::time::now_ms();
        let open: Vec<(String,)> = self
            .db
            .fetch_all(
                "SELECT dataset FROM data_alerts WHERE kind = 'stale' AND cleared_at_ms IS NULL",
                &[],
            )
            .await?;
        let open: std::collections::HashSet<String> = open.into_iter().map(|(d,)| d).collect();
        let mut raise = Vec::new();
        let mut clear = Vec::new();
        for entry in self.listed_all() {
            let d = &entry.dataset;
            let Some(version) = self.current_version(&d.id) else {
                continue;
            };
            let at = yunnao_core::time::parse_rfc3339_ms(&version.imported_at).unwrap_or(now);
            let stale = is_stale(&d.frequency, now - at);
            if stale && !open.contains(&d.id) {
                raise.push((
                    d.id.clone(),
                    format!(
                        "{} is updated {} but its last import was {}",
                        d.title_zh, d.frequency, version.imported_at
                    ),
                ));
            } else if !stale && open.contains(&d.id) {
                clear.push(d.id.clone());
            }
        }
        if raise.is_empty() && clear.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_fast_write().await?;
        for (dataset, detail) in &raise {
            tracing::warn!(dataset, "data hub: dataset is stale");
            tx.execute(
                "INSERT INTO data_alerts (dataset, kind, detail, raised_at_ms) VALUES ($1, 'stale', $2, $3)",
                &[Arg::text(dataset.as_str()), Arg::text(detail.as_str()), Arg::Int(now)],
            )
            .await?;
        }
        for dataset in &clear {
            tx.execute(
                "UPDATE data_alerts SET cleared_at_ms = $1 WHERE dataset = $2 AND kind = 'stale' AND cleared_at_ms IS NULL",
                &[Arg::Int(now), Arg::text(dataset.as_str())],
            )
            .await?;
        }
        tx.commit().await
    }

    /// The figures over the last `days` days, for the datasets the caller may see listed.
    pub async fn monitoring(
        &self,
        principal: Option<&Principal>,
        days: i64,
    ) -> Result<Monitoring, Problem> {
        let days = days.clamp(1, 366);
        let now = yunnao_core::time::now_ms();
        let since = now - days * DAY_MS;
        let requests: Vec<(String, String, String, String, i64, Option<i64>)> = self
            .db
            .fetch_all(
                "SELECT dataset, owner, consumer, status, COUNT(*), CAST(SUM(decided_at_ms - created_at_ms) AS BIGINT) \
                 FROM data_requests GROUP BY dataset, owner, consumer, status",
                &[],
            )
            .await?;
        let reads: Vec<ReadRow> = self
            .db
            .fetch_all(
                "SELECT dataset, owner, consumer, outcome, COUNT(*), CAST(SUM(row_count) AS BIGINT), CAST(SUM(bytes) AS BIGINT), CAST(SUM(field_count) AS BIGINT) \
                 FROM data_reads WHERE at_ms >= $1 GROUP BY dataset, owner, consumer, outcome",
                &[Arg::Int(since)],
            )
            .await?;
        let alerts: Vec<(String, String, String, i64)> = self
            .db
            .fetch_all(
                "SELECT dataset, kind, detail, raised_at_ms FROM data_alerts WHERE cleared_at_ms IS NULL ORDER BY raised_at_ms DESC",
                &[],
            )
            .await?;
        let names = self.department_names().await;
        let listed = self.listed(principal);
        let mut figures: BTreeMap<String, DatasetFigures> = BTreeMap::new();
        let mut departments: HashMap<String, DepartmentFigures> = HashMap::new();
        let department = |departments: &mut HashMap<String, DepartmentFigures>, code: &str| {
            departments
                .entry(code.to_owned())
                .or_insert_with(|| DepartmentFigures {
                    department: code.to_owned(),
                    name_zh: names
                        .get(code)
                        .map(|n| n.0.clone())
                        .unwrap_or_else(|| code.to_owned()),
                    ..Default::default()
                });
        };
        for entry in &listed {
            let d = &entry.dataset;
            let version = self.current_version(&d.id);
            let age = version
                .as_ref()
                .map(|v| now - yunnao_core::time::parse_rfc3339_ms(&v.imported_at).unwrap_or(now));
            let freshness = match age {
                // A live view is as fresh as its source, read at each request.
                None if d.source.is_live() => "live",
                None => "no-data",
                Some(_) if period_ms(&d.frequency).is_none() => "no-deadline",
                Some(a) if is_stale(&d.frequency, a) => "stale",
                Some(_) => "fresh",
            };
            department(&mut departments, &d.department);
            if let Some(dep) = departments.get_mut(&d.department) {
                dep.datasets += 1;
                dep.fresh_datasets +=
                    i64::from(matches!(freshness, "fresh" | "no-deadline" | "live"));
                dep.rows_supplied += version.as_ref().map_or(0, |v| v.rows);
            }
            figures.insert(
                d.id.clone(),
                DatasetFigures {
                    dataset: d.id.clone(),
                    title_zh: d.title_zh.clone(),
                    department: d.department.clone(),
                    sharing: d.sharing.clone(),
                    level: d.level.clone(),
                    frequency: d.frequency.clone(),
                    version: version.as_ref().map(|v| v.version),
                    rows: version.as_ref().map_or(0, |v| v.rows),
                    last_import: version.as_ref().map(|v| v.imported_at.clone()),
                    freshness: freshness.into(),
                    completeness: version.as_ref().map(|v| v.quality.completeness),
                    validity: version.as_ref().map(|v| v.quality.validity),
                    uniqueness: version.as_ref().map(|v| v.quality.uniqueness),
                    timeliness: age
                        .map(|a| (timeliness(&d.frequency, a) * 1000.0).round() / 1000.0),
                    ..Default::default()
                },
            );
        }
        let mut decision_ms: HashMap<String, (i64, i64)> = HashMap::new();
        for (dataset, owner, consumer, status, count, waited) in requests {
            department(&mut departments, &owner);
            department(&mut departments, &consumer);
            if let Some(d) = departments.get_mut(&owner) {
                d.requests_received += count;
            }
            if let Some(d) = departments.get_mut(&consumer) {
                d.requests_filed += count;
            }
            let Some(f) = figures.get_mut(&dataset) else {
                continue;
            };
            f.requests += count;
            match status.as_str() {
                "pending" => f.pending += count,
                "approved" => f.approved += count,
                "refused" => f.refused += count,
                _ => f.revoked += count,
            }
            if let Some(waited) = waited {
                let e = decision_ms.entry(dataset).or_default();
                e.0 += waited;
                e.1 += count;
            }
        }
        for (dataset, (ms, n)) in decision_ms {
            if let (Some(f), true) = (figures.get_mut(&dataset), n > 0) {
                f.mean_decision_hours =
                    Some(((ms as f64 / n as f64) / 3_600_000.0 * 100.0).round() / 100.0);
            }
        }
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        for (dataset, owner, consumer, outcome, count, rows, bytes, fields) in reads {
            // A public row counts many anonymous reads: their number is in `field_count`.
            let reads = if consumer == "public" { fields } else { count };
            *totals.entry("reads".into()).or_default() += reads;
            if outcome == "denied" {
                *totals.entry("denied_reads".into()).or_default() += reads;
                if let Some(f) = figures.get_mut(&dataset) {
                    f.denied_reads += reads;
                }
                continue;
            }
            *totals.entry("rows_served".into()).or_default() += rows;
            if let Some(f) = figures.get_mut(&dataset) {
                f.reads += reads;
                f.rows_served += rows;
                f.bytes_served += bytes;
                if !f.consumers.contains(&consumer) {
                    f.consumers.push(consumer.clone());
                }
            }
            if consumer != owner {
                department(&mut departments, &owner);
                if let Some(d) = departments.get_mut(&owner) {
                    d.reads_supplied += reads;
                    d.rows_served_to_others += rows;
                }
                if consumer != "public" {
                    department(&mut departments, &consumer);
                    if let Some(d) = departments.get_mut(&consumer) {
                        d.reads_used += reads;
                        d.rows_used += rows;
                    }
                }
            }
        }
        let mut departments: Vec<DepartmentFigures> = departments
            .into_values()
            .map(|mut d| {
                d.score = 10 * d.fresh_datasets + d.reads_supplied + d.reads_used;
                d
            })
            .collect();
        departments.sort_by(|a, b| b.score.cmp(&a.score).then(a.department.cmp(&b.department)));
        for (i, d) in departments.iter_mut().enumerate() {
            d.rank = i + 1;
        }
        let visible: std::collections::HashSet<&str> = figures.keys().map(String::as_str).collect();
        let alerts = alerts
            .into_iter()
            .filter(|(d, ..)| visible.contains(d.as_str()))
            .map(|(dataset, kind, detail, at)| Alert {
                dataset,
                kind,
                detail,
                raised_at: yunnao_core::time::rfc3339_ms(at),
            })
            .collect();
        totals.insert("datasets".into(), figures.len() as i64);
        totals.insert(
            "datasets_with_data".into(),
            figures.values().filter(|f| f.version.is_some()).count() as i64,
        );
        Ok(Monitoring {
            days,
            datasets: figures.into_values().collect(),
            departments,
            alerts,
            totals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_follows_the_stated_frequency() {
        assert!(!is_stale("daily", DAY_MS));
        assert!(is_stale("daily", 3 * DAY_MS));
        assert!(!is_stale("irregular", 1000 * DAY_MS));
        assert_eq!(timeliness("daily", DAY_MS / 2), 1.0);
        assert_eq!(timeliness("daily", 2 * DAY_MS), 0.5);
        assert_eq!(timeliness("daily", 5 * DAY_MS), 0.0);
        assert_eq!(timeliness("never", 5 * DAY_MS), 1.0);
    }
}
