//! The simulated city at the service hall (一网通办): residents with licences in their library
//! apply for services and “一件事” bundles, departments receive them (accept, return for
//! completion, now and then decline) and decide their steps in parallel (mostly approve),
//! returned applications are completed, and each paying department runs its policies once so
//! enterprises are paid without applying. Deterministic per seed; through the HTTP API only.

use crate::{Api, SimConfig, SimStats, count};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Departments whose staff receive or approve the services residents apply for here.
const STAFF: [&str; 9] = [
    "approval",
    "police",
    "health",
    "hrss",
    "medical-insurance",
    "civil-affairs",
    "housing-fund",
    "natural-resources",
    "finance",
];

/// Services a resident with an ID card, household register and birth certificate can apply
/// for, with the form each needs.
const APPLIED_FOR: [&str; 6] = [
    "370200-YJS-0001",
    "370200-QR-0001",
    "370200-GG-0001",
    "370200-JF-0002",
    "370200-JF-0008",
    "370200-GG-0002",
];

const PNG: [u8; 16] = [
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R',
];

/// A valid resident identity number for the `n`th simulated person (GB 11643).
pub(crate) fn person_number(n: u64) -> String {
    let stem = format!(
        "370202{}{:02}{:02}{:03}",
        1960 + n % 40,
        1 + n % 12,
        1 + n % 28,
        n % 1000
    );
    "0123456789X"
        .chars()
        .map(|c| format!("{stem}{c}"))
        .find(|candidate| yunnao_services::ids::resident_id(candidate).is_ok())
        .unwrap_or_default()
}

fn form_for(service: &str, rng: &mut ChaCha8Rng) -> Value {
    let phone = format!("13{:09}", rng.random_range(0..1_000_000_000u64));
    match service {
        "370200-YJS-0001" | "370200-GG-0001" | "370200-GG-0002" => json!({
            "phone": phone, "child_name": "模拟宝宝", "child_birth_date": "2026-11-30"}),
        "370200-JF-0002" | "370200-JF-0008" => json!({
            "phone": phone, "bank_account": format!("6222{:012}", rng.random_range(0..1_000_000_000_000u64))}),
        _ => json!({"phone": phone}),
    }
}

pub(crate) struct Hall {
    /// The demo's own resident: their applications are carried through and approved, so a
    /// person trying the demo watches the departments approve in parallel.
    demo_holder: String,
    admin: Api,
    staff: HashMap<String, Api>,
    residents: Vec<Api>,
}

async fn issue(by: &Api, holder: &str, name: &str, licence_type: &str) -> anyhow::Result<()> {
    let (status, body) = by
        .call(
            Method::POST,
            "/api/v1/services/licences",
            Some(json!({"licence_type": licence_type, "holder_id": holder, "holder_name": name})),
        )
        .await?;
    if status != 201 {
        anyhow::bail!("issuing {licence_type}: {status} {body}");
    }
    Ok(())
}

async fn bind(admin: &Api, username: &str, holder: &str, name: &str) -> anyhow::Result<bool> {
    let (status, body) = admin
        .call(
            Method::PUT,
            &format!("/api/v1/services/holders/{username}"),
            Some(json!({"holder_id": holder, "holder_name": name})),
        )
        .await?;
    match status {
        200 => Ok(true),
        409 => Ok(false),
        _ => anyhow::bail!("binding {username}: {status} {body}"),
    }
}

impl Hall {
    /// The simulated residents' signed-in clients (the code scans use them too).
    pub(crate) fn residents(&self) -> &[Api] {
        &self.residents
    }

    /// Staff, residents bound to identity numbers with their licences, the demo's resident and
    /// enterprise accounts bound too (when they exist), and one run of every policy.
    pub(crate) async fn open(
        admin: &Api,
        client: &reqwest::Client,
        config: &SimConfig,
    ) -> anyhow::Result<Hall> {
        let password = &config.account_password;
        let mut staff = HashMap::new();
        for department in STAFF {
            let username = format!("sim.svc.{department}");
            crate::workflow::account(admin, &username, department, "operator", password).await?;
            staff.insert(
                department.to_owned(),
                Api::sign_in(client, &admin.base, &username, password).await?,
            );
        }
        let residents_n = match config.scale {
            crate::Scale::Small => 12,
            crate::Scale::City => 60,
        };
        let mut residents = Vec::new();
        let police = &staff["police"];
        let health = &staff["health"];
        let mut people: Vec<(String, String, String)> = (0..residents_n)
            .map(|n| {
                (
                    format!("sim.resident.{n:03}"),
                    person_number(config.seed.wrapping_mul(1000) + n),
                    format!("模拟居民{n:03}"),
                )
            })
            .collect();
        // The demo's own resident account, when the demo made one.
        people.push((
            "resident".into(),
            person_number(config.seed.wrapping_mul(1000) + 999),
            "市民".into(),
        ));
        for (username, number, name) in &people {
            if username != "resident" {
                crate::workflow::account(admin, username, "bigdata", "resident", password).await?;
            }
            let bound = match bind(admin, username, number, name).await {
                Ok(bound) => bound,
                Err(e) if username == "resident" => {
                    tracing::debug!(error = %e, "no demo resident account to bind");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if bound {
                issue(police, number, name, "resident_id").await?;
                issue(police, number, name, "household_register").await?;
                issue(health, number, name, "birth_certificate").await?;
            }
            if username != "resident" {
                residents.push(Api::sign_in(client, &admin.base, username, password).await?);
            }
        }
        let hall = Hall {
            demo_holder: person_number(config.seed.wrapping_mul(1000) + 999),
            admin: admin.clone(),
            staff,
            residents,
        };
        hall.pay_policies(client, config).await?;
        Ok(hall)
    }

    /// Each paying department's admin runs its policies once; the demo's enterprise account is
    /// bound to an enterprise of the data first, so it sees a grant it never applied for.
    async fn pay_policies(
        &self,
        client: &reqwest::Client,
        config: &SimConfig,
    ) -> anyhow::Result<()> {
        let (status, policies) = self
            .admin
            .call(Method::GET, "/api/v1/services/policies", None)
            .await?;
        if status != 200 {
            anyhow::bail!("policies: {status}");
        }
        let enterprises = yunnao_services::policies::synthetic_enterprises(
            yunnao_services::grants::ENTERPRISE_COUNT,
            yunnao_services::grants::ENTERPRISE_SEED,
        );
        let today = chrono::Utc::now().date_naive();
        let seeded: Vec<yunnao_services::policies::Policy> =
            serde_json::from_value(policies.clone()).unwrap_or_default();
        // An enterprise some automatic policy pays, chosen by the seed.
        if let Some(e) = enterprises
            .iter()
            .cycle()
            .skip((config.seed % 997) as usize)
            .take(enterprises.len())
            .find(|e| {
                seeded
                    .iter()
                    .any(|p| p.mode == "auto" && p.decide(e, today).is_ok_and(|d| d.eligible))
            })
            && bind(&self.admin, "enterprise", &e.credit_code, &e.name)
                .await
                .unwrap_or(false)
        {
            issue(
                &self.staff_or_market(client, config).await?,
                &e.credit_code,
                &e.name,
                "business_licence",
            )
            .await?;
        }
        let mut admins: HashMap<String, Api> = HashMap::new();
        for p in &seeded {
            if !admins.contains_key(&p.department) {
                let username = format!("sim.payer.{}", p.department);
                crate::workflow::account(
                    &self.admin,
                    &username,
                    &p.department,
                    "dept_admin",
                    &config.account_password,
                )
                .await?;
                admins.insert(
                    p.department.clone(),
                    Api::sign_in(
                        client,
                        &self.admin.base,
                        &username,
                        &config.account_password,
                    )
                    .await?,
                );
            }
            let (status, report) = admins[&p.department]
                .call(
                    Method::POST,
                    &format!("/api/v1/services/policies/{}/runs", p.code),
                    None,
                )
                .await?;
            if status != 200 {
                anyhow::bail!("running {}: {status} {report}", p.code);
            }
            tracing::info!(policy = %p.code, granted = %report["granted"], invited = %report["invited"], "simulated policy run");
        }
        Ok(())
    }

    async fn staff_or_market(
        &self,
        client: &reqwest::Client,
        config: &SimConfig,
    ) -> anyhow::Result<Api> {
        crate::workflow::account(
            &self.admin,
            "sim.svc.market",
            "market",
            "operator",
            &config.account_password,
        )
        .await?;
        Api::sign_in(
            client,
            &self.admin.base,
            "sim.svc.market",
            &config.account_password,
        )
        .await
    }

    async fn apply(&self, rng: &mut ChaCha8Rng, stats: &SimStats) -> anyhow::Result<()> {
        if self.residents.is_empty() {
            return Ok(());
        }
        let resident = &self.residents[rng.random_range(0..self.residents.len())];
        let service = APPLIED_FOR[rng.random_range(0..APPLIED_FOR.len())];
        let (_, guide) = resident
            .call(
                Method::GET,
                &format!("/api/v1/services/plans/{service}"),
                None,
            )
            .await?;
        let (_, library) = resident
            .call(Method::GET, "/api/v1/services/licences/mine", None)
            .await?;
        let consent: Vec<Value> = library
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["status"] == "valid")
            .map(|l| l["document"]["id"].clone())
            .collect();
        let mut uploads = serde_json::Map::new();
        let materials: Vec<String> = guide["materials"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["source"] == "upload")
            .filter_map(|m| m["name_zh"].as_str().map(str::to_owned))
            .collect();
        for name in materials {
            let response = resident
                .client
                .post(format!("{}/api/v1/services/uploads", resident.base))
                .bearer_auth(&resident.token)
                .header("content-type", "image/png")
                .body(PNG.to_vec())
                .send()
                .await?;
            let body: Value = response.json().await.unwrap_or(Value::Null);
            uploads.insert(name, body["id"].clone());
        }
        let (status, body) = resident
            .call(
                Method::POST,
                "/api/v1/services/applications",
                Some(
                    json!({"service_code": service, "form": form_for(service, rng),
                            "consent": consent, "uploads": uploads,
                            "channel": if rng.random_bool(0.3) { "mobile" } else { "web" }}),
                ),
            )
            .await?;
        if status == 201 {
            count(&stats.applications_filed, 1);
        } else {
            count(&stats.errors, 1);
            tracing::warn!(service, status, %body, "simulated application refused");
        }
        // Completing what was returned.
        let (_, mine) = resident
            .call(Method::GET, "/api/v1/services/applications/mine", None)
            .await?;
        for app in mine
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "returned")
        {
            let id = app["id"].as_str().unwrap_or_default();
            let _ = resident
                .call(
                    Method::PUT,
                    &format!("/api/v1/services/applications/{id}"),
                    Some(json!({})),
                )
                .await?;
        }
        Ok(())
    }

    async fn work(&self, rng: &mut ChaCha8Rng, stats: &SimStats) -> anyhow::Result<()> {
        for (department, api) in &self.staff {
            let (status, work) = api
                .call(Method::GET, "/api/v1/services/steps", None)
                .await?;
            if status != 200 {
                continue;
            }
            for app in work.as_array().into_iter().flatten().take(10) {
                let id = app["id"].as_str().unwrap_or_default();
                let demo = app["holder_id"] == self.demo_holder.as_str();
                // The demo's resident's applications wait for people a while (to accept, return
                // or decide as a department), then the simulated departments carry them on.
                if demo && !waited(&app["created_at"]) {
                    continue;
                }
                if app["state"] == "submitted" && app["department"] == department.as_str() {
                    let roll = if demo { 99 } else { rng.random_range(0..100) };
                    let (action, reason) = match roll {
                        0..5 if app["returned_count"] == 0 => ("return", "材料照片不清晰，请补正"),
                        5..8 => ("decline", "不属于本部门受理范围"),
                        _ => ("accept", ""),
                    };
                    let (status, _) = api
                        .call(
                            Method::POST,
                            &format!("/api/v1/services/applications/{id}/receipt"),
                            Some(json!({"action": action, "reason": reason})),
                        )
                        .await?;
                    if status == 200 {
                        count(&stats.service_steps, 1);
                    }
                    continue;
                }
                for step in app["steps"].as_array().into_iter().flatten() {
                    if step["state"] != "open" || step["department"] != department.as_str() {
                        continue;
                    }
                    if demo && !waited(&step["opened_at"]) {
                        continue;
                    }
                    let approve = demo || rng.random_bool(0.92);
                    let (status, _) = api
                        .call(
                            Method::POST,
                            &format!("/api/v1/services/applications/{id}/steps/{}/{}", step["stage"], step["step"]),
                            Some(json!({"approve": approve,
                                        "comment": if approve { "材料齐全，符合条件" } else { "核查不符合条件" }})),
                        )
                        .await?;
                    if status == 200 {
                        count(&stats.service_steps, 1);
                    }
                }
            }
        }
        Ok(())
    }
}

/// How long the demo's resident's application is left to people before the simulated
/// departments act on it.
const LEFT_TO_PEOPLE: chrono::TimeDelta = chrono::TimeDelta::seconds(90);

/// Whether the moment `at` (RFC 3339) is longer ago than [`LEFT_TO_PEOPLE`].
fn waited(at: &Value) -> bool {
    at.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| chrono::Utc::now().signed_duration_since(t) > LEFT_TO_PEOPLE)
}

/// Every few seconds a resident applies (small: about one a minute) and the departments work.
pub(crate) async fn run_hall(
    hall: Hall,
    config: SimConfig,
    stats: Arc<SimStats>,
) -> anyhow::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x05e4_1ce5);
    let chance = match config.scale {
        crate::Scale::Small => 0.1,
        crate::Scale::City => 0.4,
    };
    let pace = config.interval_factor.clamp(0.05, 1.0);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(6.0 * pace));
    loop {
        tick.tick().await;
        if rng.random_bool(chance)
            && let Err(e) = hall.apply(&mut rng, &stats).await
        {
            count(&stats.errors, 1);
            tracing::warn!(error = %e, "simulated application failed");
        }
        if let Err(e) = hall.work(&mut rng, &stats).await {
            count(&stats.errors, 1);
            tracing::warn!(error = %e, "simulated approvals failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn simulated_people_have_valid_numbers() {
        for n in 0..500 {
            let number = super::person_number(n);
            assert!(
                yunnao_services::ids::resident_id(&number).is_ok(),
                "{n}: {number}"
            );
        }
    }
}
