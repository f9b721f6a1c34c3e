//! `--mqtt mqtt://…`: two nodes consume one shared subscription at a real broker (Mosquitto)
//! and split the load; every message ends up stored once. Needs YUNNAO_TEST_MQTT_URL.

mod support;

use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::TestServer;
use yunnao_store::testing::TestBackend;
use yunnao_store::{backend_tests, sqlx};

const MQTT_ENV: &str = "YUNNAO_TEST_MQTT_URL";

async fn two_nodes_split_a_shared_subscription(backend: TestBackend) {
    let Ok(broker) = std::env::var(MQTT_ENV) else {
        eprintln!("NOT RUN: needs {MQTT_ENV}");
        return;
    };
    let unique = format!(
        "yntest-{}-{:?}-{}",
        std::process::id(),
        backend,
        yunnao_core::time::now_ms()
    )
    .to_lowercase();
    let server = TestServer::start_with(backend, |c| {
        c.mqtt = broker.clone();
        c.mqtt_client_id = format!("{unique}-a");
        c.mqtt_topic_prefix = unique.clone();
    })
    .await;
    let mut second_config = server.config.clone();
    second_config.mqtt_client_id = format!("{unique}-b");
    let second = yunnao::build(&second_config).await.expect("second node");
    let second_received = second.external_mqtt.clone().expect("consumer");

    let admin = server.admin().await;
    let created = server
        .request(Method::POST, "/api/v1/devices", Some(&admin), Some(json!({"id": "pipe-1", "name": "管网压力1", "profile": "pipe-pressure", "department": "water"})))
        .await;
    assert_eq!(created.status(), 201);
    // Let both nodes subscribe before the first message.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let url = broker.trim_start_matches("mqtt://");
    let (host, port) = url.rsplit_once(':').expect("host:port");
    let mut options = MqttOptions::new(
        format!("{unique}-device"),
        host,
        port.parse::<u16>().expect("port"),
    );
    options.set_inflight(50);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let total = 200_i64;
    let topic = format!("{unique}/devices/pipe-1/telemetry");
    tokio::spawn(async move {
        for i in 0..total {
            let payload =
                json!({"ts": 1_795_000_000_000_i64 + i * 1000, "values": {"pressure": 0.3}})
                    .to_string();
            client
                .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                .await
                .expect("queued");
        }
    });
    let mut acked = 0;
    while acked < total {
        if let Event::Incoming(Packet::PubAck(_)) =
            tokio::time::timeout(Duration::from_secs(20), eventloop.poll())
                .await
                .expect("progress")
                .expect("broker")
        {
            acked += 1;
        }
    }
    let mut stored = 0_i64;
    for _ in 0..200 {
        stored = sqlx::query_scalar("SELECT COUNT(*) FROM readings WHERE device_id = 'pipe-1'")
            .fetch_one(server.identity.db.pool())
            .await
            .expect("count");
        if stored == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, total, "every message stored");
    let first = server
        .external_mqtt
        .as_ref()
        .expect("consumer")
        .load(Ordering::Relaxed);
    let second_count = second_received.load(Ordering::Relaxed);
    assert!(
        first > 0 && second_count > 0,
        "load split: {first} + {second_count}"
    );
    assert!(first + second_count >= total as u64);
    // Each node writes device status on its own flush (every second); they converge.
    let mut accepted = Value::Null;
    for _ in 0..50 {
        let device: Value = server
            .request(Method::GET, "/api/v1/devices/pipe-1", Some(&admin), None)
            .await
            .json()
            .await
            .expect("json");
        accepted = device["status"]["accepted_readings"].clone();
        if accepted == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted, total);
    second.db.close().await;
    server.cleanup().await;
}

backend_tests!(two_nodes_split_a_shared_subscription);
