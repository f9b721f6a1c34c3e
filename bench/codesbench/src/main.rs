//! The 一码通城 benchmark.
//!
//! - Offline verification on one core: a whole `QD1:` code (base45, zlib, COSE, CBOR claims,
//!   SM2 signature, expiry) per second beside `openssl speed sm2` verify measured in the same
//!   run (goal ≥ 1.0×), and the p99 of one verification (goal ≤ 2 ms).
//! - Codes issued (signed and encoded) per second on one core, in process; and over HTTP
//!   (`GET /api/v1/codes/mine`, with the bound cards read and the QR drawn).
//! - Verifications over HTTP (`POST /api/v1/codes/verify` by a scenario's API client, each
//!   code fresh, each scan logged and checked for replay) per second at a concurrency, and the
//!   p99 of one online verification one at a time (goal ≤ 5 ms).

use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Instant;
use yunnao_codes::{CardRef, Claims, KeySet, Signer, SigningKey, TrustedKey};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long)]
    token: String,
    /// Online verifications in all.
    #[arg(long, default_value_t = 4000)]
    verifications: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Residents showing codes.
    #[arg(long, default_value_t = 20)]
    residents: usize,
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
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

fn claims(now: i64, n: u64) -> Claims {
    Claims {
        issuer: "QD".into(),
        subject: format!("{:024x}", n),
        issued_at: now,
        expires_at: now + 30,
        nonce: n.to_be_bytes()[2..].to_vec(),
        holder_kind: "resident".into(),
        refs: ["social_security_card", "transit_account", "library_card"]
            .iter()
            .enumerate()
            .map(|(i, kind)| CardRef {
                kind: (*kind).into(),
                handle: format!("{:012x}", n * 3 + i as u64),
            })
            .collect(),
    }
}

fn offline() -> anyhow::Result<()> {
    let signer = Signer {
        kid: "Q1".into(),
        key: SigningKey::generate("SM2-SM3").map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let mut keys = KeySet::new();
    keys.insert(
        b"Q1".to_vec(),
        TrustedKey {
            key: signer.key.verify_key(),
            issuer: "QD".into(),
            not_before: None,
            not_after: None,
        },
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    // Issuance on one core.
    let n = 3_000;
    let started = Instant::now();
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        codes.push(
            yunnao_codes::issue(&signer, &claims(now, i as u64))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    let issued = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "codes issued in process: {issued:.0}/s on one core (CWT + COSE_Sign1 with SM2 + zlib + base45; {} characters each)",
        codes[0].len()
    );
    // Verification on one core, each timed.
    let mut latencies = Vec::with_capacity(n * 2);
    let started = Instant::now();
    for round in 0..2 {
        for code in &codes {
            let t = Instant::now();
            let v = yunnao_codes::verify(code, &keys, now + 1);
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            if !v.valid() {
                anyhow::bail!("round {round}: {:?}", v.error);
            }
        }
    }
    let ours = latencies.len() as f64 / started.elapsed().as_secs_f64();
    let p99 = percentile(&latencies, 0.99);
    println!(
        "offline verification: p50 {:.2} ms, p99 {p99:.2} ms on one core (goal ≤ 2 ms: {})",
        percentile(&latencies, 0.5),
        if p99 <= 2.0 { "met" } else { "SHORT" }
    );
    match openssl_sm2_verify() {
        Some(openssl) => println!(
            "offline verification: {ours:.0}/s on one core (the whole code) beside openssl speed sm2 verify {openssl:.0}/s (the signature alone): {:.2}× (goal ≥ 1.0×: {})",
            ours / openssl,
            if ours >= openssl { "met" } else { "SHORT" }
        ),
        None => {
            println!("offline verification: {ours:.0}/s on one core; openssl speed sm2 did not run")
        }
    }
    Ok(())
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
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

/// A valid resident identity number (GB 11643) for the `n`th bench resident.
fn person(n: usize) -> String {
    let stem = format!(
        "370202{}{:02}{:02}{:03}",
        1970 + n % 30,
        1 + n % 9,
        10 + n % 18,
        n % 1000
    );
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = stem
        .chars()
        .zip(weights)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    let check = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'][(sum % 11) as usize];
    format!("{stem}{check}")
}

async fn online(args: &Args) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    let base = args.url.trim_end_matches('/');
    let stamp = std::process::id();
    // Residents bound to identity numbers, each with a transit account on their code.
    let mut residents = Vec::new();
    for n in 0..args.residents {
        let username = format!("bench.code.{stamp}.{n}");
        let (status, body) = call(&client, reqwest::Method::POST, format!("{base}/api/v1/users"), &args.token,
            Some(json!({"username": username, "display_name": username, "password": "bench-password-1", "department": "bigdata", "roles": ["resident"]}))).await?;
        anyhow::ensure!(status == 201, "user: {status} {body}");
        let (status, body) = call(
            &client,
            reqwest::Method::PUT,
            format!("{base}/api/v1/services/holders/{username}"),
            &args.token,
            Some(json!({"holder_id": person(n), "holder_name": format!("压测居民{n}")})),
        )
        .await?;
        anyhow::ensure!(status == 200, "holder: {status} {body}");
        let signed: Value = client
            .post(format!("{base}/api/v1/auth/sign-in"))
            .json(&json!({"username": username, "password": "bench-password-1"}))
            .send()
            .await?
            .json()
            .await?;
        let token = signed["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (status, _) = call(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/v1/codes/cards"),
            &token,
            Some(json!({"kind": "transit_account", "id": format!("QDMETRO-B{n:06}")})),
        )
        .await?;
        anyhow::ensure!(status == 204, "card: {status}");
        residents.push(token);
    }
    let (status, key) = call(&client, reqwest::Method::POST, format!("{base}/api/v1/api-clients"), &args.token,
        Some(json!({"name": format!("bench gate {stamp}"), "department": "transport", "scopes": ["code-scans:write"]}))).await?;
    anyhow::ensure!(status == 201, "api client: {status} {key}");
    let gate = key["api_key"].as_str().unwrap_or_default().to_owned();

    // Rounds of fresh codes (they live 30 s): issued over HTTP, then verified at the metro.
    let round = 1_000.min(args.verifications);
    let mut issue_secs = 0.0;
    let mut verify_secs = 0.0;
    let mut issued = 0usize;
    let mut verified = 0usize;
    while verified < args.verifications {
        let started = Instant::now();
        let codes: Vec<String> = futures::stream::iter(0..round)
            .map(|i| {
                let (client, token) = (client.clone(), residents[i % residents.len()].clone());
                let url = format!("{base}/api/v1/codes/mine");
                async move {
                    call(&client, reqwest::Method::GET, url, &token, None)
                        .await
                        .ok()
                        .and_then(|(_, body)| body["code"].as_str().map(str::to_owned))
                }
            })
            .buffer_unordered(args.concurrency)
            .filter_map(|c| async move { c })
            .collect()
            .await;
        issue_secs += started.elapsed().as_secs_f64();
        issued += codes.len();
        let started = Instant::now();
        let accepted: usize = futures::stream::iter(codes)
            .map(|code| {
                let (client, gate) = (client.clone(), gate.clone());
                let url = format!("{base}/api/v1/codes/verify");
                async move {
                    matches!(
                        call(
                            &client,
                            reqwest::Method::POST,
                            url,
                            &gate,
                            Some(json!({"scenario": "metro", "code": code}))
                        )
                        .await,
                        Ok((200, _))
                    )
                }
            })
            .buffer_unordered(args.concurrency)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        verify_secs += started.elapsed().as_secs_f64();
        anyhow::ensure!(accepted == round, "only {accepted} of {round} accepted");
        verified += accepted;
    }
    println!(
        "codes issued over HTTP: {:.0}/s at concurrency {} ({issued} codes, cards read, QR drawn)",
        issued as f64 / issue_secs,
        args.concurrency
    );
    println!(
        "online verification over HTTP: {:.0}/s at concurrency {} ({verified} scans, each logged and checked for replay)",
        verified as f64 / verify_secs,
        args.concurrency
    );
    // One at a time: the latency of a single online verification.
    let mut latencies = Vec::new();
    for i in 0..500 {
        let (_, body) = call(
            &client,
            reqwest::Method::GET,
            format!("{base}/api/v1/codes/mine"),
            &residents[i % residents.len()],
            None,
        )
        .await?;
        let code = body["code"].as_str().unwrap_or_default().to_owned();
        let t = Instant::now();
        let (status, body) = call(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/v1/codes/verify"),
            &gate,
            Some(json!({"scenario": "metro", "code": code})),
        )
        .await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == 200, "{status} {body}");
    }
    let p99 = percentile(&latencies, 0.99);
    println!(
        "online verification over HTTP, one at a time: p50 {:.2} ms, p99 {p99:.2} ms (goal ≤ 5 ms: {})",
        percentile(&latencies, 0.5),
        if p99 <= 5.0 { "met" } else { "SHORT" }
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    offline()?;
    online(&args).await
}
