//! The simulated city. It drives a yunnao server only through its public interfaces: devices
//! are registered through the import API (labelled `simulated`) and report through the
//! gateway bulk API at their profile's interval, with daily patterns, storms and faults; alarm
//! rules turn faults into alarms and, when critical, into incidents; citizens file Open311
//! requests; the departments and grid workers move cases through the workflow API, and some
//! cases are left to run overdue. Given the same seed it makes the same city and the same
//! decisions (timing follows the wall clock).

mod city;
mod codes;
mod data;
mod services;
mod workflow;

pub use city::{Fleet, Scale};

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub target: String,
    /// A platform admin's credentials (the simulator sets up its city with them).
    pub username: String,
    pub password: String,
    pub scale: Scale,
    pub seed: u64,
    /// Reporting intervals are multiplied by this (1 = the profiles' intervals; the small demo
    /// uses 0.1 so a few hundred devices look alive).
    pub interval_factor: f64,
    /// Password of the simulator's own accounts (department operators, grid workers).
    pub account_password: String,
    /// The server's device MQTT endpoint (`host:port`): when set, the manhole-gas and
    /// air-quality sensors (up to 1,000) connect there, one MQTT connection each, and
    /// publish at QoS 1; the rest report through the HTTP gateway API.
    pub mqtt: Option<String>,
}

impl SimConfig {
    pub fn new(target: &str, username: &str, password: &str) -> Self {
        Self {
            target: target.trim_end_matches('/').to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            scale: Scale::Small,
            seed: 2022,
            interval_factor: 1.0,
            account_password: "yunnao-sim-2022".to_owned(),
            mqtt: None,
        }
    }
}

/// What the simulator has done, for the log and the tests.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Devices the simulated city will register (known once its fleet is drawn); a server's
    /// overview shows start-up progress against it.
    pub planned_devices: Arc<AtomicU64>,
    pub readings_sent: AtomicU64,
    /// Messages the MQTT devices published and the server acknowledged (PUBACK).
    pub mqtt_acknowledged: AtomicU64,
    pub progress_reports: AtomicU64,
    pub reports_filed: AtomicU64,
    pub steps_taken: AtomicU64,
    /// Applications for services filed by simulated residents.
    pub applications_filed: AtomicU64,
    /// Receipts and approval steps taken by simulated departments.
    pub service_steps: AtomicU64,
    /// Codes scanned at the simulated scenarios (一码通城), and of those accepted.
    pub code_scans: AtomicU64,
    pub code_scans_accepted: AtomicU64,
    /// The data hub: owners' decisions on requests, reads of shared and open data, and the
    /// scenario apps' marketplace subscriptions.
    pub data_decisions: AtomicU64,
    pub data_reads: AtomicU64,
    pub data_subscriptions: AtomicU64,
    pub errors: AtomicU64,
}

/// A signed-in HTTP client for one account.
#[derive(Clone)]
pub(crate) struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn sign_in(
        client: &reqwest::Client,
        base: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Api> {
        let response = client
            .post(format!("{base}/api/v1/auth/sign-in"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        if !response.status().is_success() {
            bail!("sign-in of {username} failed: {}", response.status());
        }
        let body: Value = response.json().await?;
        let token = body["access_token"]
            .as_str()
            .context("sign-in answered no token")?
            .to_owned();
        Ok(Api {
            client: client.clone(),
            base: base.to_owned(),
            token,
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
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
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

/// Sets the city up (idempotent: a second run reuses what is there) and runs it until
/// `shutdown` resolves.
pub async fn run(
    config: SimConfig,
    stats: Arc<SimStats>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let admin = Api::sign_in(&client, &config.target, &config.username, &config.password).await?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let fleet = city::Fleet::generate(config.scale, &mut rng).map_err(anyhow::Error::msg)?;
    stats.planned_devices.store(
        fleet.devices.len() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let tokens = city::register(&admin, &fleet, config.mqtt.is_some()).await?;
    city::alarm_rules(&admin).await?;
    let crew = workflow::Crew::enlist(&admin, &client, &config).await?;
    tracing::info!(
        devices = fleet.devices.len(),
        scale = ?config.scale,
        seed = config.seed,
        "simulated city running"
    );
    let telemetry = city::run_devices(
        admin.clone(),
        fleet.clone(),
        tokens,
        config.clone(),
        stats.clone(),
    );
    {
        let (admin, client, config, stats) =
            (admin.clone(), client.clone(), config.clone(), stats.clone());
        tokio::spawn(async move {
            if let Err(e) = workflow::report_progress(&admin, &client, &config, &stats).await {
                tracing::warn!(error = %e, "simulated progress reports not filed");
            }
        });
    }
    let citizens =
        workflow::run_citizens(admin.clone(), fleet.clone(), config.clone(), stats.clone());
    let cases = workflow::run_cases(crew, config.clone(), stats.clone());
    {
        let (admin, config, stats) = (admin.clone(), config.clone(), stats.clone());
        tokio::spawn(async move {
            if let Err(e) = data::run_sharing(admin, config, stats).await {
                tracing::warn!(error = %e, "the simulated data sharing stopped");
            }
        });
    }
    {
        let (admin, client, config, stats) =
            (admin.clone(), client.clone(), config.clone(), stats.clone());
        tokio::spawn(async move {
            match services::Hall::open(&admin, &client, &config).await {
                Ok(hall) => {
                    {
                        let (admin, residents, config, stats) = (
                            admin.clone(),
                            hall.residents().to_vec(),
                            config.clone(),
                            stats.clone(),
                        );
                        tokio::spawn(async move {
                            if let Err(e) = codes::run_scans(admin, residents, config, stats).await
                            {
                                tracing::warn!(error = %e, "the simulated code scans stopped");
                            }
                        });
                    }
                    if let Err(e) = services::run_hall(hall, config, stats).await {
                        tracing::warn!(error = %e, "the simulated service hall stopped");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the simulated service hall did not open"),
            }
        });
    }
    tokio::select! {
        result = telemetry => result,
        result = citizens => result,
        result = cases => result,
        () = shutdown => Ok(()),
    }
}

pub(crate) fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
