//! The simulated city against a real server: it registers its devices through the import API,
//! reports through the gateway API, its gas leaks raise critical alarms that become incidents,
//! and its departments move those cases through the workflow.

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
