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
        (again["accepted"].clone(), again["result"].clone()),
        (json!(false), json!("replayed")),
        "a dynamic code is taken once per scenario"
    );
    assert_eq!(again["claims"], json!({}));
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
    assert_eq!(
        hospital["claims"]["social_security_card"],
        card_id.as_str(),
        "{hospital}"
    );

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
    assert_eq!(refused["accepted"], false, "{refused}");
    assert_eq!(refused["prefix"], true);
    assert!(refused["reason"].is_string());
    let (_, wrong) = call(
        &server,
        Method::POST,
        "/api/v1/codes/verify",
        &metro,
        Some(json!({"scenario": "bus", "code": "HC1:6BFOXN"})),
    )
    .await;
    assert_eq!(
        (wrong["prefix"].clone(), wrong["accepted"].clone()),
        (json!(false), json!(false))
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
    assert_eq!(keys[0]["algorithm"], "SM2-SM3");
    let stranger = server
        .user(&admin, "code.stranger", "bigdata", "resident")
        .await;
    let (status, _) = call(&server, Method::GET, "/api/v1/codes/mine", &stranger, None).await;
    assert_eq!(status, 403, "an unbound account has no code");
    server.cleanup().await;
}

backend_tests!(codes_show_each_scenario_only_its_claims);
