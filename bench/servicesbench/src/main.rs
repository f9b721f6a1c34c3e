//! The services hub benchmark against a running server (`bench/services/run.sh` starts one):
//! e-licence issuance latency, applications carried through a two-department parallel approval
//! (建筑工程施工许可: housing and natural resources at once) with their uploads and result
//! licence, seal verifications in process beside `openssl speed sm2` on the same machine,
//! every policy run over the 50,000 enterprises, and how long after its deadline a step is
//! flagged overdue.

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    /// The platform admin's token.
    #[arg(long)]
    token: String,
    /// The server's database, to move one step's deadline close (the overdue measurement).
    #[arg(long)]
    db: String,
    #[arg(long, default_value_t = 500)]
    issuances: usize,
    #[arg(long, default_value_t = 1000)]
    applications: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

const SERVICE: &str = "370200-XK-0005";
const PASSWORD: &str = "bench-password-1";

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: u16,
    ) -> anyhow::Result<Value> {
        let (status, body) = self.call(method, path, body).await?;
        if status != expect {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }

    async fn upload(&self) -> anyhow::Result<String> {
        let response = self
            .client
            .post(format!("{}/api/v1/services/uploads", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/pdf")
            .body(b"%PDF-1.7\n% yunnao bench\n".to_vec())
            .send()
            .await?;
        let body: Value = response.json().await?;
        body["id"].as_str().map(str::to_owned).context("upload id")
    }

    async fn user(&self, username: &str, department: &str, role: &str) -> anyhow::Result<Api> {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/users",
                Some(json!({"username": username, "display_name": username,
                "password": PASSWORD, "department": department, "roles": [role]})),
            )
            .await?;
        if status != 201 && status != 409 {
            bail!("user {username}: {status} {body}");
        }
        let signed = self
            .client
            .post(format!("{}/api/v1/auth/sign-in", self.base))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await?
            .json::<Value>()
            .await?;
        Ok(Api {
            client: self.client.clone(),
            base: self.base.clone(),
            token: signed["access_token"].as_str().context("token")?.to_owned(),
        })
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `openssl speed sm2`'s verifications per second (one process, one core).
fn openssl_sm2_verify() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "3", "sm2"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find(|l| l.contains("SM2") && l.contains("bits"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// The floor of any implementation on this disk: per application the six writes it commits
/// (two uploads, the submission, the acceptance, two decisions), each its own transaction of
/// one row into a raw SQLite file in WAL mode, as the server's database is.
async fn raw_sqlite_applications(count: usize) -> anyhow::Result<f64> {
    sqlx::any::install_default_drivers();
    let dir = std::env::temp_dir().join(format!("yunnao-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}?mode=rwc", dir.join("raw.db").display());
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    sqlx::query("PRAGMA journal_mode=WAL")
        .execute(&pool)
        .await?;
    sqlx::query("PRAGMA synchronous=NORMAL")
        .execute(&pool)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS w (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let body = "x".repeat(600);
    let started = Instant::now();
    for _ in 0..count * 6 {
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO w (body) VALUES ($1)")
            .bind(&body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        base: args.url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
    };
    let market = admin.user("bench.market", "market", "operator").await?;
    let resources = admin
        .user("bench.resources", "natural-resources", "operator")
        .await?;
    let housing = admin.user("bench.housing", "housing", "operator").await?;
    let enterprises = yunnao_services::policies::synthetic_enterprises(
        yunnao_services::grants::ENTERPRISE_COUNT,
        yunnao_services::grants::ENTERPRISE_SEED,
    );
    let holders = 20.min(args.applications.max(1));
    let mut applicants = Vec::new();
    for (n, e) in enterprises.iter().take(holders).enumerate() {
        let username = format!("bench.enterprise.{n:02}");
        let api = admin.user(&username, "bigdata", "enterprise").await?;
        admin
            .ok(
                Method::PUT,
                &format!("/api/v1/services/holders/{username}"),
                Some(json!({"holder_id": e.credit_code, "holder_name": e.name})),
                200,
            )
            .await?;
        let property = resources
            .ok(Method::POST, "/api/v1/services/licences",
                Some(json!({"licence_type": "property_certificate", "holder_id": e.credit_code, "holder_name": e.name})), 201)
            .await?;
        applicants.push((
            api,
            e.credit_code.clone(),
            e.name.clone(),
            property["document"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }

    // Issuance: sealed by the market bureau, timed one by one, `concurrency` at a time.
    let started = Instant::now();
    let mut latencies: Vec<f64> = futures::stream::iter(0..args.issuances)
        .map(|n| {
            let (market, (_, code, name, _)) = (market.clone(), applicants[n % holders].clone());
            async move {
                let at = Instant::now();
                let issued = market
                    .ok(Method::POST, "/api/v1/services/licences",
                        Some(json!({"licence_type": "business_licence", "holder_id": code, "holder_name": name})), 201)
                    .await;
                issued.map(|_| at.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let issue_secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "licence issuance: {} sealed licences in {issue_secs:.2} s ({:.0}/s, {} at once); latency p50 {:.1} ms, p99 {p99:.1} ms (goal ≤ 200 ms: {})",
        latencies.len(),
        latencies.len() as f64 / issue_secs,
        args.concurrency,
        percentile(&latencies, 0.5),
        if p99 <= 200.0 { "met" } else { "SHORT" }
    );
    // Each applicant's newest business licence.
    let mut consents = Vec::new();
    for (api, _, _, property) in &applicants {
        let mine = api
            .ok(Method::GET, "/api/v1/services/licences/mine", None, 200)
            .await?;
        let business = mine
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["document"]["licence_type"] == "business_licence")
            .and_then(|l| l["document"]["id"].as_str())
            .context("a business licence")?
            .to_owned();
        consents.push(vec![business, property.clone()]);
    }

    // Applications: two uploads, submission, acceptance, two departments' steps in parallel.
    let started = Instant::now();
    let results = futures::stream::iter(0..args.applications)
        .map(|n| {
            let (api, consent) = (
                applicants[n % holders].0.clone(),
                consents[n % holders].clone(),
            );
            let (housing, resources) = (housing.clone(), resources.clone());
            async move {
                let (a, b) = (api.upload().await?, api.upload().await?);
                let app = api
                    .ok(
                        Method::POST,
                        "/api/v1/services/applications",
                        Some(json!({"service_code": SERVICE, "consent": consent,
                            "form": {"phone": "13800000000", "address": "青岛市黄岛区某路1号"},
                            "uploads": {"施工图审查合格书": a, "施工合同": b}})),
                        201,
                    )
                    .await?;
                let id = app["id"].as_str().context("id")?.to_owned();
                housing
                    .ok(
                        Method::POST,
                        &format!("/api/v1/services/applications/{id}/receipt"),
                        Some(json!({"action": "accept"})),
                        200,
                    )
                    .await?;
                let approve = json!({"approve": true, "comment": "同意"});
                let (first, second) = (
                    format!("/api/v1/services/applications/{id}/steps/0/0"),
                    format!("/api/v1/services/applications/{id}/steps/0/1"),
                );
                let (x, y) = tokio::join!(
                    housing.call(Method::POST, &first, Some(approve.clone())),
                    resources.call(Method::POST, &second, Some(approve.clone())),
                );
                // Two approvals landing at once: the later may be told to try again (409).
                for (result, api, step) in [(x?, &housing, 0), (y?, &resources, 1)] {
                    if result.0 == 409 {
                        let (status, body) = api
                            .call(
                                Method::POST,
                                &format!("/api/v1/services/applications/{id}/steps/0/{step}"),
                                Some(approve.clone()),
                            )
                            .await?;
                        if status != 200 && status != 409 {
                            bail!("retrying step {step}: {status} {body}");
                        }
                    } else if result.0 != 200 {
                        bail!("step {step}: {} {}", result.0, result.1);
                    }
                }
                let done = api
                    .ok(
                        Method::GET,
                        &format!("/api/v1/services/applications/{id}"),
                        None,
                        200,
                    )
                    .await?;
                if done["state"] != "approved"
                    || done["result_licences"].as_array().is_none_or(Vec::is_empty)
                {
                    bail!("application {id} ended {}", done["state"]);
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("first failure: {e:#}");
    }
    let ours = (args.applications - failed) as f64 / secs;
    let raw = raw_sqlite_applications(args.applications).await?;
    println!(
        "applications: {} carried through two uploads, acceptance and a two-department parallel approval with a sealed permit issued, in {secs:.2} s: {ours:.1} applications/s ({failed} failed, {} at once); raw SQLite doing only the 6 committed writes each (WAL, synchronous=NORMAL, no HTTP, no checks): {raw:.1}/s, ratio {:.2}×",
        args.applications - failed,
        args.concurrency,
        ours / raw
    );

    // Verification in process: canonicalisation, SM3 and one SM2 verification per licence.
    let (_, key) = admin
        .call(Method::GET, "/api/v1/seals/market", None)
        .await?;
    let public: yunnao_identity::seals::SealPublicKey = serde_json::from_value(key)?;
    let mine = applicants[0]
        .0
        .ok(Method::GET, "/api/v1/services/licences/mine", None, 200)
        .await?;
    let sealed: Vec<yunnao_identity::seals::SealedDocument> = mine
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["seal"]["department"] == "market")
        .filter_map(|l| {
            serde_json::from_value(json!({"document": l["document"], "seal": l["seal"]})).ok()
        })
        .collect();
    if sealed.is_empty() {
        bail!("no sealed licences to verify");
    }
    let started = Instant::now();
    let mut verified = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        for s in &sealed {
            yunnao_identity::seals::verify_published(s, &public)
                .map_err(|p| anyhow::anyhow!("{p}"))?;
            verified += 1;
        }
    }
    let ours = verified as f64 / started.elapsed().as_secs_f64();
    match openssl_sm2_verify() {
        Some(openssl) => println!(
            "licence verification: {ours:.0}/s on one core (canonical JSON + SM3 + SM2 verify) beside openssl speed sm2 verify {openssl:.0}/s: {:.2}× (goal ≥ 1.0×)",
            ours / openssl
        ),
        None => {
            println!("licence verification: {ours:.0}/s on one core; openssl speed sm2 did not run")
        }
    }

    // Every policy over the 50,000 enterprises, each decision explained.
    let (_, policies) = admin
        .call(Method::GET, "/api/v1/services/policies", None)
        .await?;
    let mut worst = 0u64;
    for p in policies.as_array().into_iter().flatten() {
        let code = p["code"].as_str().unwrap_or_default();
        let at = Instant::now();
        let report = admin
            .ok(
                Method::POST,
                &format!("/api/v1/services/policies/{code}/runs"),
                None,
                200,
            )
            .await?;
        let wall = at.elapsed().as_millis() as u64;
        worst = worst.max(wall);
        println!(
            "policy run {code}: {} enterprises decided, {} eligible, {} granted, {} invited, {} unfunded, {} yuan of {} in {} ms (server {} ms)",
            report["enterprises"],
            report["eligible"],
            report["granted"],
            report["invited"],
            report["unfunded"],
            report["spent_yuan"],
            report["budget_yuan"],
            wall,
            report["elapsed_ms"]
        );
    }
    println!(
        "policy runs: slowest {worst} ms over 50,000 enterprises (goal ≤ 2000 ms: {})",
        if worst <= 2000 { "met" } else { "SHORT" }
    );

    // The overdue flag: one step's deadline moved 3 s ahead; how long after it the flag shows.
    let (api, consent) = (&applicants[0].0, &consents[0]);
    let (a, b) = (api.upload().await?, api.upload().await?);
    let app = api
        .ok(Method::POST, "/api/v1/services/applications",
            Some(json!({"service_code": SERVICE, "consent": consent, "form": {"phone": "13800000000", "address": "青岛市某路"},
                "uploads": {"施工图审查合格书": a, "施工合同": b}})), 201)
        .await?;
    let id = app["id"].as_str().context("id")?.to_owned();
    housing
        .ok(
            Method::POST,
            &format!("/api/v1/services/applications/{id}/receipt"),
            Some(json!({"action": "accept"})),
            200,
        )
        .await?;
    let pool = sqlx::AnyPool::connect(&args.db).await?;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let deadline = now_ms() + 3_000;
    sqlx::query("UPDATE svc_application_steps SET due_at_ms = $1, warn_at_ms = $2 WHERE application_id = $3 AND stage = 0 AND step = 0")
        .bind(deadline)
        .bind(deadline - 1_000)
        .bind(&id)
        .execute(&pool)
        .await?;
    let flagged = loop {
        let app = housing
            .ok(
                Method::GET,
                &format!("/api/v1/services/applications/{id}"),
                None,
                200,
            )
            .await?;
        if app["steps"][0]["overdue"] == true {
            break now_ms();
        }
        if now_ms() > deadline + 120_000 {
            bail!("not flagged overdue within 120 s of its deadline");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let delay = (flagged - deadline) as f64 / 1000.0;
    println!(
        "overdue flag: raised {delay:.1} s after the step's deadline (goal ≤ 60 s: {})",
        if delay <= 60.0 { "met" } else { "SHORT" }
    );
    Ok(())
}
