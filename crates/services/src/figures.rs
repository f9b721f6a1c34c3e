//! The approval bureau's figures: applications per service and department, the on-time rate,
//! average working days to conclude, 可网办率, materials that licence reuse spared applicants,
//! and what the policies paid.

use crate::applications::{MaterialUse, SharedCalendar};
use crate::catalogue::{ApplicationPlan, Catalogue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use yunnao_core::Problem;
use yunnao_store::{Db, DbResultExt, sqlx};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CountRow {
    pub key: String,
    pub name_zh: String,
    pub applications: i64,
    pub concluded: i64,
    pub approved: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PolicyPaid {
    pub policy_code: String,
    pub name_zh: String,
    pub budget_yuan: i64,
    pub spent_yuan: i64,
    pub grants: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ServiceFigures {
    pub applications: i64,
    pub in_progress: i64,
    pub concluded: i64,
    /// Concluded within the promised limit, percent of concluded.
    pub on_time_pct: f64,
    /// Working days from submission to conclusion, the clock's stops left out.
    pub average_working_days: f64,
    pub overdue_open: i64,
    /// 可网办率 of the catalogue.
    pub online_rate_pct: f64,
    /// Materials taken from the licence library instead of asked for.
    pub materials_from_licences: i64,
    pub materials_uploaded: i64,
    pub licences_issued: i64,
    pub by_service: Vec<CountRow>,
    pub by_department: Vec<CountRow>,
    pub by_channel: BTreeMap<String, i64>,
    pub policies: Vec<PolicyPaid>,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    String,
);

pub async fn figures(
    db: &Db,
    catalogue: &Catalogue,
    calendar: &SharedCalendar,
    ledger: Vec<(String, i64, i64, i64)>,
    policy_names: &BTreeMap<String, String>,
) -> Result<ServiceFigures, Problem> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT service_code, state, channel, plan_json, materials_json, created_at_ms, concluded_at_ms, overdue_at_ms, used_minutes, results_json \
         FROM svc_applications ORDER BY created_at_ms DESC LIMIT 200000",
    )
    .fetch_all(db.pool())
    .await
    .db()?;
    let calendar = calendar.read().map(|c| c.clone()).unwrap_or_default();
    let per_day = calendar.working_minutes_per_day().max(1) as f64;
    let mut f = ServiceFigures {
        online_rate_pct: catalogue.online_rate_pct(),
        ..ServiceFigures::default()
    };
    let mut services: BTreeMap<String, CountRow> = BTreeMap::new();
    let mut departments: BTreeMap<String, CountRow> = BTreeMap::new();
    let (mut on_time, mut days_total) = (0i64, 0f64);
    for (code, state, channel, plan, materials, created, concluded, overdue, _used, results) in rows
    {
        f.applications += 1;
        *f.by_channel.entry(channel).or_default() += 1;
        let plan: Option<ApplicationPlan> = serde_json::from_str(&plan).ok();
        let (name, department) = plan
            .map(|p| (p.name_zh, p.department))
            .unwrap_or_else(|| (code.clone(), String::new()));
        let done = matches!(state.as_str(), "approved" | "rejected");
        for (map, key, label) in [
            (&mut services, code.clone(), name.clone()),
            (&mut departments, department.clone(), department.clone()),
        ] {
            let row = map.entry(key.clone()).or_insert_with(|| CountRow {
                key,
                name_zh: label,
                ..CountRow::default()
            });
            row.applications += 1;
            row.concluded += i64::from(done);
            row.approved += i64::from(state == "approved");
        }
        let materials: Vec<MaterialUse> = serde_json::from_str(&materials).unwrap_or_default();
        f.materials_from_licences +=
            materials.iter().filter(|m| m.source == "licence").count() as i64;
        f.materials_uploaded += materials.iter().filter(|m| m.source == "upload").count() as i64;
        f.licences_issued +=
            serde_json::from_str::<Vec<String>>(&results).map_or(0, |r| r.len() as i64);
        if done {
            f.concluded += 1;
            if overdue.is_none() {
                on_time += 1;
            }
            if let Some(end) = concluded {
                days_total += calendar.working_minutes_between(created, end) as f64 / per_day;
            }
        } else {
            f.in_progress += 1;
            f.overdue_open += i64::from(overdue.is_some());
        }
    }
    if f.concluded > 0 {
        f.on_time_pct = (1000.0 * on_time as f64 / f.concluded as f64).round() / 10.0;
        f.average_working_days = (100.0 * days_total / f.concluded as f64).round() / 100.0;
    }
    let mut by_service: Vec<CountRow> = services.into_values().collect();
    by_service.sort_by(|a, b| b.applications.cmp(&a.applications).then(a.key.cmp(&b.key)));
    by_service.truncate(50);
    f.by_service = by_service;
    let mut by_department: Vec<CountRow> = departments.into_values().collect();
    by_department.sort_by(|a, b| b.applications.cmp(&a.applications).then(a.key.cmp(&b.key)));
    f.by_department = by_department;
    f.policies = ledger
        .into_iter()
        .map(|(code, budget, spent, grants)| PolicyPaid {
            name_zh: policy_names.get(&code).cloned().unwrap_or_default(),
            policy_code: code,
            budget_yuan: budget,
            spent_yuan: spent,
            grants,
        })
        .collect();
    Ok(f)
}
