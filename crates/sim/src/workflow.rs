//! Simulated people: citizens filing Open311 requests, department operators and grid workers
//! moving cases through the workflow API.

use crate::city::{Fleet, pick_district, point_in};
use crate::{Api, SimConfig, SimStats, count};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use yunnao_governance::workflow::{Action, Actor, State};

/// The simulator's accounts, signed in.
pub(crate) struct Crew {
    centre: Api,
    /// Department code → an operator of it.
    operators: HashMap<String, Api>,
    /// Username → grid worker.
    workers: HashMap<String, Api>,
    seed: u64,
}

const DEPARTMENTS: [&str; 10] = [
    "water",
    "city-management",
    "transport",
    "police",
    "ecology",
    "housing",
    "market",
    "emergency",
    "landscape-forestry",
    "power-supply",
];

pub(crate) async fn account(
    admin: &Api,
    username: &str,
    department: &str,
    role: &str,
    password: &str,
) -> anyhow::Result<()> {
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/v1/users",
            Some(
                json!({"username": username, "display_name": format!("模拟{username}"),
                        "password": password, "department": department, "roles": [role]}),
            ),
        )
        .await?;
    if status != 201 && status != 409 {
        anyhow::bail!("creating {username}: {status} {body}");
    }
    Ok(())
}

impl Crew {
    pub async fn enlist(
        admin: &Api,
        client: &reqwest::Client,
        config: &SimConfig,
    ) -> anyhow::Result<Crew> {
        let password = &config.account_password;
        account(admin, "sim.centre", "city-management", "operator", password).await?;
        let centre = Api::sign_in(client, &config.target, "sim.centre", password).await?;
        let mut operators = HashMap::new();
        for department in DEPARTMENTS {
            let username = format!("sim.op.{department}");
            account(admin, &username, department, "operator", password).await?;
            match Api::sign_in(client, &config.target, &username, password).await {
                Ok(api) => {
                    operators.insert(department.to_owned(), api);
                }
                Err(e) => tracing::warn!(error = %e, "simulated operator unavailable"),
            }
        }
        let (_, coverage) = admin
            .call(Method::GET, "/api/v1/governance/grid/coverage", None)
            .await?;
        let mut workers = HashMap::new();
        for district in coverage["districts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let Some(code) = district["code"].as_str() else {
                continue;
            };
            let username = format!("sim.gw.{code}");
            account(admin, &username, "city-management", "grid_worker", password).await?;
            admin
                .call(
                    Method::PUT,
                    &format!("/api/v1/governance/grid-workers/{username}"),
                    Some(json!({"grids": [code]})),
                )
                .await?;
            if let Ok(api) = Api::sign_in(client, &config.target, &username, password).await {
                workers.insert(username, api);
            }
        }
        Ok(Crew {
            centre,
            operators,
            workers,
            seed: config.seed,
        })
    }

    /// 0..100, fixed per incident and seed: decides its fate.
    fn fate(&self, id: &str) -> u64 {
        let mut h = self.seed ^ 0xcbf2_9ce4_8422_2325;
        for b in id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h % 100
    }
}

/// What citizens report, with what they write.
const REQUESTS: [(&str, &str); 8] = [
    ("E0102", "路边有垃圾堆放，无人清理"),
    ("E0104", "道路上有油污和杂物"),
    ("E0201", "电线杆上贴满小广告"),
    ("E0506", "共享单车乱停放，堵住人行道"),
    ("C0117", "路灯晚上不亮"),
    ("E0301", "夜间施工噪音扰民"),
    ("E0404", "下水道堵塞，污水外溢"),
    ("C0402", "行道树倒伏"),
];

pub(crate) async fn run_citizens(
    admin: Api,
    fleet: Fleet,
    config: SimConfig,
    stats: Arc<SimStats>,
) -> anyhow::Result<()> {
    let (status, client) = admin
        .call(
            Method::POST,
            "/api/v1/api-clients",
            Some(json!({"name": "模拟市民App", "department": "bigdata", "scopes": ["open311:write"]})),
        )
        .await?;
    if status != 201 {
        anyhow::bail!("citizen app client: {status} {client}");
    }
    let key = client["api_key"].as_str().unwrap_or_default().to_owned();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x0c17_1e25);
    // Small: one report about every 10 s; city: one every 5 s on average (about 17,000 a day,
    // the order of Qingdao's 12345 hotline).
    let chance = match config.scale {
        crate::Scale::Small => 0.05,
        crate::Scale::City => 0.1,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if !rng.random_bool(chance) {
            continue;
        }
        let district = pick_district(&mut rng);
        let (lon, lat) = point_in(&fleet.districts[district], &mut rng);
        let (service, text) = REQUESTS[rng.random_range(0..REQUESTS.len())];
        let form = [
            ("api_key", key.clone()),
            ("service_code", service.to_owned()),
            ("lat", lat.to_string()),
            ("long", lon.to_string()),
            ("description", format!("[模拟] {text}")),
            (
                "address_string",
                format!("{}某处", fleet.districts[district].name),
            ),
        ];
        match admin
            .client
            .post(format!("{}/open311/v2/requests.json", admin.base))
            .form(&form)
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 201 => count(&stats.reports_filed, 1),
            Ok(r) => {
                count(&stats.errors, 1);
                tracing::warn!(status = %r.status(), "simulated Open311 request refused");
            }
            Err(e) => {
                count(&stats.errors, 1);
                tracing::warn!(error = %e, "simulated Open311 request not sent");
            }
        }
    }
}

/// Every 5 s: departments accept and complete their cases, grid workers check them. About one
/// case in eight is left alone and runs overdue; one check in ten sends the work back.
pub(crate) async fn run_cases(
    crew: Crew,
    config: SimConfig,
    stats: Arc<SimStats>,
) -> anyhow::Result<()> {
    let mut seen: HashMap<(String, String), Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let pace = config.interval_factor.clamp(0.05, 1.0);
    loop {
        tick.tick().await;
        for state in [State::Dispatched, State::Handling, State::Verification] {
            let state = state.as_str();
            let (status, page) = crew
                .centre
                .call(
                    Method::GET,
                    &format!("/api/v1/governance/incidents?state={state}&limit=200"),
                    None,
                )
                .await?;
            if status != 200 {
                count(&stats.errors, 1);
                continue;
            }
            for incident in page["items"].as_array().cloned().unwrap_or_default() {
                let Some(id) = incident["id"].as_str() else {
                    continue;
                };
                let fate = crew.fate(id);
                if fate < 12 {
                    continue;
                }
                let first = *seen
                    .entry((id.to_owned(), state.to_owned()))
                    .or_insert_with(Instant::now);
                // 30 s to 3 min per step at the demo's pace (scaled with the reporting intervals).
                let wait = Duration::from_secs_f64((30.0 + fate as f64 * 1.5) * pace);
                if first.elapsed() < wait {
                    continue;
                }
                let department = incident["department"].as_str().unwrap_or_default();
                let (action, comment) = match state {
                    "dispatched" => (Action::Accept, "已安排人员赶赴现场"),
                    "handling" => (Action::Complete, "已处置完毕，请核查"),
                    _ if fate % 10 == 3 && incident["rework_count"] == 0 => {
                        (Action::Rework, "现场核查未通过，请返工")
                    }
                    _ => (Action::Close, "现场核查通过，结案"),
                };
                // Whoever the workflow says takes the step.
                let actor = match action.step().by {
                    Actor::Handler => crew.operators.get(department),
                    Actor::Verifier => incident["grid_worker"]
                        .as_str()
                        .and_then(|w| crew.workers.get(w))
                        .or(Some(&crew.centre)),
                    Actor::Centre => Some(&crew.centre),
                };
                let action = action.as_str();
                let Some(actor) = actor else {
                    continue;
                };
                let (status, body) = actor
                    .call(
                        Method::POST,
                        &format!("/api/v1/governance/incidents/{id}/transitions"),
                        Some(json!({"action": action, "comment": comment})),
                    )
                    .await?;
                if status == 200 {
                    count(&stats.steps_taken, 1);
                } else {
                    count(&stats.errors, 1);
                    tracing::debug!(%status, %body, "simulated step refused");
                }
            }
        }
        // Forget cases that moved on.
        if seen.len() > 100_000 {
            seen.clear();
        }
    }
}

/// Departments report progress on the plan's targets the platform does not measure: about
/// three in four such targets get a report (value, today's date, evidence) from their first
/// responsible department, sealed by the server with that department's e-seal. Targets that
/// already have a report are left alone, so a second run adds nothing.
pub(crate) async fn report_progress(
    admin: &Api,
    client: &reqwest::Client,
    config: &SimConfig,
    stats: &SimStats,
) -> anyhow::Result<()> {
    let (status, targets) = admin
        .call(Method::GET, "/api/v1/plan/targets", None)
        .await?;
    if status != 200 {
        anyhow::bail!("plan targets: {status} {targets}");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x091a_2022);
    let today = (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d")
        .to_string();
    let mut reporters: HashMap<String, Api> = HashMap::new();
    for target in targets.as_array().into_iter().flatten() {
        // Drawn for every target, so the choice of targets does not depend on earlier runs.
        let report = rng.random_bool(0.75);
        let share = rng.random_range(0.55..1.1);
        let department = target["responsible_departments"][0].as_str();
        let (Some(id), Some(department)) = (target["id"].as_str(), department) else {
            continue;
        };
        if !report || !target["measured_by"].is_null() || !target["report"].is_null() {
            continue;
        }
        let reporter = match reporters.get(department) {
            Some(api) => api.clone(),
            None => {
                let username = format!("sim.plan.{department}");
                account(
                    admin,
                    &username,
                    department,
                    "operator",
                    &config.account_password,
                )
                .await?;
                let api = Api::sign_in(client, &config.target, &username, &config.account_password)
                    .await?;
                reporters.insert(department.to_owned(), api.clone());
                api
            }
        };
        let goal = target["target"].as_f64().unwrap_or(0.0);
        let value = if target["unit"] == "%" {
            (goal * share).min(100.0)
        } else {
            goal * share
        };
        let value = (value * 10.0).round() / 10.0;
        let (status, body) = reporter
            .call(
                Method::POST,
                &format!("/api/v1/plan/targets/{id}/reports"),
                Some(json!({
                    "value": value,
                    "as_of": today,
                    "evidence": format!("[模拟] {department} 关于“{}”的进展报告", target["metric_zh"].as_str().unwrap_or_default()),
                })),
            )
            .await?;
        if status == 201 {
            count(&stats.progress_reports, 1);
        } else {
            tracing::warn!(id, status, %body, "simulated progress report refused");
        }
    }
    Ok(())
}
