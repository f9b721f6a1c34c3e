//! Plan supervision (督导考核): the Digital Qingdao 2022 Action Plan's 46 items and 47 numeric
//! targets. A target the platform measures itself is bound live ([`BINDINGS`]); every other
//! one takes its value from progress reports that a responsible department submits (value,
//! date, evidence), sealed with that department's e-seal and shown only with the seal verified.
//!
//! Status rule (the plan's targets are annual): the expected progress on a day is the share of
//! its year gone by (China Standard Time); a value at or above the target is met, at or above
//! the expected share on track, at or above 80% of it at risk, otherwise behind. A reported
//! value is judged on its own date, a live one today.

pub mod api;
mod migrations;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use yunnao_core::Problem;
use yunnao_identity::seals::{self, SealContent, SealedDocument};
use yunnao_identity::{Identity, Principal, Role};
use yunnao_store::{Db, DbResultExt, sqlx};

pub use migrations::MIGRATIONS;

/// The plan with its Chinese in Simplified characters (`scripts/plan-simplified.py`).
const PLAN_JSON: &str = include_str!("../../../data/plan/digital-qingdao-2022.zh-Hans.json");

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct PlanDoc {
    pub title: String,
    pub title_en: String,
    pub issued: String,
    pub issuer: String,
    pub issuer_en: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Part {
    pub no: u64,
    pub title_zh: String,
    pub title_en: String,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Section {
    pub no: Option<u64>,
    pub title_zh: Option<String>,
    pub title_en: Option<String>,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Item {
    pub no: u64,
    pub title_zh: String,
    pub title_en: String,
    pub responsible_units_zh: Vec<String>,
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct TargetSpec {
    pub metric_zh: String,
    pub metric_en: String,
    pub target: f64,
    /// `>=` or `=`.
    pub comparator: String,
    pub unit: String,
    pub kind: String,
    /// The target as the text states it, e.g. `30万个`.
    pub target_raw_zh: String,
}

/// One numeric target with who answers for it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
pub struct Target {
    /// `{item}.{n}`, e.g. `16.1`.
    pub id: String,
    pub item: u64,
    pub item_title_zh: String,
    pub item_title_en: String,
    pub metric_zh: String,
    pub metric_en: String,
    pub target: f64,
    pub comparator: String,
    pub unit: String,
    /// The target as the text states it, e.g. `30万个`.
    pub target_raw_zh: String,
    pub responsible_units_zh: Vec<String>,
    /// The responsible units that are departments on this platform (codes): they may report.
    pub responsible_departments: Vec<String>,
}

/// What the platform counts itself, gathered once per computation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
pub struct LiveFigures {
    pub devices: i64,
    pub online: i64,
    /// Devices per profile code.
    pub by_profile: BTreeMap<String, i64>,
    /// Unit-grid area over district area, percent.
    pub grid_coverage_pct: f64,
    /// API clients not revoked (scenario applications connected).
    pub api_clients: i64,
    /// 可网办率: services of the catalogue handled fully online, percent.
    #[serde(default)]
    pub online_rate_pct: f64,
    /// 一码通城: scenarios with an accepted scan in the last 7 days, and scans today.
    #[serde(default)]
    pub code_scenarios_live: i64,
    #[serde(default)]
    pub code_scans_today: i64,
    /// Scenario apps (API clients) with a live marketplace subscription.
    #[serde(default)]
    pub scenario_apps: i64,
}

/// A target the platform measures: (item, `metric_en` prefix) → its value.
pub struct Binding {
    pub item: u64,
    pub metric_en: &'static str,
    pub source_zh: &'static str,
    pub source_en: &'static str,
    pub value: fn(&LiveFigures) -> f64,
}

fn profile(live: &LiveFigures, code: &str) -> f64 {
    live.by_profile.get(code).copied().unwrap_or(0) as f64
}

pub const BINDINGS: &[Binding] = &[
    Binding {
        item: 3,
        metric_en: "Newly connected application",
        source_zh: "平台实时: 在能力服务超市有有效订阅的场景应用数",
        source_en: "live: scenario apps with a live subscription in the capability marketplace",
        value: |l| l.scenario_apps as f64,
    },
    Binding {
        item: 5,
        metric_en: "Networking",
        source_zh: "平台实时: 在线设备/接入设备",
        source_en: "live: devices online / connected",
        value: |l| {
            if l.devices == 0 {
                0.0
            } else {
                (1000.0 * l.online as f64 / l.devices as f64).round() / 10.0
            }
        },
    },
    Binding {
        item: 6,
        metric_en: "Online-handling rate",
        source_zh: "平台实时: 事项库中全程网办事项占比(可网办率)",
        source_en: "live: services of the catalogue handled fully online",
        value: |l| l.online_rate_pct,
    },
    Binding {
        item: 7,
        metric_en: "One-code application",
        source_zh: "平台实时: 近7日有核验通过的一码通城应用场景数",
        source_en: "live: one-code scenarios with an accepted scan in the last 7 days",
        value: |l| l.code_scenarios_live as f64,
    },
    Binding {
        item: 11,
        metric_en: "Grid-based",
        source_zh: "平台实时: 单元网格面积覆盖率",
        source_en: "live: unit-grid area coverage",
        value: |l| l.grid_coverage_pct,
    },
    Binding {
        item: 16,
        metric_en: "On-street",
        source_zh: "平台实时: 接入泊位地磁数",
        source_en: "live: parking-space sensors connected",
        value: |l| profile(l, "parking-space"),
    },
    Binding {
        item: 36,
        metric_en: "Total IoT",
        source_zh: "平台实时: 接入物联网终端数",
        source_en: "live: IoT terminals connected",
        value: |l| l.devices as f64,
    },
    Binding {
        item: 39,
        metric_en: "EV charging",
        source_zh: "平台实时: 接入充电桩数",
        source_en: "live: EV chargers connected",
        value: |l| profile(l, "ev-charger"),
    },
    Binding {
        item: 40,
        metric_en: "New smart lamp",
        source_zh: "平台实时: 接入智慧灯杆数",
        source_en: "live: smart lamp posts connected",
        value: |l| profile(l, "smart-lamp-post"),
    },
];

impl Target {
    /// Whether `principal` may report on this target: staff (administrators, operators, or an
    /// API client with `plan:write`) of a department the plan names as responsible.
    pub fn may_report(&self, principal: &Principal) -> Result<(), Problem> {
        let allowed_role = principal.has_role(Role::DeptAdmin)
            || principal.has_role(Role::Operator)
            || principal.has_role(Role::PlatformAdmin)
            || principal.has_scope("plan:write");
        if !allowed_role {
            return Err(Problem::forbidden(
                "progress reports are submitted by a department's administrators or operators",
            ));
        }
        if !self.responsible_departments.contains(&principal.department) {
            return Err(Problem::forbidden(format!(
                "{} is not a responsible unit of target {} (responsible: {})",
                principal.department,
                self.id,
                self.responsible_units_zh.join("、")
            )));
        }
        Ok(())
    }

    pub fn binding(&self) -> Option<&'static Binding> {
        BINDINGS
            .iter()
            .find(|b| b.item == self.item && self.metric_en.starts_with(b.metric_en))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    OnTrack,
    AtRisk,
    Behind,
    /// Not measured by the platform and no verified report yet.
    Awaiting,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::OnTrack => "on_track",
            Status::AtRisk => "at_risk",
            Status::Behind => "behind",
            Status::Awaiting => "awaiting",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
pub struct Source {
    pub zh: String,
    pub en: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
pub struct TargetStatus {
    #[serde(flatten)]
    pub target: Target,
    /// Set when the platform measures this target itself.
    pub measured_by: Option<Source>,
    pub current: Option<f64>,
    /// Current over target, percent (capped at 100 for the bar, not here).
    pub progress_pct: Option<f64>,
    /// The share of the year gone by on the day judged, percent.
    pub expected_pct: Option<f64>,
    pub status: Status,
    /// The newest report with a verified seal.
    pub report: Option<Report>,
}

/// A progress report as stored: the sealed document and whether its seal verifies now.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
pub struct Report {
    pub id: String,
    pub target: String,
    pub department: String,
    pub value: f64,
    /// `YYYY-MM-DD`, the day the value stands for.
    pub as_of: String,
    pub evidence: String,
    pub reported_by: String,
    pub reported_at: String,
    pub sealed: SealedDocument,
    pub seal_verified: bool,
    /// Why the seal does not verify, when it does not.
    pub seal_problem: Option<String>,
}

/// A department's progress report on one target.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReport {
    pub value: f64,
    /// `YYYY-MM-DD`: the day the value stands for; not in the future, not before 2022.
    pub as_of: String,
    /// What backs the value: a document number, a link, a short description (1–2,000 chars).
    pub evidence: String,
}

#[derive(Clone)]
pub struct Plan {
    db: Db,
    identity: Identity,
    sensing: yunnao_sensing::Sensing,
    governance: yunnao_governance::Governance,
    catalogue: yunnao_services::versions::CatalogueStore,
    codes: yunnao_codes::hub::Codes,
    data: yunnao_data::Catalogue,
    doc: Arc<PlanDoc>,
    targets: Arc<Vec<Target>>,
    /// The grid is fixed at start, so its area coverage is computed once.
    coverage: Arc<tokio::sync::OnceCell<f64>>,
    /// Verdicts by a fingerprint of the whole stored row, so an unchanged report is verified
    /// once and a changed row is verified again.
    verdicts: Arc<Mutex<HashMap<u64, Option<String>>>>,
}

/// Today's date in China Standard Time.
pub fn today_cst() -> NaiveDate {
    chrono::Utc::now()
        .with_timezone(&yunnao_governance::calendar::cst())
        .date_naive()
}

/// The share of `day`'s year gone by at its end, 0–1.
pub fn expected_share(day: NaiveDate) -> f64 {
    let year_days = if NaiveDate::from_ymd_opt(day.year(), 2, 29).is_some() {
        366.0
    } else {
        365.0
    };
    (f64::from(day.ordinal()) / year_days).min(1.0)
}

/// The status of `value` against `target` judged on `day`.
pub fn judge(value: f64, target: f64, day: NaiveDate) -> (Status, f64, f64) {
    let progress = if target > 0.0 { value / target } else { 1.0 };
    let expected = expected_share(day);
    let status = if progress >= 1.0 {
        Status::Met
    } else if progress >= expected {
        Status::OnTrack
    } else if progress >= 0.8 * expected {
        Status::AtRisk
    } else {
        Status::Behind
    };
    (
        status,
        (progress * 1000.0).round() / 10.0,
        (expected * 1000.0).round() / 10.0,
    )
}

fn plan_doc() -> Result<PlanDoc, String> {
    serde_json::from_str(PLAN_JSON).map_err(|e| format!("the embedded plan is malformed: {e}"))
}

impl Plan {
    pub async fn start(
        db: Db,
        identity: Identity,
        sensing: yunnao_sensing::Sensing,
        governance: yunnao_governance::Governance,
        catalogue: yunnao_services::versions::CatalogueStore,
        codes: yunnao_codes::hub::Codes,
        data: yunnao_data::Catalogue,
    ) -> Result<Plan, Problem> {
        let doc = plan_doc().map_err(Problem::internal)?;
        let departments = identity.departments().await?;
        let mut targets = Vec::new();
        for item in doc
            .parts
            .iter()
            .flat_map(|p| &p.sections)
            .flat_map(|s| &s.items)
        {
            let responsible_departments: Vec<String> = item
                .responsible_units_zh
                .iter()
                .filter_map(|unit| {
                    departments
                        .iter()
                        .find(|d| d.name_zh == *unit)
                        .map(|d| d.code.clone())
                })
                .collect();
            for (n, spec) in item.targets.iter().enumerate() {
                targets.push(Target {
                    id: format!("{}.{}", item.no, n + 1),
                    item: item.no,
                    item_title_zh: item.title_zh.clone(),
                    item_title_en: item.title_en.clone(),
                    metric_zh: spec.metric_zh.clone(),
                    metric_en: spec.metric_en.clone(),
                    target: spec.target,
                    comparator: spec.comparator.clone(),
                    unit: spec.unit.clone(),
                    target_raw_zh: spec.target_raw_zh.clone(),
                    responsible_units_zh: item.responsible_units_zh.clone(),
                    responsible_departments: responsible_departments.clone(),
                });
            }
        }
        Ok(Plan {
            db,
            identity,
            sensing,
            governance,
            catalogue,
            codes,
            data,
            doc: Arc::new(doc),
            targets: Arc::new(targets),
            coverage: Arc::new(tokio::sync::OnceCell::new()),
            verdicts: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn doc(&self) -> &PlanDoc {
        &self.doc
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    pub fn target(&self, id: &str) -> Result<&Target, Problem> {
        self.targets
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Problem::not_found(format!("the plan has no target {id:?}")))
    }

    /// The unit grids' share of the districts' area, percent (computed once).
    pub async fn grid_coverage_pct(&self) -> Result<f64, Problem> {
        let grid = self.governance.grid.clone();
        self.coverage
            .get_or_try_init(|| async move {
                let districts = tokio::task::spawn_blocking(move || grid.coverage(|_| false))
                    .await
                    .map_err(|e| Problem::internal(e.to_string()))?;
                let area: f64 = districts.iter().map(|d| d.area_m2).sum();
                let covered: f64 = districts.iter().map(|d| d.grid_area_m2).sum();
                Ok::<f64, Problem>(((covered / area.max(1.0)) * 10_000.0).round() / 100.0)
            })
            .await
            .copied()
    }

    /// What the platform counts now (one scan of the device table).
    pub async fn measure(&self) -> Result<LiveFigures, Problem> {
        let summary = self.sensing.summary().await?;
        let codes = self.codes.figures(None).await?;
        Ok(LiveFigures {
            devices: summary.devices,
            online: summary.online,
            by_profile: summary
                .by_profile
                .iter()
                .map(|(code, devices, _)| (code.clone(), *devices))
                .collect(),
            grid_coverage_pct: self.grid_coverage_pct().await?,
            api_clients: self.identity.active_api_clients().await?,
            online_rate_pct: self.catalogue.current().online_rate_pct(),
            code_scenarios_live: codes.live_scenarios,
            code_scans_today: codes.scans_today,
            scenario_apps: self.data.live_scenario_apps().await?,
        })
    }

    /// Every target with its current value, source and status.
    pub async fn statuses(&self, live: &LiveFigures) -> Result<Vec<TargetStatus>, Problem> {
        let latest = self.latest_verified_reports().await?;
        let today = today_cst();
        Ok(self
            .targets
            .iter()
            .map(|target| {
                if let Some(binding) = target.binding() {
                    let value = (binding.value)(live);
                    let (status, progress, expected) = judge(value, target.target, today);
                    TargetStatus {
                        target: target.clone(),
                        measured_by: Some(Source {
                            zh: binding.source_zh.to_owned(),
                            en: binding.source_en.to_owned(),
                        }),
                        current: Some(value),
                        progress_pct: Some(progress),
                        expected_pct: Some(expected),
                        status,
                        report: latest.get(&target.id).cloned(),
                    }
                } else if let Some(report) = latest.get(&target.id) {
                    let day = NaiveDate::parse_from_str(&report.as_of, "%Y-%m-%d").unwrap_or(today);
                    let (status, progress, expected) = judge(report.value, target.target, day);
                    TargetStatus {
                        target: target.clone(),
                        measured_by: None,
                        current: Some(report.value),
                        progress_pct: Some(progress),
                        expected_pct: Some(expected),
                        status,
                        report: Some(report.clone()),
                    }
                } else {
                    TargetStatus {
                        target: target.clone(),
                        measured_by: None,
                        current: None,
                        progress_pct: None,
                        expected_pct: None,
                        status: Status::Awaiting,
                        report: None,
                    }
                }
            })
            .collect())
    }

    /// Seals and stores a progress report from one of the target's responsible departments.
    pub async fn submit(
        &self,
        principal: &Principal,
        target_id: &str,
        report: NewReport,
    ) -> Result<Report, Problem> {
        let target = self.target(target_id)?.clone();
        target.may_report(principal)?;
        if !report.value.is_finite() {
            return Err(Problem::validation("value must be a finite number"));
        }
        let day = NaiveDate::parse_from_str(&report.as_of, "%Y-%m-%d").map_err(|_| {
            Problem::validation(format!(
                "as_of {:?} is not a date (YYYY-MM-DD)",
                report.as_of
            ))
        })?;
        if day > today_cst() {
            return Err(Problem::validation(format!(
                "as_of {} is in the future",
                report.as_of
            )));
        }
        if day.year() < 2022 {
            return Err(Problem::validation(format!(
                "as_of {} is before the plan (2022)",
                report.as_of
            )));
        }
        let evidence = report.evidence.trim();
        if evidence.is_empty() || evidence.chars().count() > 2000 {
            return Err(Problem::validation(
                "evidence is required: 1 to 2,000 characters",
            ));
        }
        let id = yunnao_core::new_id();
        let now = yunnao_core::time::now_ms();
        let document = serde_json::json!({
            "type": "yunnao.plan.progress-report",
            "id": id,
            "plan": self.doc.title,
            "target": target.id,
            "metric": target.metric_zh,
            "target_value": target.target,
            "unit": target.unit,
            "value": report.value,
            "as_of": day.format("%Y-%m-%d").to_string(),
            "evidence": evidence,
            "department": principal.department,
            "reported_by": principal.name,
        });
        let sealed = seals::seal(
            &self.identity,
            &principal.department,
            SealContent {
                document: Some(document),
                content_base64: None,
            },
        )
        .await?;
        let sealed_json =
            serde_json::to_string(&sealed).map_err(|e| Problem::internal(e.to_string()))?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO plan_reports (id, target_id, department_code, value, as_of, evidence, reported_by, reported_at_ms, sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&target.id)
        .bind(&principal.department)
        .bind(report.value)
        .bind(day.format("%Y-%m-%d").to_string())
        .bind(evidence)
        .bind(&principal.name)
        .bind(now)
        .bind(&sealed_json)
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
        let row = ReportRow {
            id,
            target_id: target.id,
            department_code: principal.department.clone(),
            value: report.value,
            as_of: day.format("%Y-%m-%d").to_string(),
            evidence: evidence.to_owned(),
            reported_by: principal.name.clone(),
            reported_at_ms: now,
            sealed: sealed_json,
        };
        self.checked(row).await
    }

    /// A target's reports, newest first, each with its seal checked.
    pub async fn reports(&self, target_id: &str) -> Result<Vec<Report>, Problem> {
        let target = self.target(target_id)?;
        let rows: Vec<ReportRow> = sqlx::query_as(
            "SELECT id, target_id, department_code, value, as_of, evidence, reported_by, reported_at_ms, sealed \
             FROM plan_reports WHERE target_id = $1 ORDER BY reported_at_ms DESC, id DESC",
        )
        .bind(&target.id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.checked(row).await?);
        }
        Ok(out)
    }

    /// The newest report of each target whose seal verifies (a report that does not verify is
    /// never shown as the target's value).
    async fn latest_verified_reports(&self) -> Result<HashMap<String, Report>, Problem> {
        let rows: Vec<ReportRow> = sqlx::query_as(
            "SELECT id, target_id, department_code, value, as_of, evidence, reported_by, reported_at_ms, sealed \
             FROM plan_reports ORDER BY target_id, reported_at_ms DESC, id DESC",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut out: HashMap<String, Report> = HashMap::new();
        for row in rows {
            if out.contains_key(&row.target_id) {
                continue;
            }
            let report = self.checked(row).await?;
            if report.seal_verified {
                out.insert(report.target.clone(), report);
            }
        }
        Ok(out)
    }

    async fn checked(&self, row: ReportRow) -> Result<Report, Problem> {
        let sealed: SealedDocument = serde_json::from_str(&row.sealed).map_err(|e| {
            Problem::internal(format!("stored report {} is malformed: {e}", row.id))
        })?;
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (
                &row.id,
                &row.target_id,
                &row.department_code,
                row.value.to_bits(),
                &row.as_of,
                &row.sealed,
            )
                .hash(&mut hasher);
            hasher.finish()
        };
        let known = self
            .verdicts
            .lock()
            .ok()
            .and_then(|v| v.get(&fingerprint).cloned());
        let verdict = match known {
            Some(verdict) => verdict,
            None => {
                // The sealed content must also be this row's: a copied seal does not verify.
                let matches_row = sealed.content.document.as_ref().is_some_and(|d| {
                    d["id"] == row.id.as_str()
                        && d["target"] == row.target_id.as_str()
                        && d["value"].as_f64() == Some(row.value)
                        && d["as_of"] == row.as_of.as_str()
                        && d["department"] == row.department_code.as_str()
                }) && sealed.seal.department == row.department_code;
                let verdict = if matches_row {
                    seals::verify(&self.identity, &sealed)
                        .await
                        .err()
                        .map(|p| p.detail.unwrap_or(p.title))
                } else {
                    Some("the sealed document does not match the stored report".to_owned())
                };
                if let Ok(mut verdicts) = self.verdicts.lock() {
                    verdicts.insert(fingerprint, verdict.clone());
                }
                verdict
            }
        };
        Ok(Report {
            id: row.id,
            target: row.target_id,
            department: row.department_code,
            value: row.value,
            as_of: row.as_of,
            evidence: row.evidence,
            reported_by: row.reported_by,
            reported_at: yunnao_core::time::rfc3339_ms(row.reported_at_ms),
            sealed,
            seal_verified: verdict.is_none(),
            seal_problem: verdict,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ReportRow {
    id: String,
    target_id: String,
    department_code: String,
    value: f64,
    as_of: String,
    evidence: String,
    reported_by: String,
    reported_at_ms: i64,
    sealed: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_plan_has_46_items_and_47_targets_in_simplified_chinese() {
        let doc = plan_doc().expect("plan");
        let items: Vec<&Item> = doc
            .parts
            .iter()
            .flat_map(|p| &p.sections)
            .flat_map(|s| &s.items)
            .collect();
        assert_eq!(items.len(), 46);
        assert_eq!(items.iter().map(|i| i.targets.len()).sum::<usize>(), 47);
        assert_eq!(doc.title, "数字青岛2022年行动方案");
        assert_eq!(items[15].title_zh, "智慧出行");
        assert_eq!(
            items[10].targets[0].metric_zh,
            "城乡社区网格化服务管理覆盖率达100%"
        );
    }

    #[test]
    fn every_binding_names_one_target() {
        let doc = plan_doc().expect("plan");
        for binding in BINDINGS {
            let matches = doc
                .parts
                .iter()
                .flat_map(|p| &p.sections)
                .flat_map(|s| &s.items)
                .filter(|i| i.no == binding.item)
                .flat_map(|i| &i.targets)
                .filter(|t| t.metric_en.starts_with(binding.metric_en))
                .count();
            assert_eq!(matches, 1, "binding for item {}", binding.item);
        }
    }

    #[test]
    fn status_follows_the_share_of_the_year() {
        let mid_year = NaiveDate::from_ymd_opt(2022, 7, 2).expect("date"); // day 183 of 365
        let cases = [
            (100.0, Status::Met),
            (60.0, Status::OnTrack),
            (45.0, Status::AtRisk),
            (30.0, Status::Behind),
        ];
        for (value, expected) in cases {
            assert_eq!(judge(value, 100.0, mid_year).0, expected, "value {value}");
        }
        let year_end = NaiveDate::from_ymd_opt(2022, 12, 31).expect("date");
        assert_eq!(judge(99.0, 100.0, year_end).0, Status::AtRisk);
        assert_eq!(judge(50.0, 100.0, year_end).2, 100.0);
    }
}
