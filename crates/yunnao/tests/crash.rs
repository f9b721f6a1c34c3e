//! kill -9 during a QoS 1 stream: every reading that got its PUBACK is there after restart.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use yunnao_store::testing::{TestBackend, TestDb};
use yunnao_store::{Db, backend_tests, sqlx};

struct Running {
    child: Child,
    http: String,
    mqtt_port: u16,
}

fn start(db_url: &str, data_dir: &std::path::Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_yunnao"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--db",
            db_url,
            "--data-dir",
        ])
        .arg(data_dir)
        .env("YUNNAO_ADMIN_PASSWORD", "crash-test-password")
        .env("YUNNAO_LOG", "warn")
        // Coarse grids: the debug binary builds them in a moment.
        .env("YUNNAO_GRID_RESOLUTION", "8")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut http, mut mqtt_port) = (None, None);
    while http.is_none() || mqtt_port.is_none() {
        let line = lines
            .next()
            .expect("server printed its addresses")
            .expect("line");
        if let Some(rest) = line.split("mqtt://").nth(1) {
            mqtt_port = rest.split([':', ' ']).nth(1).and_then(|p| p.parse().ok());
        }
        if let Some(rest) = line.split("serving http://").nth(1) {
            http = rest.split('/').next().map(|a| format!("http://{a}"));
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running {
        child,
        http: http.expect("http"),
        mqtt_port: mqtt_port.expect("mqtt"),
    }
}

async fn acknowledged_readings_survive_kill_9(backend: TestBackend) {
    let test = TestDb::new(backend).await.expect("test db");
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(&test.url, data_dir.path());
    let http = reqwest::Client::new();
    let signed_in: Value = http
        .post(format!("{}/api/v1/auth/sign-in", server.http))
        .json(&json!({"username": "admin", "password": "crash-test-password"}))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("json");
    let admin = signed_in["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let created: Value = http
        .post(format!("{}/api/v1/devices", server.http))
        .bearer_auth(&admin)
        .json(&json!({"id": "flow-1", "name": "大沽河流量站", "profile": "river-flow", "department": "water"}))
        .send().await.expect("create").json().await.expect("json");
    let token = created["access_token"]
        .as_str()
        .expect("device token")
        .to_owned();

    let mut options = MqttOptions::new("flow-1", "127.0.0.1", server.mqtt_port);
    options.set_credentials(token, "");
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let base = 1_795_000_000_000_i64;
    tokio::spawn(async move {
        for i in 0..20_000_i64 {
            let payload =
                json!({"ts": base + i * 1000, "values": {"flow": (i % 500) as f64}}).to_string();
            if client
                .publish("v1/devices/me/telemetry", QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // Acknowledgements come in publish order, so `acked` PUBACKs cover the first `acked` readings.
    let mut acked: i64 = 0;
    while acked < 1500 {
        match tokio::time::timeout(Duration::from_secs(30), eventloop.poll())
            .await
            .expect("progress")
        {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(error) => panic!("connection failed early: {error:?}"),
        }
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaped");
    // Drain whatever acknowledgements were already on the wire before the kill.
    while let Ok(Ok(event)) =
        tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await
    {
        if let Event::Incoming(Packet::PubAck(_)) = event {
            acked += 1;
        }
    }

    let mut restarted = start(&test.url, data_dir.path());
    let db = Db::connect(&test.url).await.expect("db");
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM readings WHERE device_id = 'flow-1' AND ts_ms < $1",
    )
    .bind(base + acked * 1000)
    .fetch_one(db.pool())
    .await
    .expect("count");
    assert_eq!(stored, acked, "every acknowledged reading survived");
    let health = http
        .get(format!("{}/health", restarted.http))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    restarted.child.kill().expect("kill");
    let _ = restarted.child.wait();
    db.close().await;
    test.cleanup().await;
}

backend_tests!(acknowledged_readings_survive_kill_9);
