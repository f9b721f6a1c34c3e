//! The ingestion benchmark's load generator. Every mode sends the same synthetic readings:
//! device `bench-NNNNNN` (profile manhole-gas: CH4, H2S, CO), one reading per minute, three
//! values each; one reading in a thousand has CH4 = 99 so alarm rules fire under load.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Register the devices through the import API and the alarm rule; writes tokens to --tokens.
    Setup {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        devices: usize,
        #[arg(long)]
        tokens: std::path::PathBuf,
    },
    /// yunnao HTTP bulk endpoint (NDJSON batches).
    Http {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        #[command(flatten)]
        load: Load,
    },
    /// yunnao embedded MQTT, QoS 1, one connection per device.
    Mqtt {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        tokens: std::path::PathBuf,
        #[command(flatten)]
        load: Load,
    },
    /// InfluxDB 1.x line protocol over HTTP.
    Influx {
        #[arg(long)]
        url: String,
        #[command(flatten)]
        load: Load,
    },
    /// Raw SQLite with yunnao's durability: `--layout value` is one row per value (device, key,
    /// time), the table a time series gets without a storage design; `--layout message` is
    /// yunnao's own layout, one row per device and time with the values as JSON.
    Sqlite {
        #[arg(long)]
        path: std::path::PathBuf,
        #[arg(long, value_enum, default_value_t = Layout::Value)]
        layout: Layout,
        #[command(flatten)]
        load: Load,
    },
    /// Count values in a SQLite file: `readings` rows (yunnao's view, or the row-per-value
    /// table), or `telemetry` rows × 3 for the raw message layout.
    Count {
        #[arg(long)]
        path: std::path::PathBuf,
        #[arg(long, default_value = "SELECT COUNT(*) FROM readings")]
        query: String,
    },
    /// Alarm detection delay (raised − reading committed) from the alarms API.
    AlarmLatency {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq)]
enum Layout {
    Value,
    Message,
}

#[derive(clap::Args, Clone)]
struct Load {
    #[arg(long)]
    devices: usize,
    #[arg(long)]
    per_device: usize,
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Offset added to the timestamp index, so a second run writes new readings.
    #[arg(long, default_value_t = 0)]
    ts_offset: i64,
}

// 2025-10-09: far enough back that offsets of 100,000 minutes stay in the past.
const BASE_TS: i64 = 1_760_000_000_000;

fn device_id(d: usize) -> String {
    format!("bench-{d:06}")
}

fn values(d: usize, t: usize) -> (f64, f64, f64) {
    let ch4 = if (d * 7 + t * 13).is_multiple_of(1000) {
        99.0
    } else {
        ((d + t) % 20) as f64 + 0.5
    };
    (
        ch4,
        ((d * 3 + t) % 10) as f64 / 10.0,
        ((d + 2 * t) % 50) as f64,
    )
}

fn ts(load: &Load, t: usize) -> i64 {
    BASE_TS + (t as i64 + load.ts_offset) * 60_000
}

/// Readings in time-major order (all devices at t=0, then t=1, …), split into batches.
fn batches(load: &Load) -> Vec<Vec<(usize, usize)>> {
    let all: Vec<(usize, usize)> = (0..load.per_device)
        .flat_map(|t| (0..load.devices).map(move |d| (d, t)))
        .collect();
    all.chunks(load.batch).map(<[_]>::to_vec).collect()
}

fn report(name: &str, readings: usize, elapsed: Duration) {
    let rate = readings as f64 / elapsed.as_secs_f64();
    println!(
        "RESULT {name} readings={readings} seconds={:.2} readings_per_s={rate:.0} values_per_s={:.0}",
        elapsed.as_secs_f64(),
        rate * 3.0
    );
}

async fn run_batches<F, Fut>(load: &Load, send: F) -> anyhow::Result<Duration>
where
    F: Fn(Vec<(usize, usize)>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(batches(load).into_iter()));
    let send = Arc::new(send);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..load.writers.max(1) {
        let queue = queue.clone();
        let send = send.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .next();
                match next {
                    Some(batch) => send(batch).await?,
                    None => return anyhow::Ok(()),
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Setup {
            url,
            token,
            devices,
            tokens,
        } => setup(&url, &token, devices, &tokens).await,
        Mode::Http { url, token, load } => {
            let client = reqwest::Client::new();
            let endpoint = format!("{url}/api/v1/telemetry/bulk");
            let shared = load.clone();
            let elapsed = run_batches(&load, move |batch| {
                let client = client.clone();
                let endpoint = endpoint.clone();
                let token = token.clone();
                let load = shared.clone();
                async move {
                    let mut body = String::with_capacity(batch.len() * 100);
                    for (d, t) in batch {
                        let (ch4, h2s, co) = values(d, t);
                        body.push_str(&format!(
                            "{{\"device\":\"{}\",\"ts\":{},\"values\":{{\"CH4\":{ch4},\"H2S\":{h2s},\"CO\":{co}}}}}\n",
                            device_id(d),
                            ts(&load, t)
                        ));
                    }
                    let response = client
                        .post(&endpoint)
                        .bearer_auth(&token)
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await?;
                    let status = response.status();
                    let report: serde_json::Value = response.json().await?;
                    if !status.is_success() || report["rejected"].as_array().is_some_and(|r| !r.is_empty()) {
                        bail!("bulk upload refused: {status} {report}");
                    }
                    Ok(())
                }
            })
            .await?;
            report("yunnao_http_bulk", load.devices * load.per_device, elapsed);
            Ok(())
        }
        Mode::Mqtt {
            host,
            port,
            tokens,
            load,
        } => mqtt(&host, port, &tokens, &load).await,
        Mode::Influx { url, load } => {
            let client = reqwest::Client::new();
            let endpoint = format!("{url}/write?db=bench&precision=ms");
            let shared = load.clone();
            let elapsed = run_batches(&load, move |batch| {
                let client = client.clone();
                let endpoint = endpoint.clone();
                let load = shared.clone();
                async move {
                    let mut body = String::with_capacity(batch.len() * 80);
                    for (d, t) in batch {
                        let (ch4, h2s, co) = values(d, t);
                        body.push_str(&format!(
                            "gas,device={} CH4={ch4},H2S={h2s},CO={co} {}\n",
                            device_id(d),
                            ts(&load, t)
                        ));
                    }
                    let response = client.post(&endpoint).body(body).send().await?;
                    if !response.status().is_success() {
                        bail!(
                            "influx refused: {}",
                            response.text().await.unwrap_or_default()
                        );
                    }
                    Ok(())
                }
            })
            .await?;
            report(
                "influxdb_line_protocol",
                load.devices * load.per_device,
                elapsed,
            );
            Ok(())
        }
        Mode::Sqlite { path, layout, load } => match layout {
            Layout::Value => raw_sqlite(&path, &load),
            Layout::Message => raw_sqlite_messages(&path, &load),
        },
        Mode::Count { path, query } => {
            let connection = rusqlite::Connection::open(path)?;
            let count: i64 = connection.query_row(&query, [], |row| row.get(0))?;
            println!("COUNT {count}");
            Ok(())
        }
        Mode::AlarmLatency { url, token } => alarm_latency(&url, &token).await,
    }
}

async fn setup(
    url: &str,
    token: &str,
    devices: usize,
    tokens: &std::path::Path,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut lines = String::from("id,access_token\n");
    let started = Instant::now();
    for start in (0..devices).step_by(1000) {
        let chunk: Vec<serde_json::Value> = (start..(start + 1000).min(devices))
            .map(|d| serde_json::json!({"id": device_id(d), "name": format!("基准窨井 {d}"), "profile": "manhole-gas",
                "department": "bigdata", "location": {"lon": 120.3 + (d % 100) as f64 * 0.004, "lat": 36.0 + (d / 100 % 100) as f64 * 0.003},
                "simulated": true}))
            .collect();
        let response = client
            .post(format!("{url}/api/v1/devices/import"))
            .bearer_auth(token)
            .json(&chunk)
            .send()
            .await?;
        let report: serde_json::Value = response.json().await?;
        if report["rejected"].as_array().is_some_and(|r| !r.is_empty()) {
            bail!("device import refused rows: {}", report["rejected"]);
        }
        for item in report["created"].as_array().into_iter().flatten() {
            lines.push_str(&format!(
                "{},{}\n",
                item["id"].as_str().unwrap_or(""),
                item["access_token"].as_str().unwrap_or("")
            ));
        }
    }
    std::fs::write(tokens, lines)?;
    let rule = client
        .post(format!("{url}/api/v1/alarm-rules"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "甲烷浓度超限", "profile": "manhole-gas", "department": "bigdata", "key": "CH4",
            "kind": "threshold", "operator": "above", "threshold": 95, "severity": "critical"}))
        .send()
        .await?;
    if !rule.status().is_success() {
        bail!(
            "alarm rule refused: {}",
            rule.text().await.unwrap_or_default()
        );
    }
    println!(
        "SETUP devices={devices} seconds={:.1}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn mqtt(host: &str, port: u16, tokens: &std::path::Path, load: &Load) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(tokens).context("tokens file")?;
    let tokens: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1).map(str::to_owned))
        .take(load.devices)
        .collect();
    if tokens.len() < load.devices {
        bail!("only {} tokens for {} devices", tokens.len(), load.devices);
    }
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (d, token) in tokens.into_iter().enumerate() {
        let host = host.to_owned();
        let load = load.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut options = rumqttc::MqttOptions::new(format!("bench-{d}"), host, port);
            options.set_credentials(token, "");
            options.set_inflight(100);
            options.set_keep_alive(Duration::from_secs(60));
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 200);
            let per_device = load.per_device;
            let publisher = tokio::spawn(async move {
                for t in 0..per_device {
                    let (ch4, h2s, co) = values(d, t);
                    let payload = format!(
                        "{{\"ts\":{},\"values\":{{\"CH4\":{ch4},\"H2S\":{h2s},\"CO\":{co}}}}}",
                        ts(&load, t)
                    );
                    client
                        .publish(
                            "v1/devices/me/telemetry",
                            rumqttc::QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .await?;
                }
                anyhow::Ok(client)
            });
            let mut mine = 0;
            while mine < per_device {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        mine += 1;
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(error) => bail!("device {d}: {error}"),
                }
            }
            let client = publisher.await??;
            let _ = client.disconnect().await;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    report(
        "yunnao_mqtt_qos1",
        acked.load(Ordering::Relaxed) as usize,
        elapsed,
    );
    Ok(())
}

fn raw_sqlite(path: &std::path::Path, load: &Load) -> anyhow::Result<()> {
    let mut connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         CREATE TABLE IF NOT EXISTS readings (device_id TEXT NOT NULL, key TEXT NOT NULL, ts_ms BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL, \
         PRIMARY KEY (device_id, key, ts_ms)) WITHOUT ROWID;",
    )?;
    let started = Instant::now();
    for batch in batches(load) {
        let tx = connection.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO readings (device_id, key, ts_ms, value) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (device_id, key, ts_ms) DO UPDATE SET value = excluded.value",
            )?;
            for (d, t) in batch {
                let (ch4, h2s, co) = values(d, t);
                let id = device_id(d);
                let at = ts(load, t);
                insert.execute(rusqlite::params![id, "CH4", at, ch4])?;
                insert.execute(rusqlite::params![id, "H2S", at, h2s])?;
                insert.execute(rusqlite::params![id, "CO", at, co])?;
            }
        }
        tx.commit()?;
    }
    report(
        "raw_sqlite",
        load.devices * load.per_device,
        started.elapsed(),
    );
    Ok(())
}

fn raw_sqlite_messages(path: &std::path::Path, load: &Load) -> anyhow::Result<()> {
    let mut connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         CREATE TABLE IF NOT EXISTS telemetry (device_id TEXT NOT NULL, ts_ms BIGINT NOT NULL, values_json TEXT NOT NULL, \
         PRIMARY KEY (device_id, ts_ms)) WITHOUT ROWID;",
    )?;
    let started = Instant::now();
    for batch in batches(load) {
        let tx = connection.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO telemetry (device_id, ts_ms, values_json) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (device_id, ts_ms) DO UPDATE SET values_json = json_patch(telemetry.values_json, excluded.values_json)",
            )?;
            for (d, t) in batch {
                let (ch4, h2s, co) = values(d, t);
                let json = format!(r#"{{"CH4":{ch4:?},"H2S":{h2s:?},"CO":{co:?}}}"#);
                insert.execute(rusqlite::params![device_id(d), ts(load, t), json])?;
            }
        }
        tx.commit()?;
    }
    report(
        "raw_sqlite_messages",
        load.devices * load.per_device,
        started.elapsed(),
    );
    Ok(())
}

async fn alarm_latency(url: &str, token: &str) -> anyhow::Result<()> {
    let alarms: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!("{url}/api/v1/alarms?active=false&limit=1000"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let mut delays: Vec<i64> = alarms
        .iter()
        .filter_map(|a| Some(a["raised_at_ms"].as_i64()? - a["trigger_committed_ms"].as_i64()?))
        .collect();
    delays.sort_unstable();
    if delays.is_empty() {
        bail!("no alarms with a trigger time");
    }
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    println!(
        "ALARM_LATENCY alarms={} p50_ms={} p99_ms={} max_ms={}",
        delays.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
