//! The simulated city's code scans (一码通城): each scenario's operator has a verifier (an API
//! client with `code-scans:write`), the simulated residents bind a transit account and a
//! library card, and all day residents show their live code at the scenarios — the metro and
//! buses most, a hotel or an exam hall now and then; now and then a code is shown twice (a
//! replay, refused) or mistyped (refused at its stage). Deterministic per seed; through the
//! HTTP API only.

use crate::{Api, SimConfig, SimStats, count};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often each scenario is visited, relative to the others (not named: 1).
const WEIGHTS: [(&str, u32); 8] = [
    ("metro", 30),
    ("bus", 25),
    ("library", 6),
    ("hospital", 6),
    ("park", 6),
    ("pharmacy", 5),
    ("parking", 5),
    ("service-hall", 4),
];

pub(crate) async fn run_scans(
    admin: Api,
    residents: Vec<Api>,
    config: SimConfig,
    stats: Arc<SimStats>,
) -> anyhow::Result<()> {
    if residents.is_empty() {
        return Ok(());
    }
    let (status, scenarios) = admin
        .call(Method::GET, "/api/v1/codes/scenarios", None)
        .await?;
    if status != 200 {
        anyhow::bail!("scenarios: {status}");
    }
    let scenarios: Vec<(String, String)> = scenarios
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| {
                    Some((
                        s["code"].as_str()?.to_owned(),
                        s["department"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    // One verifier per operating department.
    let mut verifiers: HashMap<String, Api> = HashMap::new();
    for (_, department) in &scenarios {
        if verifiers.contains_key(department) {
            continue;
        }
        let (status, client) = admin
            .call(
                Method::POST,
                "/api/v1/api-clients",
                Some(json!({"name": format!("一码通城核验终端 {department}"), "department": department, "scopes": ["code-scans:write"]})),
            )
            .await?;
        if status != 201 {
            anyhow::bail!("verifier of {department}: {status} {client}");
        }
        let mut api = admin.clone();
        api.token = client["api_key"].as_str().unwrap_or_default().to_owned();
        verifiers.insert(department.clone(), api);
    }
    for (n, resident) in residents.iter().enumerate() {
        for (kind, id) in [
            (
                "transit_account",
                format!("QDMETRO-{:09}", config.seed * 1000 + n as u64),
            ),
            ("library_card", format!("QDLIB-{:06}", n)),
        ] {
            let (status, body) = resident
                .call(
                    Method::POST,
                    "/api/v1/codes/cards",
                    Some(json!({"kind": kind, "id": id})),
                )
                .await?;
            // A second run finds the cards bound already (204 too), or the limit reached.
            if status != 204 && status != 422 {
                anyhow::bail!("binding a {kind}: {status} {body}");
            }
        }
    }
    let total: u32 = scenarios.iter().map(|(code, _)| weight(code)).sum();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x000c_0de5);
    // Small: a scan about every 2 s; city: two a second.
    let every = match config.scale {
        crate::Scale::Small => Duration::from_millis(2_000),
        crate::Scale::City => Duration::from_millis(500),
    };
    let mut tick = tokio::time::interval(every.mul_f64(config.interval_factor.clamp(0.05, 1.0)));
    loop {
        tick.tick().await;
        let resident = &residents[rng.random_range(0..residents.len())];
        let mut pick = rng.random_range(0..total.max(1));
        let Some((scenario, department)) = scenarios.iter().find(|(code, _)| {
            let w = weight(code);
            if pick < w {
                true
            } else {
                pick -= w;
                false
            }
        }) else {
            continue;
        };
        let Some(verifier) = verifiers.get(department) else {
            continue;
        };
        let (status, mine) = resident
            .call(Method::GET, "/api/v1/codes/mine", None)
            .await?;
        if status != 200 {
            count(&stats.errors, 1);
            tracing::warn!(status, "a simulated resident got no code");
            continue;
        }
        let mut code = mine["code"].as_str().unwrap_or_default().to_owned();
        let roll: f64 = rng.random();
        if roll < 0.02 {
            // Mistyped at a hand scanner: one character off.
            let at = rng.random_range(4..code.len().max(5));
            code.replace_range(at..at + 1, if &code[at..at + 1] == "A" { "B" } else { "A" });
        }
        let shown = scan(verifier, scenario, &code, &stats).await;
        if roll > 0.97 && shown {
            // Shown a second time at the same gate: a replay.
            scan(verifier, scenario, &code, &stats).await;
        }
    }
}

fn weight(code: &str) -> u32 {
    WEIGHTS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(1, |(_, w)| *w)
}

/// One scan; whether it was accepted.
async fn scan(verifier: &Api, scenario: &str, code: &str, stats: &SimStats) -> bool {
    let answer: anyhow::Result<(u16, Value)> = verifier
        .call(
            Method::POST,
            "/api/v1/codes/verify",
            Some(json!({"scenario": scenario, "code": code})),
        )
        .await;
    count(&stats.code_scans, 1);
    match answer {
        Ok((200, _)) => {
            count(&stats.code_scans_accepted, 1);
            true
        }
        // Refusals are part of the day (replays, mistyped codes): counted by the server.
        Ok((409 | 422, _)) => false,
        Ok((status, body)) => {
            count(&stats.errors, 1);
            tracing::warn!(status, %body, "a simulated scan failed");
            false
        }
        Err(e) => {
            count(&stats.errors, 1);
            tracing::warn!(error = %e, "a simulated scan failed");
            false
        }
    }
}
