//! The grid benchmark (`bench/grid/run.sh`).
//!
//! `lookups`: builds the city grid, resolves uniformly random points in the city's bounding box
//! in process, loads the same grid polygons into PostGIS (GiST index) and runs `ST_Contains`
//! lookups of the same kind of points with pgbench; checks that both answer the same grid for
//! 20,000 points; prints rates and the ratio.
//!
//! `incidents`: reports incidents through a running server's API (and grid lookups over HTTP).

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use yunnao_city::CityGrid;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Lookups {
        #[arg(long, default_value_t = 10)]
        resolution: u8,
        #[arg(long, default_value_t = 2_000_000)]
        points: usize,
        /// PostgreSQL with PostGIS installed (a database `yunnao_gridbench` is made there).
        #[arg(long)]
        postgres: String,
        #[arg(long, default_value_t = 15)]
        pgbench_seconds: u32,
    },
    Incidents {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 5000)]
        count: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 20_000)]
        lookups: usize,
    },
}

/// xorshift64*: the same points every run.
struct Points(u64);

impl Points {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn point(&mut self, (x0, y0, x1, y1): (f64, f64, f64, f64)) -> (f64, f64) {
        (
            x0 + self.next_f64() * (x1 - x0),
            y0 + self.next_f64() * (y1 - y0),
        )
    }
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

fn ewkt(outline: &geo::MultiPolygon) -> String {
    let mut out = String::from("SRID=4326;MULTIPOLYGON(");
    for (i, polygon) in outline.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('(');
        let rings = std::iter::once(polygon.exterior()).chain(polygon.interiors());
        for (j, ring) in rings.enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push('(');
            for (k, c) in ring.coords().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{} {}", c.x, c.y));
            }
            out.push(')');
        }
        out.push(')');
    }
    out.push(')');
    out
}

fn lookups_per_second(grid: &Arc<CityGrid>, points: usize, threads: usize) -> (f64, usize) {
    let bbox = grid.bbox();
    let started = Instant::now();
    let found: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let grid = grid.clone();
                scope.spawn(move || {
                    let mut rng = Points(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                    let mut found = 0;
                    for _ in 0..points / threads {
                        let (lon, lat) = rng.point(bbox);
                        if grid.lookup_code(lon, lat).is_some() {
                            found += 1;
                        }
                    }
                    found
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    (points as f64 / started.elapsed().as_secs_f64(), found)
}

async fn lookups(
    resolution: u8,
    points: usize,
    postgres: &str,
    seconds: u32,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let grid = Arc::new(CityGrid::build(resolution).map_err(anyhow::Error::msg)?);
    println!(
        "grid: resolution {resolution}, {} unit grids, built in {:.1} s",
        grid.len(),
        started.elapsed().as_secs_f64()
    );
    let (one, found) = lookups_per_second(&grid, points, 1);
    let (two, _) = lookups_per_second(&grid, points, 2);
    println!(
        "yunnao in process: {one:.0} lookups/s on 1 thread, {two:.0} lookups/s on 2 threads ({:.1}% of random points in the city's box fall inside a district)",
        100.0 * found as f64 / points as f64
    );
    println!(
        "yunnao peak memory (grid + benchmark): {} MiB",
        peak_rss_mib()
    );

    // PostGIS: the same polygons, GiST, ST_Contains.
    let admin = sqlx::PgPool::connect(postgres)
        .await
        .context("PostgreSQL")?;
    sqlx::query("DROP DATABASE IF EXISTS yunnao_gridbench")
        .execute(&admin)
        .await?;
    sqlx::query("CREATE DATABASE yunnao_gridbench")
        .execute(&admin)
        .await?;
    // A point lookup is OLTP: without this the planner launches a parallel worker per query
    // (about 15 ms each), which would make PostGIS look 100× slower than it is.
    sqlx::query("ALTER DATABASE yunnao_gridbench SET max_parallel_workers_per_gather = 0")
        .execute(&admin)
        .await?;
    admin.close().await;
    let bench_url = {
        let (base, _) = postgres.rsplit_once('/').context("database URL")?;
        format!("{base}/yunnao_gridbench")
    };
    let pool = sqlx::PgPool::connect(&bench_url).await?;
    sqlx::query("CREATE EXTENSION postgis")
        .execute(&pool)
        .await
        .context("PostGIS is not installed")?;
    sqlx::query("CREATE TABLE grid_cells (code text PRIMARY KEY, geom geometry(MultiPolygon, 4326) NOT NULL)")
        .execute(&pool)
        .await?;
    let loading = Instant::now();
    let mut rows = Vec::with_capacity(grid.len());
    grid.for_each_geometry(|code, outline| rows.push(format!("{code}\t{}\n", ewkt(outline))));
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw("COPY grid_cells (code, geom) FROM STDIN")
        .await?;
    for chunk in rows.chunks(10_000) {
        copy.send(chunk.concat().into_bytes()).await?;
    }
    copy.finish().await?;
    drop(conn);
    drop(rows);
    sqlx::query("CREATE INDEX grid_cells_geom ON grid_cells USING gist (geom)")
        .execute(&pool)
        .await?;
    sqlx::query("ANALYZE grid_cells").execute(&pool).await?;
    println!(
        "PostGIS: {} polygons loaded and indexed (GiST) in {:.1} s",
        grid.len(),
        loading.elapsed().as_secs_f64()
    );

    // Same answers?
    let bbox = grid.bbox();
    let mut rng = Points(42);
    let sample: Vec<(f64, f64)> = (0..20_000).map(|_| rng.point(bbox)).collect();
    let xs: Vec<f64> = sample.iter().map(|p| p.0).collect();
    let ys: Vec<f64> = sample.iter().map(|p| p.1).collect();
    let theirs: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT p.i, (SELECT g.code FROM grid_cells g WHERE ST_Contains(g.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4326)) ORDER BY g.code LIMIT 1) \
         FROM unnest($1::float8[], $2::float8[]) WITH ORDINALITY AS p(x, y, i) ORDER BY p.i",
    )
    .bind(&xs)
    .bind(&ys)
    .fetch_all(&pool)
    .await?;
    let (mut same, mut inside, mut shown) = (0, 0, 0);
    for ((_, code), (lon, lat)) in theirs.iter().zip(&sample) {
        let ours = grid.lookup_code(*lon, *lat);
        if code.is_some() {
            inside += 1;
        }
        if &ours == code {
            same += 1;
        } else if shown < 5 {
            shown += 1;
            println!("  differs at ({lon}, {lat}): yunnao {ours:?}, PostGIS {code:?}");
        }
    }
    println!(
        "agreement with PostGIS on 20,000 points ({inside} inside the city): {same} identical ({:.3}%)",
        100.0 * same as f64 / sample.len() as f64
    );
    pool.close().await;

    // pgbench: 2 clients (the machine's cores), uniformly random points in the same box.
    let script = std::env::temp_dir().join("yunnao-gridbench.sql");
    let mut file = std::fs::File::create(&script)?;
    writeln!(file, "\\set x random(0, 999999)")?;
    writeln!(file, "\\set y random(0, 999999)")?;
    writeln!(
        file,
        "SELECT code FROM grid_cells WHERE ST_Contains(geom, ST_SetSRID(ST_MakePoint({} + :x * {}, {} + :y * {}), 4326));",
        bbox.0,
        (bbox.2 - bbox.0) / 1e6,
        bbox.1,
        (bbox.3 - bbox.1) / 1e6
    )?;
    drop(file);
    let output = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            "2",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(&bench_url)
        .output()
        .context("pgbench")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok());
    let Some(tps) = tps else {
        bail!(
            "pgbench gave no rate: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    println!(
        "PostGIS ST_Contains + GiST, pgbench 2 clients, prepared statements: {tps:.0} lookups/s"
    );
    println!(
        "RATIO point→grid lookups, yunnao (2 threads, in process) / PostGIS (2 clients): {:.1}×",
        two / tps
    );
    println!(
        "RATIO point→grid lookups, yunnao (1 thread) / PostGIS (2 clients): {:.1}×",
        one / tps
    );
    Ok(())
}

async fn incidents(
    url: &str,
    token: &str,
    count: usize,
    concurrency: usize,
    lookup_count: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    // Points around each district's landmark, so every report lands in the city.
    const LANDMARKS: [(f64, f64); 10] = [
        (120.3845, 36.0620),
        (120.3550, 36.0880),
        (120.1970, 35.9600),
        (120.4680, 36.1070),
        (120.4330, 36.1450),
        (120.3960, 36.3070),
        (120.4470, 36.3890),
        (120.0330, 36.2640),
        (119.9600, 36.7870),
        (120.5170, 36.8880),
    ];
    const SERVICES: [&str; 6] = ["E0102", "E0104", "E0201", "E0402", "C0117", "E0506"];
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url, token) = (
            client.clone(),
            next.clone(),
            url.to_owned(),
            token.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return failures;
                }
                let (lon, lat) = LANDMARKS[i % 10];
                let jitter = (i as f64 * 0.618_034).fract() * 0.004 - 0.002;
                let body = serde_json::json!({
                    "service_code": SERVICES[i % SERVICES.len()],
                    "description": format!("基准测试案件 {i}"),
                    "location": {"lon": lon + jitter, "lat": lat - jitter},
                });
                let response = client
                    .post(format!("{url}/api/v1/governance/incidents"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                if !matches!(response, Ok(ref r) if r.status() == 201) {
                    failures += 1;
                }
            }
        }));
    }
    let mut failures = 0;
    for task in tasks {
        failures += task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "incidents reported through the API (located, registered, dispatched with deadlines, {concurrency} concurrent): {:.0}/s ({count} in {elapsed:.1} s, {failures} failed)",
        count as f64 / elapsed
    );

    // Lookups over HTTP, 2 connections, like pgbench's 2 clients.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (client, next, url, token) = (
            client.clone(),
            next.clone(),
            url.to_owned(),
            token.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Points(7);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= lookup_count {
                    return;
                }
                let (lon, lat) = rng.point((119.5, 35.5, 121.0, 37.1));
                let _ = client
                    .get(format!(
                        "{url}/api/v1/governance/grid/lookup?lon={lon}&lat={lat}"
                    ))
                    .bearer_auth(&token)
                    .send()
                    .await;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    println!(
        "grid lookups over HTTP (authenticated, 2 connections): {:.0}/s",
        lookup_count as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Lookups {
            resolution,
            points,
            postgres,
            pgbench_seconds,
        } => lookups(resolution, points, &postgres, pgbench_seconds).await,
        Command::Incidents {
            url,
            token,
            count,
            concurrency,
            lookups: lookup_count,
        } => incidents(&url, &token, count, concurrency, lookup_count).await,
    }
}
