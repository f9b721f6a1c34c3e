//! The data hub benchmark (issue 24).
//!
//! - `tables`: a file of `--rows` rows of 市场主体登记信息 (two personal fields, sealed with
//!   SM4-GCM on import) imported through `POST /api/v1/data/datasets/{id}/versions` (both
//!   passes, sealing, `COPY`, the schema's indexes) beside PostgreSQL `COPY` of the same file
//!   into a plain table with the same indexes, in the same run (goal ≥ 0.5×); then
//!   `datastore_search` with a filter and a sort, as a grantee (masking, metering and an
//!   audit record per read on), beside the same query run directly on the database at the
//!   same concurrency (goal ≥ 0.5×).
//! - `catalogue-seed` writes `--datasets` datasets into the catalogue's table (the server is
//!   restarted to load them); `catalogue` measures full-text search over HTTP, p99 (goal
//!   ≤ 10 ms).

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sqlx::Connection;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Tables {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        /// The server's database (the peer runs on it too).
        #[arg(long)]
        pg: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    CatalogueSeed {
        #[arg(long)]
        pg: String,
        #[arg(long, default_value_t = 10_000)]
        datasets: usize,
    },
    Catalogue {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 4000)]
        queries: usize,
    },
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

const DISTRICTS: [&str; 10] = [
    "市南区",
    "市北区",
    "黄岛区",
    "崂山区",
    "李沧区",
    "城阳区",
    "即墨区",
    "胶州市",
    "平度市",
    "莱西市",
];
const SURNAMES: [&str; 12] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
];

/// SplitMix64.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn write_file(path: &std::path::Path, rows: usize) -> anyhow::Result<u64> {
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    writeln!(
        out,
        "credit_code,name,legal_person,legal_person_id,district,registered_capital,established"
    )?;
    for i in 0..rows as u64 {
        let r = mix(i);
        let first = format!(
            "370202{:04}{:02}{:02}{:03}",
            1950 + r % 50,
            1 + r % 12,
            1 + (r >> 8) % 28,
            (r >> 16) % 1000
        );
        let check = {
            const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
            let sum: u32 = first
                .bytes()
                .zip(W)
                .map(|(b, w)| u32::from(b - b'0') * w)
                .sum();
            b"10X98765432"[(sum % 11) as usize] as char
        };
        writeln!(
            out,
            "9137{:014},青岛{}企业{},{}{},{first}{check},{},{}.{:02},{}-{:02}-{:02}",
            i,
            r % 97,
            i,
            SURNAMES[(r >> 20) as usize % SURNAMES.len()],
            ["伟", "芳", "娜", "强", "磊"][(r >> 24) as usize % 5],
            DISTRICTS[(r >> 28) as usize % DISTRICTS.len()],
            (r >> 32) % 100_000,
            (r >> 40) % 100,
            2000 + (r >> 44) % 25,
            1 + (r >> 50) % 12,
            1 + (r >> 54) % 28,
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

async fn user(
    client: &reqwest::Client,
    url: &str,
    admin: &str,
    name: &str,
    department: &str,
) -> anyhow::Result<String> {
    let (status, body) = call(
        client,
        reqwest::Method::POST,
        &format!("{url}/api/v1/users"),
        admin,
        Some(json!({"username": name, "display_name": name, "password": "bench-password-1", "department": department, "roles": ["dept_admin"]})),
    )
    .await?;
    anyhow::ensure!(
        status == 201 || status == 409,
        "user {name}: {status} {body}"
    );
    let response = client
        .post(format!("{url}/api/v1/auth/sign-in"))
        .json(&json!({"username": name, "password": "bench-password-1"}))
        .send()
        .await?;
    let body: Value = response.json().await?;
    Ok(body["access_token"].as_str().unwrap_or("").to_owned())
}

/// Runs `one` from `concurrency` tasks for `seconds`; (queries per second, p50 ms, p99 ms).
async fn load<F, Fut>(concurrency: usize, seconds: u64, one: F) -> (f64, f64, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let one = Arc::new(one);
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let one = one.clone();
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut n = w;
                while Instant::now() < end {
                    let t = Instant::now();
                    if one(n).await {
                        times.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    n += concurrency;
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        all.len() as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

async fn tables(
    url: String,
    admin: String,
    pg: String,
    rows: usize,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let market = user(&client, &url, &admin, "market.bench", "market").await?;
    let water = user(&client, &url, &admin, "water.bench", "water").await?;
    let dir = std::env::temp_dir().join(format!("yunnao-databench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("market.csv");
    let bytes = write_file(&file, rows)?;
    println!("file: {rows} rows, {} MiB", bytes >> 20);

    // The peer: COPY of the same file into a plain table with the same indexes.
    let mut connection = sqlx::PgConnection::connect(&pg).await?;
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_peer_market")
        .execute(&mut connection)
        .await?;
    let started = Instant::now();
    let mut tx = connection.begin().await?;
    sqlx::raw_sql(
        "CREATE TABLE bench_peer_market (_id BIGSERIAL PRIMARY KEY, credit_code TEXT, name TEXT, legal_person TEXT, legal_person_id TEXT, district TEXT, registered_capital DOUBLE PRECISION, established TEXT)",
    )
    .execute(&mut *tx)
    .await?;
    {
        let mut copy = tx
            .copy_in_raw("COPY bench_peer_market (credit_code, name, legal_person, legal_person_id, district, registered_capital, established) FROM STDIN WITH (FORMAT csv, HEADER true)")
            .await?;
        let mut reader = tokio::fs::File::open(&file).await?;
        copy.read_from(&mut reader).await?;
        copy.finish().await?;
    }
    for sql in [
        "CREATE INDEX bench_peer_i0 ON bench_peer_market (credit_code)",
        "CREATE INDEX bench_peer_i1 ON bench_peer_market (district)",
        "CREATE INDEX bench_peer_i2 ON bench_peer_market (established)",
        "CREATE INDEX bench_peer_c0 ON bench_peer_market (credit_code, established)",
        "CREATE INDEX bench_peer_c1 ON bench_peer_market (district, established)",
    ] {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let peer_seconds = started.elapsed().as_secs_f64();
    let peer_rate = rows as f64 / peer_seconds;
    println!(
        "PostgreSQL COPY (plain table, same indexes): {peer_rate:.0} rows/s ({peer_seconds:.1} s)"
    );
    // As the import does after its commit: statistics and the visibility map.
    sqlx::raw_sql("VACUUM ANALYZE bench_peer_market")
        .execute(&mut connection)
        .await?;

    // Ours: the same file through the import API.
    let started = Instant::now();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        tokio::fs::File::open(&file).await?,
        1 << 20,
    ));
    let response = client
        .post(format!(
            "{url}/api/v1/data/datasets/market-entities/versions?format=csv"
        ))
        .bearer_auth(&market)
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let report: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status == 201, "import: {status} {report}");
    let ours_seconds = started.elapsed().as_secs_f64();
    let ours_rate = rows as f64 / ours_seconds;
    println!(
        "yunnao import (HTTP upload, typed by the schema, 2 personal fields sealed with SM4-GCM, COPY, indexes): {ours_rate:.0} rows/s ({ours_seconds:.1} s) = {:.2}x PostgreSQL COPY (goal >= 0.5x)",
        ours_rate / peer_rate
    );
    let version = report["version"]["version"].as_i64().unwrap_or(1);

    let _ = std::fs::remove_file(&file);

    // A grant for water with masking.
    let until = "2027-06-01T00:00:00Z";
    let (status, request) = call(
        &client,
        reqwest::Method::POST,
        &format!("{url}/api/v1/data/requests"),
        &water,
        Some(json!({"dataset": "market-entities", "purpose": "基准测试", "legal_basis": "基准测试",
                    "fields": ["credit_code", "name", "legal_person", "legal_person_id", "district", "registered_capital", "established"],
                    "valid_until": until})),
    )
    .await?;
    if status == 201 {
        let id = request["id"].as_str().unwrap_or("");
        let (status, decided) = call(
            &client,
            reqwest::Method::POST,
            &format!("{url}/api/v1/data/requests/{id}/decision"),
            &market,
            Some(json!({"decision": "approve", "masking": {"legal_person": "mask", "legal_person_id": "hash"}})),
        )
        .await?;
        anyhow::ensure!(status == 200, "approve: {status} {decided}");
    }
    let table: (String,) = sqlx::query_as(
        "SELECT table_name FROM data_versions WHERE dataset = 'market-entities' AND version = $1",
    )
    .bind(version)
    .fetch_one(&mut connection)
    .await?;
    let table = table.0;
    // The import's VACUUM runs after it answers; let it finish before measuring reads.
    for _ in 0..600 {
        let done: (bool,) = sqlx::query_as("SELECT COALESCE(bool_or(last_vacuum IS NOT NULL), false) FROM pg_stat_user_tables WHERE relname = $1")
            .bind(&table)
            .fetch_one(&mut connection)
            .await?;
        if done.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect(&pg)
        .await?;
    for include_total in [true, false] {
        // Ours: datastore_search as the grantee.
        let (c, u, t) = (client.clone(), url.clone(), water.clone());
        let ours = load(concurrency, seconds, move |n| {
            let (c, u, t) = (c.clone(), u.clone(), t.clone());
            async move {
                let body = json!({"resource_id": "market-entities", "filters": {"district": DISTRICTS[n % DISTRICTS.len()]},
                                  "sort": "established desc", "limit": 100, "include_total": include_total});
                match c.post(format!("{u}/api/3/action/datastore_search")).bearer_auth(&t).json(&body).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await;
        // The database: the same query on the same table, directly.
        let (p, table) = (pool.clone(), table.clone());
        let raw = load(concurrency, seconds, move |n| {
            let (p, table) = (p.clone(), table.clone());
            async move {
                let district = DISTRICTS[n % DISTRICTS.len()];
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT _id, credit_code, name, legal_person, legal_person_id, district, registered_capital, established FROM {table} WHERE district = $1 ORDER BY established DESC, _id ASC LIMIT 100"
                )))
                .bind(district)
                .fetch_all(&p)
                .await;
                let count = if include_total {
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE district = $1")))
                        .bind(district)
                        .fetch_one(&p)
                        .await
                        .is_ok()
                } else {
                    true
                };
                rows.is_ok() && count
            }
        })
        .await;
        println!(
            "datastore_search (filter district, sort established desc, 100 rows, include_total={include_total}; grantee, masked, metered, audited) x{concurrency}: {:.0}/s p50 {:.2} ms p99 {:.2} ms; PostgreSQL direct: {:.0}/s p50 {:.2} ms p99 {:.2} ms; ratio {:.2}x (goal >= 0.5x)",
            ours.0,
            ours.1,
            ours.2,
            raw.0,
            raw.1,
            raw.2,
            ours.0 / raw.0
        );
    }
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_peer_market")
        .execute(&mut connection)
        .await?;
    Ok(())
}

const WORDS: [&str; 24] = [
    "交通",
    "出行",
    "公交",
    "地铁",
    "空气",
    "质量",
    "水质",
    "医疗",
    "机构",
    "学校",
    "停车",
    "企业",
    "纳税",
    "信用",
    "养老",
    "就业",
    "旅游",
    "景区",
    "充电",
    "住房",
    "公积金",
    "应急",
    "财政",
    "体育",
];
const THEMES: [&str; 6] = [
    "交通出行",
    "生态环保",
    "健康医疗",
    "经济建设",
    "教育文化",
    "社会保障",
];
const DEPARTMENTS: [&str; 10] = [
    "transport",
    "ecology",
    "health",
    "market",
    "education",
    "hrss",
    "tax",
    "water",
    "housing",
    "emergency",
];

async fn catalogue_seed(pg: String, datasets: usize) -> anyhow::Result<()> {
    let mut connection = sqlx::PgConnection::connect(&pg).await?;
    let mut tx = connection.begin().await?;
    let now = 1_796_000_000_000i64;
    for i in 0..datasets as u64 {
        let r = mix(i + 77);
        let w = |k: u64| WORDS[((r >> k) % WORDS.len() as u64) as usize];
        let title = format!("{}{}{}数据{i}", w(0), w(8), w(16));
        let doc = json!({
            "id": format!("bench-{i}"), "department": DEPARTMENTS[(r >> 24) as usize % DEPARTMENTS.len()],
            "title_zh": title, "title_en": format!("Bench dataset {i}"),
            "description_zh": format!("{}与{}的{}统计, 覆盖全市。", w(28), w(34), w(40)),
            "description_en": "Synthetic dataset for the catalogue benchmark.",
            "themes": [THEMES[(r >> 44) as usize % THEMES.len()]], "keywords": [w(48), w(54)],
            "frequency": "monthly", "spatial": "青岛市", "temporal_start": null, "temporal_end": null,
            "source_system": "基准测试", "contact": "bench", "licence": "CC-BY-4.0",
            "level": "general", "sharing": "open",
            "fields": [{"name": "value", "type": "integer", "unit": null, "description_zh": "数值", "level": "general", "personal": "none"}]
        });
        sqlx::query("INSERT INTO data_datasets (id, department, level, sharing, doc, created_at_ms, modified_at_ms) VALUES ($1, $2, 'general', 'open', $3, $4, $4) ON CONFLICT DO NOTHING")
            .bind(doc["id"].as_str().unwrap_or(""))
            .bind(doc["department"].as_str().unwrap_or(""))
            .bind(doc.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    println!("catalogue: {datasets} datasets written");
    Ok(())
}

async fn catalogue(url: String, queries: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let (_, first) = call(
        &client,
        reqwest::Method::GET,
        &format!("{url}/api/v1/data/datasets?rows=1"),
        "",
        None,
    )
    .await?;
    let total = first["count"].as_i64().unwrap_or(0);
    let mut times = Vec::with_capacity(queries);
    let mut hits = 0i64;
    for i in 0..queries as u64 {
        let r = mix(i + 5);
        let q = match i % 3 {
            0 => WORDS[(r % 24) as usize].to_owned(),
            1 => format!(
                "{} {}",
                WORDS[(r % 24) as usize],
                WORDS[((r >> 8) % 24) as usize]
            ),
            _ => format!(
                "{}{}",
                WORDS[(r % 24) as usize],
                WORDS[((r >> 8) % 24) as usize]
            ),
        };
        let theme = THEMES[((r >> 16) % 6) as usize];
        let path = if i % 2 == 0 {
            format!("{url}/api/v1/data/datasets?q={q}&rows=20")
        } else {
            format!("{url}/api/v1/data/datasets?q={q}&theme={theme}&rows=20")
        };
        let started = Instant::now();
        let response = client.get(&path).send().await?;
        let body: Value = response.json().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        hits += body["count"].as_i64().unwrap_or(0);
    }
    println!(
        "catalogue search over {total} datasets (Chinese words and bigrams, facets, HTTP): p50 {:.2} ms p99 {:.2} ms (goal p99 <= 10 ms), {:.0} hits per query",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        hits as f64 / queries as f64
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Tables {
            url,
            token,
            pg,
            rows,
            concurrency,
            seconds,
        } => tables(url, token, pg, rows, concurrency, seconds).await,
        Command::CatalogueSeed { pg, datasets } => catalogue_seed(pg, datasets).await,
        Command::Catalogue { url, queries } => catalogue(url, queries).await,
    }
}
