//! How fast the writer alone commits readings on SQLite (no HTTP, no parsing):
//! `cargo run --release -p yunnao-sensing --example writer_throughput`.

use std::sync::Arc;
use std::time::Instant;
use yunnao_bus::Bus;
use yunnao_sensing::DeviceInfo;
use yunnao_sensing::events::{Activity, Sink};
use yunnao_sensing::payload::Reading;
use yunnao_sensing::writer::Writer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = yunnao_store::Db::connect(&format!("sqlite://{}/w.db", dir.path().display())).await?;
    yunnao_store::migrate::run(&db, &[yunnao_sensing::MIGRATIONS]).await?;
    let bus = Bus::in_process();
    let writer = Writer::start(
        db.clone(),
        65_536,
        Arc::new(Activity::default()),
        vec![Sink::Bus(bus)],
        std::time::Duration::from_secs(5),
    );
    let devices = 10_000;
    let per_device = 10;
    let started = Instant::now();
    for t in 0..per_device {
        let futures = (0..devices).map(|d| {
            let device = DeviceInfo {
                id: format!("d{d}").into(),
                profile: "manhole-gas".into(),
                department: "x".into(),
            };
            let readings = ["CH4", "H2S", "CO"]
                .iter()
                .map(|k| Reading {
                    key: (*k).into(),
                    ts_ms: 1_760_000_000_000 + t * 60_000,
                    value: 1.0,
                })
                .collect();
            let writer = writer.clone();
            async move { writer.write(device, readings, 0).await }
        });
        for result in futures::future::join_all(futures).await {
            result?;
        }
    }
    let n = devices * per_device as usize;
    println!(
        "writer: {n} readings in {:.2}s = {:.0} readings/s",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}
