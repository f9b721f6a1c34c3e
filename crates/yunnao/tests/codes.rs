//! One code for the city through the API: a resident's dynamic code with the cards bound to
//! it, scenarios that learn only what they may, replays refused, a tampered code failing at its
//! stage, the holder's scan history.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::TestServer;
use yunnao_store::backend_tests;
use yunnao_store::testing::TestBackend;

async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let response = server.request(method, path, Some(token), body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn codes_show_each_scenario_only_its_claims(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let resident = server
        .user(&admin, "code.resident", "bigdata", "resident")
        .await;
    let person = "370202198801010019";
    let (status, _) = call(
        &server,
        Method::PUT,
        "/api/v1/services/holders/code.resident",
        &admin,
        Some(json!({"holder_id": person, "holder_name": "张三"})),
    )
    .await;
    assert_eq!(status, 200);
    let hrss = server.user(&admin, "code.hrss", "hrss", "operator").await;
    let (status, card) = call(&server, Method::POST, "/api/v1/services/licences", &hrss,
        Some(json!({"licence_type": "social_security_card", "holder_id": person, "holder_name": "张三"}))).await;
    assert_eq!(status, 201, "{card}");
    let card_id = card["document"]["id"].as_str().expect("id").to_owned();
    let (status, problem) = call(
        &server,
        Method::POST,
        "/api/v1/codes/cards",
        &resident,
        Some(json!({"kind": "boarding_pass", "id": "X"})),
    )
    .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("kind")));
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/codes/cards",
        &resident,
        Some(json!({"kind": "transit_account", "id": "QDMETRO-000123456"})),
    )
    .await;
    assert_eq!(status, 204);

    let (status, scenarios) = call(
        &server,
        Method::GET,
        "/api/v1/codes/scenarios",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(scenarios.as_array().map_or(0, Vec::len) >= 30);
    let (status, mine) = call(&server, Method::GET, "/api/v1/codes/mine", &resident, None).await;
    assert_eq!(status, 200, "{mine}");
    let code = mine["code"].as_str().expect("code").to_owned();
    assert!(code.starts_with("QD1:"));
    assert!(
        mine["qr_version"].as_i64() <= Some(10),
        "{}",
        mine["qr_version"]
    );
    assert!(!code.contains(person));
    let cards: Vec<&str> = mine["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        cards.contains(&"transit_account") && cards.contains(&"social_security_card"),
        "{cards:?}"
    );

    // The metro learns the transit account and nothing else; the hotel the name and number.
    let metro = server
        .user(&admin, "metro.gate", "transport", "operator")
        .await;
    let police = server
        .user(&admin, "hotel.desk", "police", "operator")
        .await;
    let (status, answer) = call(
        &server,
        Method::POST,
        "/api/v1/codes/verify",
        &metro,
        Some(json!({"scenario": "metro", "code": code})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], true, "{answer}");
    assert_eq!(
        answer["claims"],
        json!({"transit_account": "QDMETRO-000123456"})
    );
    let (_, again) = call(
        &server,
        Method::POST,
        "/api/v1/codes/verify",
        &metro,
        Some(json!({"scenario": "metro", "code": code})),
    )
    .await;
    assert_eq!(
        (again["status"].clone(), again["result"].clone()),
        (json!(409), json!("replayed")),
        "a dynamic code is taken once per scenario: {again}"
    );
    assert!(
        again.get("claims").is_none(),
        "a refusal tells nothing of the holder"
    );
    let (_, hotel) = call(
        &server,
        Method::POST,
        "/api/v1/codes/verify",
        &police,
        Some(json!({"scenario": "hotel", "code": code})),
    )
    .await;
    assert_eq!(
        hotel["claims"],
        json!({"name": "张三", "id_number": person}),
        "{hotel}"
    );
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/codes/verify",
        &metro,
        Some(json!({"scenario": "hotel", "code": code})),
    )
    .await;
    assert_eq!(status, 403, "only the scenario's operator verifies there");
    let (_, hospital) = call(
        &server,
        Method::POST,
        "/api/v1/codes/verify",
        &admin,
        Some(json!({"scenario": "hospital", "code": code})),
    )
    .await;
    // A licence comes whole, its seal verified.
    let licence = &hospital["claims"]["social_security_card"];
    assert_eq!(licence["document"]["id"], card_id.as_str(), "{hospital}");
    assert_eq!(licence["seal_verified"], true);
    assert_eq!(hospital["claims"]["name"], "张三");
    assert!(hospital["claims"].get("id_number").is_none());

    // A code changed in one character fails at a stage, and the answer says which.
    let mut chars: Vec<char> = code.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == '0' { '1' } else { '0' };
    let tampered: String = chars.into_iter().collect();
    let (_, refused) = call(
        &server,
        Method::POST,
        "/api/v1/codes/verify",
        &metro,
        Some(json!({"scenario": "bus", "code": tampered})),
    )
    .await;
    assert_eq!(refused["status"], 422, "{refused}");
    assert_eq!(refused["prefix"], true);
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("code refused"))
    );
    let (_, wrong) = call(
        &server,
        Method::POST,
        "/api/v1/codes/verify",
        &metro,
        Some(json!({"scenario": "bus", "code": "XX1:6BFOXN"})),
    )
    .await;
    assert_eq!(
        (wrong["prefix"].clone(), wrong["status"].clone()),
        (json!(false), json!(422))
    );

    let (status, scans) = call(
        &server,
        Method::GET,
        "/api/v1/codes/scans/mine",
        &resident,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let results: Vec<&str> = scans
        .as_array()
        .expect("scans")
        .iter()
        .filter_map(|s| s["result"].as_str())
        .collect();
    assert_eq!(
        results.iter().filter(|r| **r == "accepted").count(),
        3,
        "{results:?}"
    );
    assert!(results.contains(&"replayed"));
    let (status, keys) = call(&server, Method::GET, "/api/v1/codes/keys", &admin, None).await;
    assert_eq!(status, 200);
    let mut algorithms: Vec<&str> = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["algorithm"].as_str())
        .collect();
    algorithms.sort_unstable();
    assert_eq!(algorithms, ["ES256", "SM2-SM3"], "{keys}");
    let stranger = server
        .user(&admin, "code.stranger", "bigdata", "resident")
        .await;
    let (status, _) = call(&server, Method::GET, "/api/v1/codes/mine", &stranger, None).await;
    assert_eq!(status, 403, "an unbound account has no code");
    server.cleanup().await;
}

backend_tests!(codes_show_each_scenario_only_its_claims);

/// A second node on the same database, for the replay and revocation checks across nodes.
struct Node {
    base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn second_node(server: &TestServer) -> Node {
    let app = yunnao::build(&server.config).await.expect("second node");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        yunnao::serve(app, listener, None, async {
            let _ = stopped.await;
        })
        .await
        .expect("second node serves");
    });
    Node {
        base,
        shutdown: Some(shutdown),
        task,
    }
}

async fn call_at(
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn api_key(server: &TestServer, admin: &str, department: &str, scope: &str) -> String {
    let (status, client) = call(
        server,
        Method::POST,
        "/api/v1/api-clients",
        admin,
        Some(json!({"name": format!("{department} gate {scope}"), "department": department, "scopes": [scope]})),
    )
    .await;
    assert_eq!(status, 201, "{client}");
    client["api_key"].as_str().expect("key").to_owned()
}

/// The subject a code carries, read offline through the published key set.
fn subject_of(keys: &Value, code: &str) -> String {
    let set: yunnao_codes::hub::SignedKeySet =
        serde_json::from_value(keys.clone()).expect("key set");
    let pinned = set.signature.public_key.clone();
    let (trusted, _, _) = set.verified(&pinned).expect("signed");
    let verdict = yunnao_codes::verify(code, &trusted, yunnao_core::time::now_ms() / 1000);
    assert!(verdict.valid(), "{verdict:?}");
    verdict.decoded.expect("ours").subject
}

/// A verifier's API client scans; a replay on another node is refused; the bureau rotates
/// the key (old codes still verify, the key set lists both), ES256 codes verify, a revoked
/// holder and a renewed (lost) code and a revoked card are refused at once on every node and
/// listed in the signed key set, other issuers verify once trusted, the figures count it all.
async fn codes_rotate_revoke_and_trust_other_issuers(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let resident = server
        .user(&admin, "code.holder", "bigdata", "resident")
        .await;
    let person = "370202198801010019";
    let (status, _) = call(
        &server,
        Method::PUT,
        "/api/v1/services/holders/code.holder",
        &admin,
        Some(json!({"holder_id": person, "holder_name": "李四"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/codes/cards",
        &resident,
        Some(json!({"kind": "transit_account", "id": "QDMETRO-77"})),
    )
    .await;
    assert_eq!(status, 204);
    let gate = api_key(&server, &admin, "transport", "code-scans:write").await;
    let reader = api_key(&server, &admin, "transport", "code-scans:read").await;
    let node = second_node(&server).await;
    let verify = |base: String, key: String, scenario: &'static str, code: String| async move {
        call_at(
            &base,
            Method::POST,
            "/api/v1/codes/verify",
            &key,
            Some(json!({"scenario": scenario, "code": code})),
        )
        .await
    };

    let (_, mine) = call(&server, Method::GET, "/api/v1/codes/mine", &resident, None).await;
    let first = mine["code"].as_str().expect("code").to_owned();
    assert_eq!(mine["kid"], "Q1");
    let (status, answer) = verify(server.base.clone(), gate.clone(), "metro", first.clone()).await;
    assert_eq!(
        (status, answer["claims"].clone()),
        (200, json!({"transit_account": "QDMETRO-77"})),
        "{answer}"
    );
    // The same code at the same scenario through the other node: a replay.
    let (status, replay) = verify(node.base.clone(), gate.clone(), "metro", first.clone()).await;
    assert_eq!(
        (status, replay["result"].clone()),
        (409, json!("replayed")),
        "{replay}"
    );
    let (status, _) = verify(server.base.clone(), reader.clone(), "metro", first.clone()).await;
    assert_eq!(status, 403, "a read-only key does not verify");

    // Rotation: Q1 retires, Q2 signs; Q1's codes still verify, the key set lists both.
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/codes/keys/rotation",
        &resident,
        Some(json!({"algorithm": "SM2-SM3"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, rotated) = call(
        &server,
        Method::POST,
        "/api/v1/codes/keys/rotation",
        &admin,
        Some(json!({"algorithm": "SM2-SM3"})),
    )
    .await;
    assert_eq!((status, rotated["kid"].clone()), (201, json!("Q2")));
    let (status, answer) = verify(server.base.clone(), gate.clone(), "bus", first.clone()).await;
    assert_eq!(
        status, 200,
        "a code of the retired key still verifies: {answer}"
    );
    let (_, mine) = call(&server, Method::GET, "/api/v1/codes/mine", &resident, None).await;
    assert_eq!(mine["kid"], "Q2");
    let second = mine["code"].as_str().expect("code").to_owned();
    let (_, keys) = call(&server, Method::GET, "/api/v1/codes/keys", &admin, None).await;
    let kids: Vec<(String, bool)> = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap_or_default().to_owned(),
                k["retired_at"].is_string(),
            )
        })
        .collect();
    assert!(
        kids.contains(&("Q1".into(), true)) && kids.contains(&("Q2".into(), false)),
        "{kids:?}"
    );
    // The other node reloads the keys within its reload period, then verifies Q2's codes.
    tokio::time::sleep(yunnao_codes::hub::RELOAD_EVERY + std::time::Duration::from_millis(500))
        .await;
    let (status, answer) = verify(node.base.clone(), gate.clone(), "metro", second.clone()).await;
    assert_eq!(status, 200, "{answer}");

    // ES256, for scenarios outside China.
    let (status, es) = call(
        &server,
        Method::GET,
        "/api/v1/codes/mine?algorithm=ES256",
        &resident,
        None,
    )
    .await;
    assert_eq!(
        (status, es["algorithm"].clone()),
        (200, json!("ES256")),
        "{es}"
    );
    let (status, answer) = verify(
        server.base.clone(),
        gate.clone(),
        "metro",
        es["code"].as_str().expect("code").to_owned(),
    )
    .await;
    assert_eq!(
        (status, answer["algorithm"].clone()),
        (200, json!("ES256")),
        "{answer}"
    );
    let (status, png) = {
        let r = server
            .request(Method::GET, "/api/v1/codes/mine.png", Some(&resident), None)
            .await;
        (r.status().as_u16(), r.bytes().await.expect("png"))
    };
    assert_eq!((status, &png[..4]), (200, &b"\x89PNG"[..]));

    // The bureau revokes the holder: refused at once on both nodes, listed in the key set.
    let (_, mine) = call(&server, Method::GET, "/api/v1/codes/mine", &resident, None).await;
    let third = mine["code"].as_str().expect("code").to_owned();
    let subject = subject_of(&keys, &first);
    let (status, _) = call(
        &server,
        Method::PUT,
        &format!("/api/v1/codes/revocations/{subject}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let revoked_at = std::time::Instant::now();
    for base in [&server.base, &node.base] {
        let (status, refused) = verify(base.clone(), gate.clone(), "bus", third.clone()).await;
        assert_eq!(
            (status, refused["result"].clone()),
            (422, json!("revoked")),
            "{refused}"
        );
    }
    let refused_within = revoked_at.elapsed();
    assert!(
        refused_within < std::time::Duration::from_secs(60),
        "{refused_within:?}"
    );
    let (status, _) = call(&server, Method::GET, "/api/v1/codes/mine", &resident, None).await;
    assert_eq!(status, 403, "a revoked holder gets no code");
    let (_, keys) = call(&server, Method::GET, "/api/v1/codes/keys", &admin, None).await;
    assert!(
        keys["revoked_subjects"]
            .as_array()
            .expect("list")
            .iter()
            .any(|s| s == subject.as_str())
    );
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/api/v1/codes/revocations/{subject}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 204);

    // A lost phone: the holder renews, every earlier code is refused, the new one works.
    let (_, mine) = call(&server, Method::GET, "/api/v1/codes/mine", &resident, None).await;
    let before = mine["code"].as_str().expect("code").to_owned();
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/codes/mine/renewal",
        &resident,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, refused) = verify(node.base.clone(), gate.clone(), "metro", before).await;
    assert_eq!(
        (status, refused["result"].clone()),
        (422, json!("revoked")),
        "{refused}"
    );
    let (_, mine) = call(&server, Method::GET, "/api/v1/codes/mine", &resident, None).await;
    let renewed = mine["code"].as_str().expect("code").to_owned();
    assert_ne!(
        subject_of(&keys, &renewed),
        subject,
        "a renewal is a new subject"
    );

    // A revoked card: codes naming it are refused where it is asked for; new codes leave it out.
    let (_, cards) = call(&server, Method::GET, "/api/v1/codes/cards", &resident, None).await;
    let handle = cards
        .as_array()
        .expect("cards")
        .iter()
        .find(|c| c["kind"] == "transit_account")
        .and_then(|c| c["handle"].as_str())
        .expect("transit")
        .to_owned();
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/api/v1/codes/cards/{handle}"),
        &resident,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, refused) = verify(server.base.clone(), gate.clone(), "metro", renewed).await;
    assert_eq!(
        (status, refused["result"].clone()),
        (422, json!("revoked")),
        "{refused}"
    );
    let (_, mine) = call(&server, Method::GET, "/api/v1/codes/mine", &resident, None).await;
    assert!(
        mine["cards"].as_array().expect("cards").is_empty(),
        "{mine}"
    );

    // Other issuers: the EU DCC test certificate and a province's ES256 certificate.
    let dcc: Value =
        serde_json::from_str(include_str!("../../codes/tests/vectors/dcc-at-ec256.json"))
            .expect("vector");
    let (status, problem) = call(
        &server,
        Method::POST,
        "/api/v1/codes/trust",
        &admin,
        Some(json!({"name": "坏证书", "prefix": "HC1:", "certificate": "MIIB"})),
    )
    .await;
    assert_eq!(
        (status, problem["field"].clone()),
        (422, json!("certificate")),
        "{problem}"
    );
    let (status, trusted) = call(&server, Method::POST, "/api/v1/codes/trust", &admin,
        Some(json!({"name": "EU DCC test (AT)", "prefix": "HC1:", "certificate": dcc["CERTIFICATE"]}))).await;
    assert_eq!(
        (status, trusted["kid"].clone()),
        (201, json!("BL3nm9sq5mA=")),
        "{trusted}"
    );
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/codes/trust",
        &admin,
        Some(json!({"name": "again", "prefix": "HC1:", "certificate": dcc["CERTIFICATE"]})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, refused) = verify(
        server.base.clone(),
        gate.clone(),
        "metro",
        dcc["PREFIX"].as_str().expect("code").to_owned(),
    )
    .await;
    // Trusted now, and expired since 2021: the stage that fails is the expiry.
    assert_eq!(
        (
            status,
            refused["result"].clone(),
            refused["signature"].clone(),
            refused["expiry"].clone()
        ),
        (422, json!("expired"), json!(true), json!(false)),
        "{refused}"
    );
    let province_cert = include_str!("../../codes/tests/vectors/es256.cert.pem");
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/codes/trust",
        &admin,
        Some(json!({"name": "省居民码（测试）", "prefix": "SD1:", "certificate": province_cert})),
    )
    .await;
    assert_eq!(status, 201);
    let province_code = {
        use coset::CborSerializable;
        use p256::pkcs8::DecodePrivateKey as _;
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(include_str!(
            "../../codes/tests/vectors/es256.key.pem"
        ))
        .expect("key");
        let der = yunnao_codes::trust::certificate_der(province_cert.as_bytes()).expect("der");
        let kid = {
            use sha2::Digest;
            sha2::Sha256::digest(&der)[..8].to_vec()
        };
        let now = yunnao_core::time::now_ms() / 1000;
        let claims = coset::cwt::ClaimsSetBuilder::new()
            .issuer("SD".into())
            .subject("sd-holder".into())
            .issued_at(coset::cwt::Timestamp::WholeSeconds(now))
            .expiration_time(coset::cwt::Timestamp::WholeSeconds(now + 60))
            .build()
            .to_vec()
            .expect("claims");
        yunnao_codes::seal("SD1:", yunnao_codes::ALG_ES256, &kid, claims, |data| {
            use p256::ecdsa::signature::Signer as _;
            let s: p256::ecdsa::Signature = key.sign(data);
            s.to_bytes().to_vec()
        })
        .expect("code")
    };
    let (status, answer) = verify(
        server.base.clone(),
        gate.clone(),
        "metro",
        province_code.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["issuer"].clone()),
        (200, json!("省居民码（测试）")),
        "{answer}"
    );
    assert_eq!(
        answer["claims"],
        json!({}),
        "the metro learns nothing of another scheme's holder"
    );
    let (status, replay) = verify(server.base.clone(), gate.clone(), "metro", province_code).await;
    assert_eq!(
        (status, replay["result"].clone()),
        (409, json!("replayed")),
        "a dynamic foreign code too"
    );

    // Bad input: too long, not JSON, a scenario that does not exist.
    let (status, _) = verify(
        server.base.clone(),
        gate.clone(),
        "metro",
        format!("QD1:{}", "A".repeat(5000)),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = verify(server.base.clone(), gate.clone(), "nowhere", "QD1:".into()).await;
    assert_eq!(status, 404);
    let response = server
        .client
        .post(server.url("/api/v1/codes/verify"))
        .bearer_auth(&gate)
        .header("content-type", "application/json")
        .body("{\"scenario\": ")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    // The figures: every scan counted at its scenario, refusals by reason.
    let (status, figures) = call(&server, Method::GET, "/api/v1/codes/figures", &admin, None).await;
    assert_eq!(status, 200);
    let metro = figures["scenario_figures"]
        .as_array()
        .expect("figures")
        .iter()
        .find(|f| f["code"] == "metro")
        .expect("metro")
        .clone();
    assert!(metro["accepted_24h"].as_i64() >= Some(4), "{metro}");
    let reasons: Vec<&str> = metro["refusals_24h"]
        .as_array()
        .expect("refusals")
        .iter()
        .filter_map(|r| r[0].as_str())
        .collect();
    for reason in ["replayed", "revoked", "expired"] {
        assert!(reasons.contains(&reason), "{reasons:?}");
    }
    assert!(figures["live_scenarios"].as_i64() >= Some(2));
    let (status, own) = call(&server, Method::GET, "/api/v1/codes/figures", &reader, None).await;
    assert_eq!(status, 200);
    assert!(
        own["scenario_figures"]
            .as_array()
            .expect("own")
            .iter()
            .all(|f| f["department"] == "transport")
    );

    let Node { shutdown, task, .. } = node;
    if let Some(shutdown) = shutdown {
        let _ = shutdown.send(());
    }
    let _ = task.await;
    server.cleanup().await;
}

backend_tests!(codes_rotate_revoke_and_trust_other_issuers);
