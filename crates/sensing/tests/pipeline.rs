//! The telemetry pipeline without a server: the writer commits through the store's row writer
//! and then hands each batch to every sink, on both backends.

use std::sync::Arc;
use yunnao_sensing::DeviceInfo;
use yunnao_sensing::events::{Activity, LatestValues, Sink};
use yunnao_sensing::payload::Reading;
use yunnao_sensing::writer::Writer;
use yunnao_store::testing::{TestBackend, TestDb};

fn device(id: &str) -> DeviceInfo {
    DeviceInfo {
        id: id.into(),
        profile: "air-quality".into(),
        department: "environment".into(),
    }
}

fn reading(key: &str, ts_ms: i64, value: f64) -> Reading {
    Reading {
        key: key.into(),
        ts_ms,
        value,
    }
}

async fn committed_batches_reach_every_sink_and_repeats_merge(backend: TestBackend) {
    let test = TestDb::new(backend).await.expect("test database");
    yunnao_store::migrate::run(&test.db, &[yunnao_sensing::MIGRATIONS])
        .await
        .expect("migrations");
    let (queue, mut heard) = tokio::sync::mpsc::channel(4);
    let latest = Arc::new(LatestValues::default());
    let writer = Writer::start(
        test.db.clone(),
        64,
        Arc::new(Activity::default()),
        // Sinks are served in order: once the queue hears a batch the latest values already hold it.
        vec![Sink::Latest(latest.clone()), Sink::Queue(queue)],
        std::time::Duration::from_secs(3600),
    );
    writer
        .write_many(
            vec![
                (device("aq-1"), vec![reading("pm25", 1_000, 35.0)]),
                (device("aq-2"), vec![reading("pm25", 1_000, 80.0)]),
            ],
            1_000,
        )
        .await
        .expect("committed");
    let batch = heard.recv().await.expect("the queue sink hears the batch");
    let ids: Vec<&str> = batch.devices.iter().map(|d| &*d.device_id).collect();
    assert_eq!(ids, ["aq-1", "aq-2"]);
    assert_eq!(
        batch.devices[1].readings,
        [("pm25".to_owned(), 1_000, 80.0)]
    );
    let newest = latest.take(10);
    assert_eq!(
        newest.len(),
        2,
        "the context mirror's sink has both devices"
    );
    // The same moment again with another key: one row, both values (newest wins per key).
    writer
        .write(
            device("aq-1"),
            vec![reading("pm10", 1_000, 50.0), reading("pm25", 1_000, 36.0)],
            1_001,
        )
        .await
        .expect("committed");
    heard.recv().await.expect("second batch");
    let rows: Vec<(String, i64, String)> = test
        .db
        .fetch_all(
            "SELECT device_id, ts_ms, values_json FROM telemetry ORDER BY device_id",
            &[],
        )
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2);
    let merged: serde_json::Value = serde_json::from_str(&rows[0].2).expect("json");
    assert_eq!(merged, serde_json::json!({"pm25": 36.0, "pm10": 50.0}));
}

yunnao_store::backend_tests!(committed_batches_reach_every_sink_and_repeats_merge);
