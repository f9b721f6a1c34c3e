//! Alarm rules on committed telemetry, on every backend: threshold with duration, consecutive
//! count, rate of change, no data (offline), lifecycle, events on the bus.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use support::{TestServer, expect_problem};
use yunnao_bus::{LagPolicy, SubscribeOptions, Subscription};
use yunnao_sensing::alarms::{AlarmChange, AlarmChanged};
use yunnao_store::testing::TestBackend;
use yunnao_store::{backend_tests, sqlx};

const T0: i64 = 1_795_000_000_000;

struct Fixture {
    server: TestServer,
    admin: String,
    events: Subscription,
}

async fn fixture(backend: TestBackend) -> Fixture {
    let server = TestServer::start_with(backend, |c| c.no_data_check_ms = 100).await;
    let admin = server.admin().await;
    let events = server
        .identity
        .bus
        .subscribe(
            "sensing.alarm.>",
            SubscribeOptions {
                buffer: 1000,
                lag: LagPolicy::Block,
            },
        )
        .expect("subscribe");
    Fixture {
        server,
        admin,
        events,
    }
}

impl Fixture {
    async fn device(&self, id: &str, profile: &str, department: &str) -> String {
        let created: Value = self
            .server
            .request(
                Method::POST,
                "/api/v1/devices",
                Some(&self.admin),
                Some(json!({"id": id, "name": id, "profile": profile, "department": department})),
            )
            .await
            .json()
            .await
            .expect("json");
        created["access_token"].as_str().expect("token").to_owned()
    }

    async fn rule(&self, rule: Value) -> Value {
        let response = self
            .server
            .request(
                Method::POST,
                "/api/v1/alarm-rules",
                Some(&self.admin),
                Some(rule),
            )
            .await;
        assert_eq!(response.status(), 201);
        response.json().await.expect("json")
    }

    async fn send(&self, token: &str, ts: i64, values: Value) {
        let response = self
            .server
            .client
            .post(self.server.url(&format!("/api/v1/{token}/telemetry")))
            .json(&json!({"ts": ts, "values": values}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    async fn next_change(&mut self) -> AlarmChanged {
        let envelope = tokio::time::timeout(Duration::from_secs(10), self.events.next_event())
            .await
            .expect("alarm event in time")
            .expect("event");
        envelope.decode().expect("typed")
    }

    async fn no_change(&mut self) {
        assert!(
            tokio::time::timeout(Duration::from_millis(300), self.events.next_event())
                .await
                .is_err(),
            "no alarm change expected"
        );
    }
}

async fn threshold_for_a_duration_raises_then_clears(backend: TestBackend) {
    let mut f = fixture(backend).await;
    let token = f.device("level-1", "reservoir-level", "water").await;
    f.rule(json!({"name": "水库超汛限水位", "profile": "reservoir-level", "department": "water", "key": "height",
                  "kind": "threshold", "operator": "above", "threshold": 4.5, "duration_s": 600, "severity": "critical"})).await;
    f.send(&token, T0, json!({"height": 4.6})).await;
    f.send(&token, T0 + 300_000, json!({"height": 4.7})).await;
    f.no_change().await;
    f.send(&token, T0 + 600_000, json!({"height": 4.8})).await;
    let raised = f.next_change().await;
    assert_eq!(raised.change, AlarmChange::Raised);
    assert_eq!(raised.alarm.device_id, "level-1");
    assert_eq!(
        raised.alarm.severity,
        yunnao_sensing::alarms::Severity::Critical
    );
    assert!(
        raised.alarm.message.contains("4.8"),
        "{}",
        raised.alarm.message
    );
    assert!(raised.committed_ms.is_some());

    // Still high: no second alarm for the same rule and device.
    f.send(&token, T0 + 900_000, json!({"height": 4.9})).await;
    f.no_change().await;
    f.send(&token, T0 + 1_200_000, json!({"height": 4.2})).await;
    let cleared = f.next_change().await;
    assert_eq!(
        (cleared.change, cleared.alarm.status.as_str()),
        (AlarmChange::Cleared, "cleared")
    );
    assert_eq!(cleared.alarm.cleared_by.as_deref(), Some("auto"));

    let history: Vec<Value> = f
        .server
        .request(
            Method::GET,
            "/api/v1/alarms?active=false&device=level-1",
            Some(&f.admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(history.len(), 1);
    let active: Vec<Value> = f
        .server
        .request(Method::GET, "/api/v1/alarms", Some(&f.admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert!(active.is_empty());
    f.server.cleanup().await;
}

async fn consecutive_and_rate_rules(backend: TestBackend) {
    let mut f = fixture(backend).await;
    let gas = f.device("gas-1", "manhole-gas", "city-management").await;
    let river = f.device("river-1", "river-flow", "water").await;
    f.rule(json!({"name": "甲烷连续超标", "device": "gas-1", "department": "city-management", "key": "CH4",
                  "kind": "threshold", "operator": "above", "threshold": 20, "consecutive": 3, "severity": "major"})).await;
    f.rule(
        json!({"name": "河道水位陡涨", "device": "river-1", "department": "water", "key": "height",
                  "kind": "rate", "threshold": 0.5, "severity": "critical"}),
    )
    .await;

    for (i, ch4) in [25.0, 10.0, 25.0, 25.0].into_iter().enumerate() {
        f.send(&gas, T0 + i as i64 * 60_000, json!({"CH4": ch4}))
            .await;
    }
    f.no_change().await;
    f.send(&gas, T0 + 4 * 60_000, json!({"CH4": 26.0})).await;
    let raised = f.next_change().await;
    assert_eq!(
        (raised.change, raised.alarm.device_id.as_str()),
        (AlarmChange::Raised, "gas-1")
    );

    f.send(&river, T0, json!({"height": 2.0})).await;
    f.send(&river, T0 + 60_000, json!({"height": 2.3})).await;
    f.no_change().await;
    f.send(&river, T0 + 120_000, json!({"height": 3.5})).await;
    let raised = f.next_change().await;
    assert_eq!(
        (raised.change, raised.alarm.device_id.as_str()),
        (AlarmChange::Raised, "river-1")
    );
    f.server.cleanup().await;
}

async fn silent_devices_go_offline_and_come_back(backend: TestBackend) {
    let mut f = fixture(backend).await;
    let token = f.device("aq-1", "air-quality", "ecology").await;
    f.device("aq-2", "air-quality", "ecology").await;
    f.rule(json!({"name": "设备离线", "profile": "air-quality", "department": "ecology", "kind": "no_data",
                  "missed_intervals": 2, "severity": "warning"})).await;
    f.no_change().await;
    // Pretend aq-1 was registered three hours ago (reporting interval: 1 h).
    sqlx::query("UPDATE devices SET created_at_ms = $1 WHERE id = 'aq-1'")
        .bind(yunnao_core::time::now_ms() - 3 * 3_600_000)
        .execute(f.server.identity.db.pool())
        .await
        .expect("backdate");
    let offline = f.next_change().await;
    assert_eq!(
        (offline.change, offline.alarm.device_id.as_str()),
        (AlarmChange::Raised, "aq-1")
    );
    assert!(offline.alarm.message.contains("no data"));
    f.no_change().await;

    let now = yunnao_core::time::now_ms();
    f.send(&token, now, json!({"pm25": 30})).await;
    let back = f.next_change().await;
    assert_eq!(
        (back.change, back.alarm.device_id.as_str()),
        (AlarmChange::Cleared, "aq-1")
    );
    let device: Value = f
        .server
        .request(Method::GET, "/api/v1/devices/aq-1", Some(&f.admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(device["status"]["online"], true);
    f.server.cleanup().await;
}

async fn operators_acknowledge_and_clear_their_own_alarms(backend: TestBackend) {
    let mut f = fixture(backend).await;
    let token = f
        .device("lamp-1", "smart-lamp-post", "city-management")
        .await;
    let operator = f
        .server
        .user(&f.admin, "city.op", "city-management", "operator")
        .await;
    let other = f
        .server
        .user(&f.admin, "water.op", "water", "operator")
        .await;
    f.rule(json!({"name": "灯杆功耗异常", "profile": "smart-lamp-post", "department": "city-management", "key": "powerConsumption",
                  "kind": "threshold", "operator": "outside", "threshold": 10, "threshold_high": 400, "severity": "minor", "auto_clear": false})).await;
    f.send(&token, T0, json!({"powerConsumption": 900})).await;
    let raised = f.next_change().await;
    let id = raised.alarm.id.clone();

    expect_problem(
        f.server
            .request(
                Method::POST,
                &format!("/api/v1/alarms/{id}/ack"),
                Some(&other),
                None,
            )
            .await,
        404,
        "not-found",
    )
    .await;
    let acked: Value = f
        .server
        .request(
            Method::POST,
            &format!("/api/v1/alarms/{id}/ack"),
            Some(&operator),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "city.op");
    assert_eq!(f.next_change().await.change, AlarmChange::Acknowledged);
    expect_problem(
        f.server
            .request(
                Method::POST,
                &format!("/api/v1/alarms/{id}/ack"),
                Some(&operator),
                None,
            )
            .await,
        409,
        "conflict",
    )
    .await;

    // auto_clear is off: a normal value leaves the alarm standing.
    f.send(&token, T0 + 60_000, json!({"powerConsumption": 120}))
        .await;
    f.no_change().await;
    let cleared: Value = f
        .server
        .request(
            Method::POST,
            &format!("/api/v1/alarms/{id}/clear"),
            Some(&operator),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["status"], "cleared");
    assert_eq!(f.next_change().await.change, AlarmChange::Cleared);

    for bad in [
        json!({"name": "x", "kind": "threshold", "severity": "minor", "profile": "smart-lamp-post"}),
        json!({"name": "x", "kind": "threshold", "severity": "minor", "profile": "smart-lamp-post", "device": "lamp-1", "key": "powerState", "operator": "above", "threshold": 1}),
        json!({"name": "x", "kind": "rate", "severity": "minor", "profile": "smart-lamp-post", "key": "nope", "threshold": 1}),
        json!({"name": "x", "kind": "threshold", "severity": "minor", "profile": "smart-lamp-post", "key": "powerState", "operator": "outside", "threshold": 5, "threshold_high": 1}),
    ] {
        expect_problem(
            f.server
                .request(
                    Method::POST,
                    "/api/v1/alarm-rules",
                    Some(&operator),
                    Some(bad),
                )
                .await,
            422,
            "validation",
        )
        .await;
    }
    expect_problem(
        f.server.request(Method::POST, "/api/v1/alarm-rules", Some(&operator), Some(json!({"name": "x", "kind": "no_data", "severity": "minor", "profile": "air-quality", "platform_default": true}))).await,
        403, "forbidden").await;
    f.server.cleanup().await;
}

backend_tests!(
    threshold_for_a_duration_raises_then_clears,
    consecutive_and_rate_rules,
    silent_devices_go_offline_and_come_back,
    operators_acknowledge_and_clear_their_own_alarms,
);
