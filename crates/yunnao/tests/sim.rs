//! The simulated city against a real server: it registers its devices through the import API,
//! its gas and air sensors report over the device MQTT endpoint and the rest through the gateway
//! API, its gas leaks raise critical alarms that become incidents, its departments move those
//! cases through the workflow and report progress on the plan under their seals.

mod support;

use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{ADMIN_PASSWORD, TestServer};
use yunnao_store::backend_tests;
use yunnao_store::testing::TestBackend;

async fn the_simulated_city_runs_through_the_real_interfaces(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let mut config = yunnao_sim::SimConfig::new(&server.base, "admin", ADMIN_PASSWORD);
    config.seed = 7;
    // Everything ten times faster than the demo: leaks within seconds.
    config.interval_factor = 0.01;
    config.mqtt = Some(format!("127.0.0.1:{}", server.mqtt_port));
    let stats = Arc::new(yunnao_sim::SimStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn(yunnao_sim::run(config, stats.clone(), async {
        let _ = stopped.await;
    }));

    // Devices registered, labelled simulated, and reporting.
    let mut devices = Value::Null;
    for _ in 0..200 {
        let response = server
            .request(
                Method::GET,
                "/api/v1/devices?limit=1000",
                Some(&admin),
                None,
            )
            .await;
        devices = response.json().await.unwrap_or(Value::Null);
        if devices["total"].as_i64().unwrap_or(0) >= 600 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(devices["total"], 600, "the small city's fleet");
    let list = devices["devices"].as_array().expect("devices");
    assert!(list.iter().all(|d| d["simulated"] == true));

    // A critical alarm becomes an incident, and the crew works on cases.
    let mut incidents = Value::Null;
    // Leaks, bursts and storms come at random (seeded); a minute and a half is ample.
    for _ in 0..900 {
        let response = server
            .request(
                Method::GET,
                "/api/v1/governance/incidents?source=alarm",
                Some(&admin),
                None,
            )
            .await;
        incidents = response.json().await.unwrap_or(Value::Null);
        if incidents["total"].as_i64().unwrap_or(0) > 0
            && stats.steps_taken.load(Ordering::Relaxed) > 0
            && stats.mqtt_acknowledged.load(Ordering::Relaxed) > 0
            && stats.progress_reports.load(Ordering::Relaxed) >= 20
            && stats.code_scans_accepted.load(Ordering::Relaxed) >= 5
            && stats.data_decisions.load(Ordering::Relaxed) >= 8
            && stats.data_subscriptions.load(Ordering::Relaxed) >= 12
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        incidents["total"].as_i64().unwrap_or(0) > 0,
        "no alarm incident: {incidents}"
    );
    assert!(stats.readings_sent.load(Ordering::Relaxed) > 1000);
    assert!(
        stats.steps_taken.load(Ordering::Relaxed) > 0,
        "no workflow step taken"
    );
    assert_eq!(stats.errors.load(Ordering::Relaxed), 0);
    // Departments shared data by request and decision; a dozen scenario apps subscribed,
    // which the plan's 新接入场景 counts.
    let monitoring: Value = server
        .request(Method::GET, "/api/v1/data/monitoring", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    let requests: i64 = monitoring["datasets"]
        .as_array()
        .map(|all| all.iter().filter_map(|d| d["requests"].as_i64()).sum())
        .unwrap_or(0);
    assert!(requests >= 8, "{}", monitoring["totals"]);
    let targets: Value = server
        .request(Method::GET, "/api/v1/plan/targets", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    let scenarios = targets
        .as_array()
        .and_then(|all| all.iter().find(|t| t["item"] == 3))
        .map(|t| t["current"].clone())
        .unwrap_or(Value::Null);
    assert_eq!(scenarios, serde_json::json!(12.0));
    // Residents showed their codes at the scenarios; the scan log counted them.
    assert!(stats.code_scans_accepted.load(Ordering::Relaxed) >= 5);
    let figures: Value = server
        .request(Method::GET, "/api/v1/codes/figures", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        figures["scans_today"].as_i64().unwrap_or(0) >= 5,
        "{figures}"
    );
    assert!(
        figures["live_scenarios"].as_i64().unwrap_or(0) >= 1,
        "{figures}"
    );
    // The gas sensors spoke MQTT: acknowledged after commit, and their readings are stored.
    assert!(stats.mqtt_acknowledged.load(Ordering::Relaxed) > 0);
    let gas: Value = server
        .request(
            Method::GET,
            "/api/v1/devices/sim-manhole-gas-000000",
            Some(&admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert!(
        gas["status"]["accepted_readings"].as_i64().unwrap_or(0) > 0,
        "{gas}"
    );
    // Departments reported on the plan; their reports carry verified seals.
    let targets: Value = server
        .request(Method::GET, "/api/v1/plan/targets", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    let reported: Vec<&Value> = targets
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| t["report"]["seal_verified"] == true)
        .collect();
    assert!(reported.len() >= 20, "{} reported", reported.len());
    // Every district has a simulated grid worker: staffing coverage reads 100%.
    let coverage: Value = server
        .request(
            Method::GET,
            "/api/v1/governance/grid/coverage",
            Some(&admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    for district in coverage["districts"].as_array().expect("districts") {
        assert_eq!(district["staffed_pct"], 100.0, "{}", district["name"]);
    }
    let _ = stop.send(());
    sim.await.expect("joined").expect("sim ran");
    server.cleanup().await;
}

backend_tests!(the_simulated_city_runs_through_the_real_interfaces);
