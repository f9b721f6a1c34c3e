//! The context-broker benchmark: the same entity workload through yunnao's NGSI-LD API and
//! through raw SQLite doing the same reads and writes (rows of JSON, a bounding box for geo,
//! a history table for time), printed side by side with the ratio.
//!
//! Entities: `urn:ngsi-ld:ParkingSpot:b{n}` with `occupancy`, `capacity` and a location spread
//! over central Qingdao; deterministic.

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::{Value, json};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    /// yunnao base URL.
    #[arg(long)]
    url: String,
    /// Bearer token of an operator.
    #[arg(long)]
    token: String,
    /// Raw SQLite file for the peer.
    #[arg(long)]
    raw: std::path::PathBuf,
    #[arg(long, default_value_t = 100_000)]
    entities: usize,
    /// Concurrent HTTP requests.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Single attribute updates to make (the i-th to entity i × 7 mod N; past N, entities get
    /// the same value again: for profiling the phase).
    #[arg(long, default_value_t = 20_000)]
    updates: usize,
    /// Phases to run after the creates (for profiling one of them): update, batch, retrieve,
    /// query, geo, temporal. All by default.
    #[arg(long, value_delimiter = ',')]
    phases: Vec<String>,
    /// yunnao's process id, to report its CPU time per operation.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// A process's CPU time (user + system) from /proc, since a phase started.
struct ServerCpu {
    pid: Option<u32>,
    start: Option<f64>,
}

impl ServerCpu {
    fn seconds(pid: u32) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    fn start(pid: Option<u32>) -> Self {
        Self {
            pid,
            start: pid.and_then(Self::seconds),
        }
    }

    /// Microseconds of server CPU per operation over `count` operations.
    fn per(&self, count: usize) -> Option<f64> {
        let now = Self::seconds(self.pid?)?;
        Some((now - self.start?) * 1e6 / count as f64)
    }
}

impl Cli {
    fn wants(&self, phase: &str) -> bool {
        self.phases.is_empty() || self.phases.iter().any(|p| p == phase)
    }
}

fn id(n: usize) -> String {
    format!("urn:ngsi-ld:ParkingSpot:b{n:06}")
}

/// A deterministic spread over central Qingdao (about 20 × 15 km).
fn position(n: usize) -> (f64, f64) {
    let x = (n.wrapping_mul(7919) % 10_007) as f64 / 10_007.0;
    let y = (n.wrapping_mul(104_729) % 10_009) as f64 / 10_009.0;
    (120.25 + 0.22 * x, 36.05 + 0.14 * y)
}

fn entity(n: usize, round: usize) -> Value {
    let (lon, lat) = position(n);
    json!({
        "id": id(n), "type": "ParkingSpot",
        "occupancy": {"type": "Property", "value": if (n + round).is_multiple_of(3) { "occupied" } else { "free" }},
        "capacity": {"type": "Property", "value": (n % 50) as i64},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
    })
}

struct Figure {
    name: String,
    unit: &'static str,
    yunnao: f64,
    /// yunnao's CPU time (user + system) per operation, when its pid is known: what the server
    /// itself spends, apart from the load generator sharing the machine.
    server_us: Option<f64>,
    raw: f64,
}

async fn run_concurrent<F, Fut>(
    count: usize,
    concurrency: usize,
    job: F,
) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (job, next) = (job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                job(i).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

/// One request of [`run_lean`]: method, path and JSON body (empty for none).
type LeanRequest = (&'static str, String, Vec<u8>);

/// Like [`run_concurrent`] over `concurrency` keep-alive HTTP/1.1 connections (one request at
/// a time on each, every answer read whole and its status checked against `expected`).
async fn run_lean(
    address: &str,
    token: &str,
    count: usize,
    concurrency: usize,
    expected: u16,
    make: impl Fn(usize) -> LeanRequest + Send + Sync + 'static,
) -> anyhow::Result<Duration> {
    // Like wrk: one thread, keep-alive connections, requests written as bytes and answers read
    // with httparse, so the generator takes as little as it can of the cores it shares with
    // the server (hyper's client costs a task switch and a channel per request).
    let address = address.to_owned();
    let authorization = format!("Bearer {token}");
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(lean_requests(
            address,
            authorization,
            count,
            concurrency,
            expected,
            make,
        ))
    });
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))?
}

async fn lean_requests(
    address: String,
    authorization: String,
    count: usize,
    concurrency: usize,
    expected: u16,
    make: impl Fn(usize) -> LeanRequest + Send + Sync + 'static,
) -> anyhow::Result<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut streams = Vec::new();
    for _ in 0..concurrency {
        let stream = tokio::net::TcpStream::connect(&address).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut stream in streams {
        let (make, next, authorization, host) = (
            make.clone(),
            next.clone(),
            authorization.clone(),
            address.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut request = Vec::with_capacity(512);
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                let (method, path, body) = make(i);
                request.clear();
                write!(
                    request,
                    "{method} {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: {authorization}\r\n"
                )?;
                if !body.is_empty() {
                    write!(
                        request,
                        "content-type: application/json\r\ncontent-length: {}\r\n",
                        body.len()
                    )?;
                }
                request.extend_from_slice(b"\r\n");
                request.extend_from_slice(&body);
                stream.write_all(&request).await?;
                let mut filled = 0;
                loop {
                    if filled == buffer.len() {
                        bail!("{method} {path}: the answer exceeds {} bytes", buffer.len());
                    }
                    let read = stream.read(&mut buffer[filled..]).await?;
                    if read == 0 {
                        bail!("{method} {path}: the server closed the connection");
                    }
                    filled += read;
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut response = httparse::Response::new(&mut headers);
                    let httparse::Status::Complete(head) = response.parse(&buffer[..filled])?
                    else {
                        continue;
                    };
                    let length = if response.code == Some(204) {
                        0
                    } else {
                        response
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                            .ok_or_else(|| anyhow::anyhow!("{method} {path}: no Content-Length"))?
                    };
                    if filled < head + length {
                        continue;
                    }
                    if response.code != Some(expected) {
                        bail!(
                            "{method} {path}: {:?} {}",
                            response.code,
                            String::from_utf8_lossy(&buffer[head..head + length])
                        );
                    }
                    if filled != head + length {
                        bail!("{method} {path}: bytes after the answer");
                    }
                    break;
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let base = format!("{}/ngsi-ld/v1", cli.url.trim_end_matches('/'));
    let n = cli.entities;
    let mut figures = Vec::new();
    let raw = Arc::new(std::sync::Mutex::new(raw_open(&cli.raw)?));

    // 1. Creates: batches of 1,000.
    let cpu = ServerCpu::start(cli.server_pid);
    let batches: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(<[usize]>::to_vec)
        .collect();
    let batches = Arc::new(batches);
    let (c, b, t) = (client.clone(), base.clone(), cli.token.clone());
    let list = batches.clone();
    let elapsed = run_concurrent(list.len(), 4, move |i| {
        let (c, b, t, list) = (c.clone(), b.clone(), t.clone(), list.clone());
        async move {
            let body: Vec<Value> = list[i].iter().map(|n| entity(*n, 0)).collect();
            let response = c
                .post(format!("{b}/entityOperations/create"))
                .bearer_auth(&t)
                .json(&body)
                .send()
                .await?;
            if response.status() != 201 {
                bail!(
                    "create: {} {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
            }
            Ok(())
        }
    })
    .await?;
    let raw_elapsed = raw_time(&raw, |db| raw_create(db, n))?;
    figures.push(Figure {
        name: "entity creates (batches of 1,000)".into(),
        unit: "entities/s",
        yunnao: rate(n, elapsed),
        server_us: cpu.per(n),
        raw: rate(n, raw_elapsed),
    });

    let address = cli
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if cli.wants("update") {
        // 2a. Attribute updates, one request each (PATCH /entities/{id}/attrs): at the chosen
        // concurrency, then with the 32 connections of a busier broker (more updates share a
        // commit). Each pass gives every entity it updates a new value, so each update writes
        // history.
        let updates = cli.updates;
        let raw_elapsed = raw_time(&raw, |db| raw_update(db, n, updates, 1))?;
        for (pass, connections) in [cli.concurrency, 32].into_iter().enumerate() {
            let cpu = ServerCpu::start(cli.server_pid);
            let (value, hour) = [("occupied", 8), ("free", 9)][pass % 2];
            let body = json!({"occupancy": {"type": "Property", "value": value,
                "observedAt": format!("2026-11-29T{hour:02}:00:00Z")}})
            .to_string();
            let elapsed = run_lean(&address, &cli.token, updates, connections, 204, move |i| {
                let path = format!("/ngsi-ld/v1/entities/{}/attrs", id(i * 7 % n));
                ("PATCH", path, body.clone().into_bytes())
            })
            .await?;
            figures.push(Figure {
                name: format!("attribute updates, one per request ({connections} connections)"),
                unit: "updates/s",
                yunnao: rate(updates, elapsed),
                server_us: cpu.per(updates),
                raw: rate(updates, raw_elapsed),
            });
        }
    }

    if cli.wants("batch") {
        // 2b. Attribute updates in batches (entityOperations/update, 1,000 entities each).
        let cpu = ServerCpu::start(cli.server_pid);
        let (c, b, t) = (client.clone(), base.clone(), cli.token.clone());
        let list = batches.clone();
        let elapsed = run_concurrent(list.len(), 4, move |i| {
        let (c, b, t, list) = (c.clone(), b.clone(), t.clone(), list.clone());
        async move {
            let body: Vec<Value> = list[i]
                .iter()
                .map(|n| json!({"id": id(*n), "type": "ParkingSpot", "occupancy": {"type": "Property", "value": "free"}}))
                .collect();
            let response = c.post(format!("{b}/entityOperations/update")).bearer_auth(&t).json(&body).send().await?;
            if response.status() != 204 {
                bail!("batch update: {}", response.status());
            }
            Ok(())
        }
    })
    .await?;
        let raw_elapsed = raw_time(&raw, |db| raw_update(db, n, n, 1000))?;
        figures.push(Figure {
            name: "attribute updates (batches of 1,000)".into(),
            unit: "updates/s",
            yunnao: rate(n, elapsed),
            server_us: cpu.per(n),
            raw: rate(n, raw_elapsed),
        });
    }

    if cli.wants("retrieve") {
        // 3. Retrieve by id.
        // At the chosen concurrency, and with the 32 connections of a busier broker.
        let reads = 50_000;
        let raw_elapsed = raw_time(&raw, |db| raw_retrieve(db, n, reads))?;
        for connections in [cli.concurrency, 32] {
            let cpu = ServerCpu::start(cli.server_pid);
            let elapsed = run_lean(&address, &cli.token, reads, connections, 200, move |i| {
                let path = format!("/ngsi-ld/v1/entities/{}", id(i * 13 % n));
                ("GET", path, Vec::new())
            })
            .await?;
            figures.push(Figure {
                name: format!("retrieve by id ({connections} connections)"),
                unit: "retrievals/s",
                yunnao: rate(reads, elapsed),
                server_us: cpu.per(reads),
                raw: rate(reads, raw_elapsed),
            });
        }
    }

    if cli.wants("query") {
        // 4. type + q, first page of 100.
        let cpu = ServerCpu::start(cli.server_pid);
        let queries = 20;
        let (c, b, t) = (client.clone(), base.clone(), cli.token.clone());
        let elapsed = run_concurrent(queries, 2, move |i| {
            let (c, b, t) = (c.clone(), b.clone(), t.clone());
            async move {
                let q = format!("capacity>={};occupancy==\"free\"", 40 + i % 10);
                let response = c
                    .get(format!("{b}/entities"))
                    .query(&[
                        ("type", "ParkingSpot"),
                        ("q", q.as_str()),
                        ("limit", "100"),
                        ("count", "true"),
                    ])
                    .bearer_auth(&t)
                    .send()
                    .await?;
                if response.status() != 200 {
                    bail!("query: {}", response.status());
                }
                response.bytes().await?;
                Ok(())
            }
        })
        .await?;
        let raw_elapsed = raw_time(&raw, |db| raw_query(db, queries))?;
        figures.push(Figure {
            name: "type + q query (100 of ~10,000 matches, counted)".into(),
            unit: "queries/s",
            yunnao: rate(queries, elapsed),
            server_us: cpu.per(queries),
            raw: rate(queries, raw_elapsed),
        });
    }

    if cli.wants("geo") {
        // 5. geo near (500 m).
        let cpu = ServerCpu::start(cli.server_pid);
        let geo = 2_000;
        let (c, b, t) = (client.clone(), base.clone(), cli.token.clone());
        let elapsed = run_concurrent(geo, cli.concurrency, move |i| {
            let (c, b, t) = (c.clone(), b.clone(), t.clone());
            async move {
                let (lon, lat) = position(i * 31);
                let response = c
                    .get(format!("{b}/entities"))
                    .query(&[
                        ("type", "ParkingSpot"),
                        ("georel", "near;maxDistance==500"),
                        ("geometry", "Point"),
                        ("coordinates", &format!("[{lon},{lat}]")),
                        ("limit", "100"),
                    ])
                    .bearer_auth(&t)
                    .send()
                    .await?;
                if response.status() != 200 {
                    bail!("near: {}", response.status());
                }
                response.bytes().await?;
                Ok(())
            }
        })
        .await?;
        let raw_elapsed = raw_time(&raw, |db| raw_near(db, geo))?;
        figures.push(Figure {
            name: "geo near 500 m".into(),
            unit: "queries/s",
            yunnao: rate(geo, elapsed),
            server_us: cpu.per(geo),
            raw: rate(geo, raw_elapsed),
        });
    }

    if cli.wants("temporal") {
        // 6. Temporal: one reservoir, one year of 5-minute values, hourly aggregation.
        let series = "urn:ngsi-ld:WaterObserved:bench-reservoir";
        let year_start = 1_735_689_600_000_i64; // 2025-01-01T00:00:00Z
        let points = 365 * 288;
        let value = |i: usize| {
            40.0 + 5.0 * ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).sin()
                + (i / 288) as f64 * 0.01
        };
        let at = |i: usize| year_start + i as i64 * 300_000;
        let first = client
        .post(format!("{base}/entities"))
        .bearer_auth(&cli.token)
        .json(&json!({"id": series, "type": "WaterObserved", "height": {"type": "Property", "value": value(0), "observedAt": rfc3339(at(0))}}))
        .send()
        .await?;
        if first.status() != 201 {
            bail!("temporal entity: {}", first.status());
        }
        let loaded = Instant::now();
        for chunk in (1..points).collect::<Vec<_>>().chunks(2000) {
            let body: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": series, "type": "WaterObserved", "height": {"type": "Property", "value": value(*i), "observedAt": rfc3339(at(*i))}}))
            .collect();
            let response = client
                .post(format!("{base}/entityOperations/update"))
                .bearer_auth(&cli.token)
                .json(&body)
                .send()
                .await?;
            if response.status() != 204 {
                bail!("temporal load: {}", response.status());
            }
        }
        println!(
            "loaded {points} temporal values in {:.1} s",
            loaded.elapsed().as_secs_f64()
        );
        let aggregations = 20;
        let cpu = ServerCpu::start(cli.server_pid);
        let mut total = Duration::ZERO;
        for _ in 0..aggregations {
            let started = Instant::now();
            let response = client
                .get(format!("{base}/temporal/entities/{series}"))
                .query(&[
                    ("attrs", "height"),
                    ("options", "aggregatedValues"),
                    ("aggrMethods", "avg,min,max"),
                    ("aggrPeriodDuration", "PT1H"),
                    ("timerel", "between"),
                    ("timeAt", &rfc3339(year_start)),
                    ("endTimeAt", &rfc3339(at(points))),
                ])
                .bearer_auth(&cli.token)
                .send()
                .await?;
            let body: Value = response.json().await?;
            total += started.elapsed();
            let hours = body["height"]["avg"].as_array().map_or(0, Vec::len);
            if hours != 365 * 24 {
                bail!("temporal aggregation returned {hours} hours");
            }
        }
        raw_time(&raw, |db| raw_temporal_load(db, points))?;
        let raw_ms = raw_time(&raw, |db| raw_temporal(db, points, aggregations))?.as_secs_f64()
            * 1000.0
            / aggregations as f64;
        let ms = total.as_secs_f64() * 1000.0 / aggregations as f64;
        figures.push(Figure {
            name: "temporal hourly avg/min/max over a year of 5-min values".into(),
            unit: "ms per query",
            yunnao: ms,
            server_us: cpu.per(aggregations),
            raw: raw_ms,
        });
    }

    println!(
        "\n{:58} {:>14} {:>14} {:>8}  {:14} {:>14}",
        format!("operation ({n} entities)"),
        "yunnao",
        "raw SQLite",
        "ratio",
        "",
        "server CPU/op"
    );
    for f in &figures {
        let ratio = if f.unit == "ms per query" {
            f.raw / f.yunnao
        } else {
            f.yunnao / f.raw
        };
        let server = f
            .server_us
            .map_or_else(String::new, |us| format!("{us:.0} µs"));
        println!(
            "{:58} {:>14.1} {:>14.1} {:>7.2}x  {:14} {:>14}",
            f.name, f.yunnao, f.raw, ratio, f.unit, server
        );
    }
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// --- the raw SQLite peer: same rows, same durability (WAL, synchronous=NORMAL) -------------

fn raw_open(path: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(path).context("raw SQLite")?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS entities (id TEXT PRIMARY KEY, type TEXT NOT NULL, attrs TEXT NOT NULL,
             min_lon REAL, min_lat REAL, max_lon REAL, max_lat REAL);
         CREATE INDEX IF NOT EXISTS entities_type ON entities (type, id);
         CREATE INDEX IF NOT EXISTS entities_location ON entities (min_lon, max_lon);
         CREATE TABLE IF NOT EXISTS history (entity_id TEXT NOT NULL, attr TEXT NOT NULL, at_ms INTEGER NOT NULL,
             number REAL, PRIMARY KEY (entity_id, attr, at_ms));",
    )?;
    Ok(db)
}

fn raw_time(
    raw: &Arc<std::sync::Mutex<rusqlite::Connection>>,
    work: impl FnOnce(&mut rusqlite::Connection) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let mut db = raw.lock().map_err(|_| anyhow::anyhow!("raw lock"))?;
    let started = Instant::now();
    work(&mut db)?;
    Ok(started.elapsed())
}

fn raw_create(db: &mut rusqlite::Connection, n: usize) -> anyhow::Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let tx = db.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO entities VALUES (?1, 'ParkingSpot', ?2, ?3, ?4, ?3, ?4)",
            )?;
            for i in chunk {
                let (lon, lat) = position(*i);
                insert.execute(rusqlite::params![
                    id(*i),
                    entity(*i, 0).to_string(),
                    lon,
                    lat
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

/// Read-modify-write of the JSON row, `per_tx` per transaction.
fn raw_update(
    db: &mut rusqlite::Connection,
    n: usize,
    count: usize,
    per_tx: usize,
) -> anyhow::Result<()> {
    for chunk in (0..count).collect::<Vec<_>>().chunks(per_tx) {
        let tx = db.transaction()?;
        {
            let mut read = tx.prepare_cached("SELECT attrs FROM entities WHERE id = ?1")?;
            let mut write = tx.prepare_cached("UPDATE entities SET attrs = ?2 WHERE id = ?1")?;
            for i in chunk {
                let key = id(i * 7 % n);
                let text: String = read.query_row([&key], |row| row.get(0))?;
                let mut value: Value = serde_json::from_str(&text)?;
                value["occupancy"] = json!({"type": "Property", "value": "occupied"});
                write.execute(rusqlite::params![key, value.to_string()])?;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

fn raw_retrieve(db: &mut rusqlite::Connection, n: usize, reads: usize) -> anyhow::Result<()> {
    let mut read = db.prepare_cached("SELECT attrs FROM entities WHERE id = ?1")?;
    for i in 0..reads {
        let text: String = read.query_row([id(i * 13 % n)], |row| row.get(0))?;
        let value: Value = serde_json::from_str(&text)?;
        std::hint::black_box(value.to_string());
    }
    Ok(())
}

fn raw_query(db: &mut rusqlite::Connection, queries: usize) -> anyhow::Result<()> {
    for i in 0..queries {
        let min = (40 + i % 10) as i64;
        let mut statement = db.prepare_cached(
            "SELECT attrs FROM entities WHERE type = 'ParkingSpot' \
             AND json_extract(attrs, '$.capacity.value') >= ?1 AND json_extract(attrs, '$.occupancy.value') = 'free' ORDER BY id",
        )?;
        let rows: Vec<String> = statement
            .query_map([min], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        std::hint::black_box(rows.iter().take(100).map(|r| r.len()).sum::<usize>() + rows.len());
    }
    Ok(())
}

fn raw_near(db: &mut rusqlite::Connection, queries: usize) -> anyhow::Result<()> {
    for i in 0..queries {
        let (lon, lat) = position(i * 31);
        let (dlat, dlon) = (
            500.0 / 111_195.0,
            500.0 / (111_195.0 * lat.to_radians().cos()),
        );
        let mut statement = db.prepare_cached(
            "SELECT attrs, min_lon, min_lat FROM entities WHERE type = 'ParkingSpot' AND min_lon <= ?1 AND max_lon >= ?2 \
             AND min_lat <= ?3 AND max_lat >= ?4 ORDER BY id",
        )?;
        let rows: Vec<(String, f64, f64)> = statement
            .query_map(
                rusqlite::params![lon + dlon, lon - dlon, lat + dlat, lat - dlat],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )?
            .collect::<Result<_, _>>()?;
        let near: Vec<&(String, f64, f64)> = rows
            .iter()
            .filter(|(_, x, y)| haversine(lon, lat, *x, *y) <= 500.0)
            .take(100)
            .collect();
        std::hint::black_box(near.len());
    }
    Ok(())
}

fn haversine(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().asin()
}

fn raw_temporal_load(db: &mut rusqlite::Connection, points: usize) -> anyhow::Result<()> {
    let year_start = 1_735_689_600_000_i64;
    let tx = db.transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT OR REPLACE INTO history VALUES ('r', 'height', ?1, ?2)")?;
        for i in 0..points {
            insert.execute(rusqlite::params![year_start + i as i64 * 300_000, i as f64])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn raw_temporal(
    db: &mut rusqlite::Connection,
    points: usize,
    queries: usize,
) -> anyhow::Result<()> {
    let year_start = 1_735_689_600_000_i64;
    for _ in 0..queries {
        let mut statement = db.prepare_cached(
            "SELECT (at_ms - ?1) / 3600000 AS bucket, AVG(number), MIN(number), MAX(number) FROM history \
             WHERE entity_id = 'r' AND attr = 'height' AND at_ms >= ?1 AND at_ms < ?2 GROUP BY bucket ORDER BY bucket",
        )?;
        let rows: Vec<(i64, f64, f64, f64)> = statement
            .query_map(
                rusqlite::params![year_start, year_start + points as i64 * 300_000],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )?
            .collect::<Result<_, _>>()?;
        let body = json!(rows.iter().map(|r| json!([r.1, r.0])).collect::<Vec<_>>());
        std::hint::black_box(body.to_string());
    }
    Ok(())
}
