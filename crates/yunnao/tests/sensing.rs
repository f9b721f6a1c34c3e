//! The sensing hub end to end on every backend: devices, HTTP and MQTT ingestion acknowledged
//! after commit, bulk uploads, queries.

mod support;

use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::time::Duration;
use support::{TestServer, expect_problem};
use yunnao_store::testing::TestBackend;
use yunnao_store::{backend_tests, sqlx};

async fn create_device(
    server: &TestServer,
    token: &str,
    id: &str,
    profile: &str,
    department: &str,
) -> String {
    let response = server
        .request(
            Method::POST,
            "/api/v1/devices",
            Some(token),
            Some(json!({
            "id": id, "name": format!("测试设备 {id}"), "profile": profile,
            "department": department, "location": {"lon": 120.38, "lat": 36.07}})),
        )
        .await;
    assert_eq!(response.status(), 201, "create {id}");
    let body: Value = response.json().await.expect("json");
    body["access_token"].as_str().expect("token").to_owned()
}

async fn stored_readings(server: &TestServer, device: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM readings WHERE device_id = $1")
        .bind(device)
        .fetch_one(server.identity.db.pool())
        .await
        .expect("count")
}

async fn devices_belong_to_departments(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let water = server.user(&admin, "water.op", "water", "operator").await;
    let police = server.user(&admin, "police.op", "police", "operator").await;
    let resident = server.user(&admin, "someone", "water", "resident").await;

    let profiles: Vec<Value> = server
        .request(Method::GET, "/api/v1/device-profiles", Some(&water), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(profiles.len(), 10);

    create_device(&server, &water, "rain-1", "rain-gauge", "water").await;
    expect_problem(
        server
            .request(
                Method::POST,
                "/api/v1/devices",
                Some(&water),
                Some(json!({"name": "x", "profile": "rain-gauge", "department": "police"})),
            )
            .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        server
            .request(
                Method::POST,
                "/api/v1/devices",
                Some(&resident),
                Some(json!({"name": "x", "profile": "rain-gauge"})),
            )
            .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        server
            .request(
                Method::POST,
                "/api/v1/devices",
                Some(&water),
                Some(json!({"name": "x", "profile": "teapot"})),
            )
            .await,
        422,
        "validation",
    )
    .await;
    expect_problem(
        server.request(Method::POST, "/api/v1/devices", Some(&water), Some(json!({"name": "x", "profile": "rain-gauge", "location": {"lon": 500, "lat": 0}}))).await,
        422, "validation").await;
    expect_problem(
        server
            .request(
                Method::POST,
                "/api/v1/devices",
                Some(&water),
                Some(json!({"id": "rain-1", "name": "again", "profile": "rain-gauge"})),
            )
            .await,
        409,
        "conflict",
    )
    .await;

    // The police bureau does not see the water bureau's device.
    expect_problem(
        server
            .request(Method::GET, "/api/v1/devices/rain-1", Some(&police), None)
            .await,
        404,
        "not-found",
    )
    .await;
    let page: Value = server
        .request(Method::GET, "/api/v1/devices", Some(&police), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["total"], 0);
    let page: Value = server
        .request(Method::GET, "/api/v1/devices", Some(&water), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["total"], 1);
    assert_eq!(page["devices"][0]["name"], "测试设备 rain-1");

    let patched: Value = server
        .request(
            Method::PATCH,
            "/api/v1/devices/rain-1",
            Some(&water),
            Some(json!({"tags": ["崂山区"]})),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(patched["tags"], json!(["崂山区"]));
    assert_eq!(
        server
            .request(Method::DELETE, "/api/v1/devices/rain-1", Some(&water), None)
            .await
            .status(),
        204
    );
    expect_problem(
        server
            .request(Method::GET, "/api/v1/devices/rain-1", Some(&water), None)
            .await,
        404,
        "not-found",
    )
    .await;
    server.cleanup().await;
}

async fn http_telemetry_is_validated_stored_and_queryable(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let token = create_device(&server, &admin, "level-1", "reservoir-level", "water").await;
    let post = |body: String| {
        server
            .client
            .post(server.url(&format!("/api/v1/{token}/telemetry")))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // One hour of 5-minute readings, 4.0 m rising 0.1 m per reading, sent as one array.
    let hour = 1_795_000_000_000_i64 - 1_795_000_000_000_i64 % 3_600_000;
    let items: Vec<Value> = (0..12)
        .map(|i| json!({"ts": hour + i * 300_000, "values": {"height": 4.0 + 0.1 * i as f64}}))
        .collect();
    let response = post(Value::Array(items).to_string()).await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("json")["accepted_readings"],
        12
    );
    assert_eq!(
        stored_readings(&server, "level-1").await,
        12,
        "answered only after commit"
    );

    for (body, status, slug) in [
        ("{\"height\": ", 400, "bad-request"),
        ("{\"height\": \"high\"}", 400, "bad-request"),
        ("{\"height\": 999}", 400, "bad-request"),
        ("{\"flow\": 1}", 400, "bad-request"),
        ("[{\"height\": 1}, {\"height\": -50}]", 400, "bad-request"),
    ] {
        expect_problem(post(body.to_owned()).await.expect("sent"), status, slug).await;
    }
    assert_eq!(
        stored_readings(&server, "level-1").await,
        12,
        "nothing half-stored"
    );
    let future = format!(
        "{{\"ts\": {}, \"values\": {{\"height\": 1}}}}",
        yunnao_core::time::now_ms() + 3_600_000
    );
    let problem = expect_problem(post(future).await.expect("sent"), 400, "bad-request").await;
    assert!(problem["detail"].as_str().unwrap_or("").contains("future"));
    let oversized = format!("{{\"height\": 1, \"pad\": \"{}\"}}", "x".repeat(70_000));
    expect_problem(
        post(oversized).await.expect("sent"),
        413,
        "payload-too-large",
    )
    .await;
    let unknown = server
        .client
        .post(server.url("/api/v1/not-a-token/telemetry"))
        .header("content-type", "application/json")
        .body("{\"height\": 1}")
        .send()
        .await
        .expect("sent");
    expect_problem(unknown, 401, "unauthorized").await;

    let device: Value = server
        .request(Method::GET, "/api/v1/devices/level-1", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(device["status"]["accepted_readings"], 12);
    assert_eq!(device["status"]["rejected_messages"], 7);
    assert!(
        device["status"]["last_rejection"]
            .as_str()
            .unwrap_or("")
            .contains("exceeds")
    );

    let latest: Vec<Value> = server
        .request(
            Method::GET,
            "/api/v1/devices/level-1/telemetry/latest",
            Some(&admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0]["ts"], hour + 11 * 300_000);
    assert!((latest[0]["value"].as_f64().expect("value") - 5.1).abs() < 1e-9);

    // Paging through raw values: 5 + 5 + 2.
    let mut after: Option<i64> = None;
    let mut pages = Vec::new();
    loop {
        let cursor = after.map(|a| format!("&after={a}")).unwrap_or_default();
        let page: Value = server
            .request(Method::GET, &format!("/api/v1/devices/level-1/telemetry?key=height&from={hour}&to={}&limit=5{cursor}", hour + 3_600_000), Some(&admin), None)
            .await.json().await.expect("json");
        pages.push(page["points"].as_array().expect("points").len());
        match page["next_after"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, vec![5, 5, 2]);

    // The same through the group endpoints, with a second device reading 1.0 lower.
    let token2 = create_device(&server, &admin, "level-2", "reservoir-level", "water").await;
    let items: Vec<Value> = (0..12)
        .map(|i| json!({"ts": hour + i * 300_000, "values": {"height": 3.0 + 0.1 * i as f64}}))
        .collect();
    let response = server
        .client
        .post(server.url(&format!("/api/v1/{token2}/telemetry")))
        .json(&items)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let group: Vec<Value> = server
        .request(
            Method::GET,
            "/api/v1/telemetry/latest?devices=level-1,level-2",
            Some(&admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(group.len(), 2);
    assert_eq!(group[1]["device"], "level-2");
    assert!((group[1]["values"][0]["value"].as_f64().expect("value") - 4.1).abs() < 1e-9);
    let hourly: Vec<Value> = server
        .request(Method::GET, &format!("/api/v1/telemetry/aggregate?devices=level-1,level-2&key=height&from={hour}&to={}&interval=3600", hour + 3_600_000), Some(&admin), None)
        .await.json().await.expect("json");
    assert_eq!(hourly.len(), 1);
    assert_eq!(hourly[0]["count"], 24);
    assert!(
        (hourly[0]["avg"].as_f64().expect("avg") - 4.05).abs() < 1e-9,
        "{hourly:?}"
    );
    assert!((hourly[0]["min"].as_f64().expect("min") - 3.0).abs() < 1e-9);
    expect_problem(
        server
            .request(
                Method::GET,
                "/api/v1/telemetry/latest?devices=",
                Some(&admin),
                None,
            )
            .await,
        400,
        "bad-request",
    )
    .await;

    // 15-minute buckets: 3 readings each.
    let buckets: Vec<Value> = server
        .request(Method::GET, &format!("/api/v1/devices/level-1/telemetry/aggregate?key=height&from={hour}&to={}&interval=900", hour + 3_600_000), Some(&admin), None)
        .await.json().await.expect("json");
    let expected = [
        (0, 4.1, 4.0, 4.2),
        (1, 4.4, 4.3, 4.5),
        (2, 4.7, 4.6, 4.8),
        (3, 5.0, 4.9, 5.1),
    ];
    assert_eq!(buckets.len(), expected.len());
    for (bucket, (n, avg, min, max)) in buckets.iter().zip(expected) {
        assert_eq!(bucket["start"], hour + n * 900_000);
        assert_eq!(bucket["count"], 3);
        for (field, want) in [("avg", avg), ("min", min), ("max", max)] {
            assert!(
                (bucket[field].as_f64().expect("number") - want).abs() < 1e-9,
                "{field} of bucket {n}: {bucket}"
            );
        }
    }
    server.cleanup().await;
}

async fn bulk_uploads_report_each_refused_item(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    create_device(&server, &admin, "aq-1", "air-quality", "ecology").await;
    create_device(&server, &admin, "aq-2", "air-quality", "ecology").await;
    create_device(
        &server,
        &admin,
        "lamp-1",
        "smart-lamp-post",
        "city-management",
    )
    .await;
    let gateway: Value = server
        .request(
            Method::POST,
            "/api/v1/api-clients",
            Some(&admin),
            Some(
                json!({"name": "环境网关", "department": "ecology", "scopes": ["telemetry:write"]}),
            ),
        )
        .await
        .json()
        .await
        .expect("json");
    let key = gateway["api_key"].as_str().expect("key");

    let items = json!([
        {"device": "aq-1", "ts": 1795000000000_i64, "values": {"pm25": 35, "pm10": 60}},
        {"device": "aq-2", "pm25": 12},
        {"device": "aq-2", "pm25": -4},
        {"device": "nope", "pm25": 1},
        {"device": "lamp-1", "powerState": true},
        {"pm25": 1},
        "text"
    ]);
    let report: Value = server
        .request(
            Method::POST,
            "/api/v1/telemetry/bulk",
            Some(key),
            Some(items),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["accepted_items"], 2, "{report}");
    assert_eq!(report["accepted_readings"], 3);
    let refused: Vec<(i64, String)> = report["rejected"]
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().unwrap_or(-1),
                r["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let indexes: Vec<i64> = refused.iter().map(|r| r.0).collect();
    assert_eq!(indexes, vec![2, 3, 4, 5, 6]);
    assert!(refused[0].1.contains("outside the physical range"));
    assert!(refused[1].1.contains("unknown device"));
    assert!(
        refused[2].1.contains("not allowed"),
        "another department's device"
    );
    assert_eq!(stored_readings(&server, "aq-1").await, 2);
    assert_eq!(stored_readings(&server, "lamp-1").await, 0);

    let ndjson =
        "{\"device\": \"aq-1\", \"pm25\": 40}\n\n{\"device\": \"aq-2\", \"pm25\": 41}\n{broken\n";
    let report: Value = server
        .client
        .post(server.url("/api/v1/telemetry/bulk"))
        .header("x-api-key", key)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(report["accepted_items"], 2);
    assert_eq!(report["rejected"][0]["index"], 3);

    let wrong_type = server
        .client
        .post(server.url("/api/v1/telemetry/bulk"))
        .header("x-api-key", key)
        .header("content-type", "text/csv")
        .body("a,b")
        .send()
        .await
        .expect("sent");
    expect_problem(wrong_type, 415, "unsupported-media-type").await;
    server.cleanup().await;
}

fn mqtt_options(server: &TestServer, client_id: &str, token: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", server.mqtt_port);
    options.set_credentials(token, "");
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(100);
    options
}

async fn mqtt_qos1_is_acknowledged_only_after_commit(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let token = create_device(&server, &admin, "park-1", "parking-space", "transport").await;
    let (client, mut eventloop) = AsyncClient::new(mqtt_options(&server, "park-1", &token), 1000);
    let base = 1_795_000_000_000_i64;
    let total = 300;
    let publisher = tokio::spawn(async move {
        for i in 0..total {
            let payload = json!({"ts": base + i * 1000, "values": {"occupied": i % 2}}).to_string();
            client
                .publish("v1/devices/me/telemetry", QoS::AtLeastOnce, false, payload)
                .await
                .expect("queued");
        }
        client
    });
    let mut acked = 0;
    let db = server.identity.db.clone();
    while acked < total {
        match tokio::time::timeout(Duration::from_secs(20), eventloop.poll())
            .await
            .expect("progress")
            .expect("connection")
        {
            Event::Incoming(Packet::PubAck(_)) => {
                acked += 1;
                // Every acknowledged reading is already committed.
                let stored: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM readings WHERE device_id = 'park-1'")
                        .fetch_one(db.pool())
                        .await
                        .expect("count");
                assert!(
                    stored >= acked,
                    "PUBACK {acked} arrived with only {stored} readings stored"
                );
            }
            Event::Incoming(Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success)
            }
            _ => {}
        }
    }
    publisher.await.expect("publisher");
    assert_eq!(stored_readings(&server, "park-1").await, total);

    // A bad message is acknowledged (resending cannot fix it) and counted on the device.
    let (client, mut eventloop) = AsyncClient::new(mqtt_options(&server, "park-1b", &token), 10);
    client
        .publish(
            "v1/devices/me/telemetry",
            QoS::AtLeastOnce,
            false,
            "{\"occupied\": 7}",
        )
        .await
        .expect("queued");
    client
        .publish(
            "yunnao/devices/park-1/telemetry",
            QoS::AtLeastOnce,
            false,
            format!(
                "{{\"ts\": {}, \"values\": {{\"occupied\": 1}}}}",
                base + total * 1000
            ),
        )
        .await
        .expect("queued");
    let mut acks = 0;
    while acks < 2 {
        if let Event::Incoming(Packet::PubAck(_)) =
            tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
                .await
                .expect("progress")
                .expect("connection")
        {
            acks += 1;
        }
    }
    assert_eq!(stored_readings(&server, "park-1").await, total + 1);
    let device: Value = server
        .request(Method::GET, "/api/v1/devices/park-1", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(device["status"]["rejected_messages"], 1);
    assert_eq!(device["status"]["online"], true);

    // A wrong token is refused at CONNECT.
    let (_client, mut eventloop) =
        AsyncClient::new(mqtt_options(&server, "intruder", "not-a-token"), 10);
    let refused = loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("progress")
        {
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => break code,
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(_) => {}
        }
    };
    assert_eq!(refused, rumqttc::ConnectReturnCode::BadUserNamePassword);
    server.cleanup().await;
}

/// Mosquitto's own command-line client, a stock MQTT 3.1.1 publisher.
async fn mosquitto_pub_reaches_the_embedded_endpoint(backend: TestBackend) {
    if std::process::Command::new("mosquitto_pub")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("mosquitto_pub not installed: stock-client check not run");
        return;
    }
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let token = create_device(&server, &admin, "gas-1", "manhole-gas", "city-management").await;
    for (qos, payload) in [
        ("0", r#"{"CH4": 1.5}"#),
        ("1", r#"{"ts": 1795000000000, "values": {"CO": 4}}"#),
        ("2", r#"[{"H2S": 0.2}]"#),
    ] {
        let status = tokio::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.mqtt_port.to_string(),
                "-u",
                &token,
                "-q",
                qos,
                "-t",
                "v1/devices/me/telemetry",
                "-m",
                payload,
            ])
            .status()
            .await
            .expect("mosquitto_pub runs");
        assert!(status.success(), "QoS {qos}");
    }
    // QoS 0 is best effort: give it a moment.
    for _ in 0..50 {
        if stored_readings(&server, "gas-1").await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored_readings(&server, "gas-1").await, 3);
    server.cleanup().await;
}

async fn grants_open_and_close_cross_department_access(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let water = server
        .user(&admin, "water.admin", "water", "dept_admin")
        .await;
    let water_op = server.user(&admin, "water.op", "water", "operator").await;
    let emergency = server
        .user(&admin, "emergency.admin", "emergency", "dept_admin")
        .await;
    for (id, lon, lat) in [("rain-1", 120.40, 36.10), ("rain-2", 121.00, 36.90)] {
        let response = server
            .request(Method::POST, "/api/v1/devices", Some(&water), Some(json!({
                "id": id, "name": id, "profile": "rain-gauge", "location": {"lon": lon, "lat": lat}})))
            .await;
        assert_eq!(response.status(), 201);
    }
    expect_problem(
        server
            .request(
                Method::GET,
                "/api/v1/devices/rain-1",
                Some(&emergency),
                None,
            )
            .await,
        404,
        "not-found",
    )
    .await;

    let in_an_hour = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms() + 3_600_000);
    let grant_body = json!({"grantee": "emergency", "profile": "rain-gauge",
        "area": {"min_lon": 120.3, "min_lat": 36.0, "max_lon": 120.5, "max_lat": 36.2},
        "purpose": "防汛应急联动", "expires_at": in_an_hour});
    expect_problem(
        server
            .request(
                Method::POST,
                "/api/v1/device-grants",
                Some(&water_op),
                Some(grant_body.clone()),
            )
            .await,
        403,
        "forbidden",
    )
    .await;
    let mut past = grant_body.clone();
    past["expires_at"] = json!("2020-01-01T00:00:00Z");
    expect_problem(
        server
            .request(
                Method::POST,
                "/api/v1/device-grants",
                Some(&water),
                Some(past),
            )
            .await,
        422,
        "validation",
    )
    .await;
    let grant = server
        .request(
            Method::POST,
            "/api/v1/device-grants",
            Some(&water),
            Some(grant_body),
        )
        .await;
    assert_eq!(grant.status(), 201);
    let grant: Value = grant.json().await.expect("json");
    assert_eq!(grant["status"], "active");

    let shared = server
        .request(
            Method::GET,
            "/api/v1/devices/rain-1",
            Some(&emergency),
            None,
        )
        .await;
    assert_eq!(shared.status(), 200);
    assert_eq!(
        server
            .request(
                Method::GET,
                "/api/v1/devices/rain-1/telemetry/latest",
                Some(&emergency),
                None
            )
            .await
            .status(),
        200
    );
    expect_problem(
        server
            .request(
                Method::GET,
                "/api/v1/devices/rain-2",
                Some(&emergency),
                None,
            )
            .await,
        404,
        "not-found",
    )
    .await;
    // A grant is read access only.
    let write = server
        .request(
            Method::PATCH,
            "/api/v1/devices/rain-1",
            Some(&emergency),
            Some(json!({"name": "mine"})),
        )
        .await;
    assert!(matches!(write.status().as_u16(), 403 | 404));

    let audit: Vec<Value> = server
        .request(Method::GET, "/api/v1/audit?limit=1000", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    let shared_reads: Vec<&Value> = audit
        .iter()
        .filter(|r| {
            r["action"]
                .as_str()
                .unwrap_or("")
                .starts_with("device.shared_read")
        })
        .collect();
    assert_eq!(shared_reads.len(), 2, "both shared reads audited");
    assert!(
        shared_reads.iter().all(|r| r["department"] == "emergency"
            && r["target"].as_str().unwrap_or("").contains("rain-1"))
    );

    let listed: Vec<Value> = server
        .request(Method::GET, "/api/v1/device-grants", Some(&emergency), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed.len(), 1);
    let id = grant["id"].as_str().expect("id");
    expect_problem(
        server
            .request(
                Method::DELETE,
                &format!("/api/v1/device-grants/{id}"),
                Some(&emergency),
                None,
            )
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        server
            .request(
                Method::DELETE,
                &format!("/api/v1/device-grants/{id}"),
                Some(&water),
                None
            )
            .await
            .status(),
        204
    );
    expect_problem(
        server
            .request(
                Method::GET,
                "/api/v1/devices/rain-1",
                Some(&emergency),
                None,
            )
            .await,
        404,
        "not-found",
    )
    .await;

    // Expiry closes access by itself.
    let soon = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms() + 1_000);
    let short = server
        .request(
            Method::POST,
            "/api/v1/device-grants",
            Some(&water),
            Some(json!({
        "grantee": "emergency", "device": "rain-2", "purpose": "演练", "expires_at": soon})),
        )
        .await;
    assert_eq!(short.status(), 201);
    assert_eq!(
        server
            .request(
                Method::GET,
                "/api/v1/devices/rain-2",
                Some(&emergency),
                None
            )
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    expect_problem(
        server
            .request(
                Method::GET,
                "/api/v1/devices/rain-2",
                Some(&emergency),
                None,
            )
            .await,
        404,
        "not-found",
    )
    .await;
    server.cleanup().await;
}

async fn retention_deletes_raw_data_and_keeps_rollups(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    // parking-space keeps raw data 30 days.
    let token = create_device(&server, &admin, "bay-1", "parking-space", "transport").await;
    let now = yunnao_core::time::now_ms();
    let hour = 3_600_000_i64;
    let old_start = (now - 40 * 24 * hour) / hour * hour;
    // Two old hours at 10-minute spacing (occupied 1 then 0 alternating) and one recent reading.
    let mut items: Vec<Value> = (0..12)
        .map(|i| json!({"ts": old_start + i * 600_000, "values": {"occupied": i % 2}}))
        .collect();
    items.push(json!({"ts": now - hour, "values": {"occupied": 1}}));
    let response = server
        .client
        .post(server.url(&format!("/api/v1/{token}/telemetry")))
        .json(&items)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(stored_readings(&server, "bay-1").await, 13);

    let operator = server
        .user(&admin, "transport.op", "transport", "operator")
        .await;
    expect_problem(
        server
            .request(
                Method::POST,
                "/api/v1/admin/retention/run",
                Some(&operator),
                None,
            )
            .await,
        403,
        "forbidden",
    )
    .await;
    let report: Value = server
        .request(
            Method::POST,
            "/api/v1/admin/retention/run",
            Some(&admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["raw_deleted"], 12, "{report}");
    assert_eq!(
        stored_readings(&server, "bay-1").await,
        1,
        "old raw readings are gone"
    );
    let again: Value = server
        .request(
            Method::POST,
            "/api/v1/admin/retention/run",
            Some(&admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["raw_deleted"], 0);

    // Hourly aggregates over the old range still answer, from the rollups.
    let buckets: Vec<Value> = server
        .request(Method::GET, &format!("/api/v1/devices/bay-1/telemetry/aggregate?key=occupied&from={old_start}&to={}&interval=3600", old_start + 2 * hour), Some(&admin), None)
        .await.json().await.expect("json");
    assert_eq!(buckets.len(), 2, "{buckets:?}");
    for bucket in &buckets {
        assert_eq!(bucket["count"], 6);
        assert_eq!(bucket["sum"], 3.0);
        assert_eq!(bucket["min"], 0.0);
        assert_eq!(bucket["max"], 1.0);
        assert!((bucket["avg"].as_f64().expect("avg") - 0.5).abs() < 1e-9);
    }
    // 5-minute rollups answer 15-minute buckets too.
    let quarter: Vec<Value> = server
        .request(Method::GET, &format!("/api/v1/devices/bay-1/telemetry/aggregate?key=occupied&from={old_start}&to={}&interval=900", old_start + hour), Some(&admin), None)
        .await.json().await.expect("json");
    let counts: Vec<i64> = quarter
        .iter()
        .map(|b| b["count"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(counts, vec![2, 1, 2, 1]);
    server.cleanup().await;
}

async fn devices_import_from_files_and_telemetry_exports(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let water = server
        .user(&admin, "water.admin", "water", "dept_admin")
        .await;

    // The CLI, against the running server, with a department's spreadsheet export as CSV.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("水务设备.csv");
    std::fs::write(
        &file,
        "编号,名称,类型,经度,纬度,标签\n\
        res-1,崂山水库水位计,reservoir-level,120.63,36.19,崂山区\n\
        res-2,棘洪滩水库水位计,reservoir-level,120.25,36.38,城阳区\n\
        bad-1,,reservoir-level,,,\n\
        bad-2,未知类型,teapot,,,\n",
    )
    .expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_yunnao"))
        .args(["devices", "import"])
        .arg(&file)
        .args(["--url", &server.base, "--token", &water])
        .output()
        .await
        .expect("cli runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("2 devices created") && stdout.contains("2 rows refused"),
        "{stdout}"
    );
    assert!(stdout.contains("row 3: name is empty"), "{stdout}");
    assert!(
        stdout.contains("row 4:") && stdout.contains("teapot"),
        "{stdout}"
    );
    let tokens =
        std::fs::read_to_string(dir.path().join("水务设备.csv.tokens.csv")).expect("tokens file");
    let token = tokens
        .lines()
        .find(|l| l.starts_with("res-1,"))
        .and_then(|l| l.split(',').nth(1))
        .expect("res-1 token")
        .to_owned();
    let device: Value = server
        .request(Method::GET, "/api/v1/devices/res-1", Some(&water), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(device["department"], "water");
    assert_eq!(device["tags"], json!(["崂山区"]));

    // The import endpoint takes JSON too, and each row stands alone.
    let report: Value = server
        .request(
            Method::POST,
            "/api/v1/devices/import",
            Some(&water),
            Some(json!([
            {"id": "res-3", "name": "吉利河水库", "profile": "reservoir-level"},
            {"id": "res-1", "name": "duplicate", "profile": "reservoir-level"},
            {"name": "other department", "profile": "reservoir-level", "department": "police"}])),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["created"].as_array().map(Vec::len), Some(1));
    let reasons: Vec<&str> = report["rejected"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons[0].contains("exists") && reasons[1].contains("may not devices:write"),
        "{reasons:?}"
    );

    // Export what the device sent.
    let readings: Vec<Value> = (0..3).map(|i| json!({"ts": 1_795_000_000_000_i64 + i * 300_000, "values": {"height": 10.0 + i as f64}})).collect();
    let response = server
        .client
        .post(server.url(&format!("/api/v1/{token}/telemetry")))
        .json(&readings)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let range = "key=height&from=1794999000000&to=1795001000000";
    let csv = server
        .request(
            Method::GET,
            &format!("/api/v1/devices/res-1/telemetry/export?{range}"),
            Some(&water),
            None,
        )
        .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap_or("")
            .contains("res-1-height.csv")
    );
    let text = csv.text().await.expect("text");
    assert_eq!(text.lines().count(), 4);
    assert!(text.lines().nth(3).unwrap_or("").ends_with(",12"), "{text}");
    let xlsx = server
        .request(
            Method::GET,
            &format!("/api/v1/devices/res-1/telemetry/export?{range}&format=xlsx"),
            Some(&water),
            None,
        )
        .await;
    assert_eq!(xlsx.status(), 200);
    let bytes = xlsx.bytes().await.expect("bytes");
    assert_eq!(&bytes[..2], b"PK", "an XLSX file is a zip");
    expect_problem(
        server
            .request(
                Method::GET,
                &format!("/api/v1/devices/res-1/telemetry/export?{range}&format=pdf"),
                Some(&water),
                None,
            )
            .await,
        400,
        "bad-request",
    )
    .await;
    server.cleanup().await;
}

async fn define(server: &TestServer, token: &str, body: Value) -> reqwest::Response {
    server
        .request(
            Method::POST,
            "/api/v1/device-profiles",
            Some(token),
            Some(body),
        )
        .await
}

async fn departments_define_their_own_profiles(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let water_admin = server
        .user(&admin, "water.admin", "water", "dept_admin")
        .await;
    let water_op = server.user(&admin, "water.op", "water", "operator").await;
    let police_admin = server
        .user(&admin, "police.admin", "police", "dept_admin")
        .await;
    let definition = json!({"code": "sluice-gate", "name_zh": "水閘", "name_en": "Sluice gate",
        "reporting_interval_s": 60, "retention_days": 30,
        "keys": [{"name": "opening", "unit": "%", "min": 0, "max": 100},
                 {"name": "upstream_level", "unit": "m", "min": -5, "max": 50}]});
    expect_problem(
        define(&server, &water_op, definition.clone()).await,
        403,
        "forbidden",
    )
    .await;
    let mut for_police = definition.clone();
    for_police["department"] = json!("police");
    expect_problem(
        define(&server, &water_admin, for_police).await,
        403,
        "forbidden",
    )
    .await;
    // Each broken definition is refused with its reason, and nothing is stored.
    let broken: [(&str, Value, &str); 6] = [
        ("code", json!("Bad Code"), "code"),
        ("keys", json!([]), "1 to 64 keys"),
        (
            "keys",
            json!([{"name": "a", "unit": "m", "min": 5, "max": 5}]),
            "min < max",
        ),
        (
            "keys",
            json!([{"name": "a", "unit": "m", "min": 0, "max": 1}, {"name": "a", "unit": "m", "min": 0, "max": 1}]),
            "twice",
        ),
        (
            "keys",
            json!([{"name": "a b", "unit": "m", "min": 0, "max": 1}]),
            "letter",
        ),
        ("reporting_interval_s", json!(0), "reporting_interval_s"),
    ];
    for (field, value, reason) in broken {
        let mut body = definition.clone();
        body[field] = value;
        let problem =
            expect_problem(define(&server, &water_admin, body).await, 422, "validation").await;
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(reason),
            "{field}: {problem}"
        );
    }
    let created = define(&server, &water_admin, definition.clone()).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["department"], "water");
    assert_eq!(created["entity_type"], "Device");
    expect_problem(
        define(&server, &water_admin, definition.clone()).await,
        409,
        "conflict",
    )
    .await;
    let all: Vec<Value> = server
        .request(
            Method::GET,
            "/api/v1/device-profiles",
            Some(&police_admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all.len(), 11);

    // A shared catalogue: police register a gate of the water bureau's profile.
    let token = create_device(&server, &police_admin, "gate-1", "sluice-gate", "police").await;
    let send = |body: Value| {
        server
            .client
            .post(server.url(&format!("/api/v1/{token}/telemetry")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let at = yunnao_core::time::now_ms() - 60_000;
    // Two messages of one moment merge into one row; a repeat replaces the value.
    for body in [
        json!({"ts": at, "values": {"opening": 90}}),
        json!({"ts": at, "values": {"upstream_level": 3.25}}),
        json!({"ts": at - 1000, "values": {"opening": 10}}),
    ] {
        assert_eq!(send(body).await.expect("sent").status(), 200);
    }
    assert_eq!(stored_readings(&server, "gate-1").await, 3);
    let latest: Vec<Value> = server
        .request(
            Method::GET,
            "/api/v1/devices/gate-1/telemetry/latest",
            Some(&police_admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    let pairs: Vec<(String, f64)> = latest
        .iter()
        .map(|v| {
            (
                v["key"].as_str().unwrap_or("").to_owned(),
                v["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("opening".to_owned(), 90.0),
            ("upstream_level".to_owned(), 3.25)
        ]
    );
    // Within one gateway batch too (PostgreSQL would refuse to touch a row twice).
    let bulk = server
        .client
        .post(server.url("/api/v1/telemetry/bulk"))
        .bearer_auth(&police_admin)
        .header("content-type", "application/x-ndjson")
        .body(format!(
            "{{\"device\": \"gate-1\", \"ts\": {at}, \"values\": {{\"opening\": 40}}}}\n\
             {{\"device\": \"gate-1\", \"ts\": {at}, \"values\": {{\"opening\": 45}}}}\n"
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(bulk.status(), 200);
    assert_eq!(stored_readings(&server, "gate-1").await, 3);
    let opening: f64 = sqlx::query_scalar(
        "SELECT value FROM readings WHERE device_id = 'gate-1' AND key = 'opening' AND ts_ms = $1",
    )
    .bind(at)
    .fetch_one(server.identity.db.pool())
    .await
    .expect("value");
    assert_eq!(opening, 45.0, "the later item of the batch wins");

    // Only the owner changes it; built-in profiles are fixed.
    let mut narrower = definition.clone();
    narrower["keys"][0]["max"] = json!(80);
    expect_problem(
        server
            .request(
                Method::PUT,
                "/api/v1/device-profiles/sluice-gate",
                Some(&police_admin),
                Some(narrower.clone()),
            )
            .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        server
            .request(
                Method::PUT,
                "/api/v1/device-profiles/rain-gauge",
                Some(&admin),
                Some(narrower.clone()),
            )
            .await,
        409,
        "conflict",
    )
    .await;
    let replaced = server
        .request(
            Method::PUT,
            "/api/v1/device-profiles/sluice-gate",
            Some(&water_admin),
            Some(narrower),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    expect_problem(
        send(json!({"opening": 85})).await.expect("sent"),
        400,
        "bad-request",
    )
    .await;
    assert_eq!(
        send(json!({"opening": 75})).await.expect("sent").status(),
        200
    );

    // In use: not deleted. Unused: gone.
    let path = "/api/v1/device-profiles/sluice-gate";
    expect_problem(
        server
            .request(Method::DELETE, path, Some(&water_admin), None)
            .await,
        409,
        "conflict",
    )
    .await;
    let removed = server
        .request(
            Method::DELETE,
            "/api/v1/devices/gate-1",
            Some(&police_admin),
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
    let deleted = server
        .request(Method::DELETE, path, Some(&water_admin), None)
        .await;
    assert_eq!(deleted.status(), 204);
    expect_problem(
        server
            .request(Method::GET, path, Some(&water_admin), None)
            .await,
        404,
        "not-found",
    )
    .await;
    server.cleanup().await;
}

/// The device MQTT endpoint holds at most `mqtt_max_connections`: one more is told "server
/// unavailable" in its CONNACK and closed, and a place frees when a connection ends.
async fn mqtt_connections_are_bounded(backend: TestBackend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(backend, |c| c.mqtt_max_connections = 2).await;
    let address = format!("127.0.0.1:{}", server.mqtt_port);
    // CONNECT, MQTT 3.1.1, clean session, keep-alive 60 s, client id "t", no credential.
    let connect = [
        0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, b't',
    ];
    let connack = |address: String| async move {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream.write_all(&connect).await.expect("send");
        let mut answer = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer))
            .await
            .expect("answered in time")
            .expect("read");
        answer
    };
    let held: Vec<tokio::net::TcpStream> = vec![
        tokio::net::TcpStream::connect(&address)
            .await
            .expect("first"),
        tokio::net::TcpStream::connect(&address)
            .await
            .expect("second"),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Return code 3: server unavailable.
    assert_eq!(connack(address.clone()).await, [0x20, 0x02, 0x00, 0x03]);
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // With a place free, the endpoint answers the CONNECT itself: no credential, code 4.
    assert_eq!(connack(address).await, [0x20, 0x02, 0x00, 0x04]);
    server.cleanup().await;
}

backend_tests!(
    mqtt_connections_are_bounded,
    departments_define_their_own_profiles,
    devices_import_from_files_and_telemetry_exports,
    retention_deletes_raw_data_and_keeps_rollups,
    grants_open_and_close_cross_department_access,
    devices_belong_to_departments,
    http_telemetry_is_validated_stored_and_queryable,
    bulk_uploads_report_each_refused_item,
    mqtt_qos1_is_acknowledged_only_after_commit,
    mosquitto_pub_reaches_the_embedded_endpoint,
);
