//! The simulated city's data sharing (城市数据中枢): departments' data officers file requests
//! for each other's conditional datasets, the owners approve them (narrowing rows, choosing
//! the masking) or refuse one, and the consumers read their granted rows all day; the public
//! reads open data; scenario apps of a dozen departments subscribe to the marketplace's
//! capabilities. Idempotent (a second run files nothing twice); through the HTTP API only.

use crate::workflow::account;
use crate::{Api, SimConfig, SimStats, count};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// (consumer, dataset, fields, row filter, masking, approve?)
type Plan = (
    &'static str,
    &'static str,
    &'static [&'static str],
    Value,
    Value,
    bool,
);

fn plans() -> Vec<Plan> {
    vec![
        (
            "water",
            "market-entities",
            &["credit_code", "name", "district"],
            json!({"district": ["市南区", "市北区"]}),
            json!({}),
            true,
        ),
        (
            "city-management",
            "market-entities",
            &["credit_code", "name", "legal_person", "district"],
            json!({}),
            json!({"legal_person": "mask"}),
            true,
        ),
        (
            "civil-affairs",
            "social-insurance",
            &["name", "id_number", "employer", "kind"],
            json!({}),
            json!({"name": "mask", "id_number": "mask"}),
            true,
        ),
        (
            "medical-insurance",
            "outpatient-visits",
            &["visit_id", "patient_id", "cost", "visit_date"],
            json!({}),
            json!({"patient_id": "hash"}),
            true,
        ),
        (
            "health",
            "elderly-allowances",
            &["name", "age", "community"],
            json!({}),
            json!({"name": "mask", "age": "generalise"}),
            true,
        ),
        (
            "transport",
            "traffic-accidents",
            &["district", "month", "accidents", "injured"],
            json!({}),
            json!({}),
            true,
        ),
        (
            "hrss",
            "tax-payments",
            &["credit_code", "tax_kind", "amount", "month"],
            json!({}),
            json!({"amount": "generalise"}),
            true,
        ),
        (
            "finance",
            "student-enrolment",
            &["student_name", "school"],
            json!({}),
            json!({}),
            false,
        ),
    ]
}

const SCENARIO_DEPARTMENTS: [(&str, &str); 12] = [
    ("transport", "grid-lookup"),
    ("city-management", "grid-lookup"),
    ("water", "device-telemetry"),
    ("ecology", "device-telemetry"),
    ("health", "code-verify"),
    ("culture-tourism", "code-verify"),
    ("approval", "e-seal"),
    ("market", "e-seal"),
    ("emergency", "ngsi-ld-types"),
    ("housing", "grid-lookup"),
    ("civil-affairs", "data-rows"),
    ("education", "data-rows"),
];

async fn officer(admin: &Api, department: &str, config: &SimConfig) -> anyhow::Result<Api> {
    let username = format!("sim.data.{department}");
    account(
        admin,
        &username,
        department,
        "dept_admin",
        &config.account_password,
    )
    .await?;
    Api::sign_in(
        &admin.client,
        &admin.base,
        &username,
        &config.account_password,
    )
    .await
}

pub(crate) async fn run_sharing(
    admin: Api,
    config: SimConfig,
    stats: Arc<SimStats>,
) -> anyhow::Result<()> {
    let mut officers: HashMap<String, Api> = HashMap::new();
    let mut reads: Vec<(String, String)> = Vec::new();
    let until = (chrono::Utc::now() + chrono::Duration::days(180)).to_rfc3339();
    for (consumer, dataset, fields, filter, masking, approve) in plans() {
        let (status, entry) = admin
            .call(
                Method::GET,
                &format!("/api/v1/data/datasets/{dataset}"),
                None,
            )
            .await?;
        if status != 200 {
            continue;
        }
        let owner = entry["dataset"]["department"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        for department in [consumer, owner.as_str()] {
            if !officers.contains_key(department) {
                officers.insert(
                    department.to_owned(),
                    officer(&admin, department, &config).await?,
                );
            }
        }
        let (Some(me), Some(them)) = (officers.get(consumer), officers.get(&owner)) else {
            continue;
        };
        let (_, filed) = me.call(Method::GET, "/api/v1/data/requests", None).await?;
        let already = filed.as_array().is_some_and(|all| {
            all.iter()
                .any(|r| r["dataset"] == dataset && r["consumer"] == consumer)
        });
        if !already {
            let (status, request) = me
                .call(
                    Method::POST,
                    "/api/v1/data/requests",
                    Some(json!({"dataset": dataset, "purpose": format!("{consumer} 业务协同"),
                                "legal_basis": "《青岛市公共数据管理办法》第二十条", "fields": fields,
                                "row_filter": filter, "valid_until": until, "expected_rows": 10_000})),
                )
                .await?;
            if status != 201 {
                count(&stats.errors, 1);
                tracing::warn!(status, %request, "a simulated data request was refused");
                continue;
            }
            let id = request["id"].as_str().unwrap_or("").to_owned();
            let decision = if approve {
                json!({"decision": "approve", "masking": masking})
            } else {
                json!({"decision": "refuse", "reason": "申请用途超出部门职责范围"})
            };
            let (status, _) = them
                .call(
                    Method::POST,
                    &format!("/api/v1/data/requests/{id}/decision"),
                    Some(decision),
                )
                .await?;
            if status == 200 {
                count(&stats.data_decisions, 1);
            }
        }
        if approve {
            reads.push((consumer.to_owned(), dataset.to_owned()));
        }
    }
    // Scenario apps subscribe to the marketplace.
    let (_, existing) = admin
        .call(Method::GET, "/api/v1/data/subscriptions", None)
        .await?;
    let subscribed = existing.as_array().map_or(0, Vec::len);
    if subscribed == 0 {
        for (department, capability) in SCENARIO_DEPARTMENTS {
            let (status, client) = admin
                .call(
                    Method::POST,
                    "/api/v1/api-clients",
                    Some(json!({"name": format!("场景应用 {department}"), "department": department, "scopes": ["datasets:read"]})),
                )
                .await?;
            if status != 201 {
                continue;
            }
            let client_id = client["client"]["id"].as_str().unwrap_or("").to_owned();
            let (status, _) = admin
                .call(
                    Method::POST,
                    "/api/v1/data/subscriptions",
                    Some(json!({"client_id": client_id, "capability": capability})),
                )
                .await?;
            if status == 201 {
                count(&stats.data_subscriptions, 1);
            }
        }
    }
    // All day: consumers read their grants, the public reads open data (the live views of
    // the city information model and the air-quality stations among them).
    let open = [
        "bus-routes",
        "air-quality-daily",
        "parking-lots",
        "schools",
        "hotels",
        "metro-stations-live",
        "air-quality-realtime",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xDA7A);
    let public = admin.client.clone();
    loop {
        tokio::time::sleep(Duration::from_secs_f64(
            (20.0 * config.interval_factor).max(2.0),
        ))
        .await;
        if let Some((consumer, dataset)) = reads.get(rng.random_range(0..reads.len().max(1)))
            && let Some(me) = officers.get(consumer)
        {
            {
                let offset = rng.random_range(0..500);
                let (status, _) = me
                    .call(
                        Method::GET,
                        &format!("/api/v1/data/datasets/{dataset}/rows?limit=50&offset={offset}"),
                        None,
                    )
                    .await?;
                match status {
                    200 => count(&stats.data_reads, 1),
                    // The tables are imported in the background at a platform's first start.
                    404 => {}
                    _ => count(&stats.errors, 1),
                }
            }
        }
        let dataset = open[rng.random_range(0..open.len())];
        if let Ok(response) = public
            .get(format!(
                "{}/api/v1/data/datasets/{dataset}/rows?limit=20",
                admin.base
            ))
            .send()
            .await
            && response.status().is_success()
        {
            count(&stats.data_reads, 1);
        }
    }
}
