//! The sensing hub mirrored into the city information model: every device that reports is an
//! NGSI-LD entity (`urn:ngsi-ld:{type}:{device id}`, its profile's Smart Data Models type,
//! owned by the device's department), and its newest committed values become attributes with
//! `observedAt`, so subscriptions fire on sensor data.
//!
//! The writer hands over only the newest value per device and key (`LatestValues`); this task
//! drains a bounded number of devices per round in one transaction. Under a flood it lags (the
//! entities show the newest values a round later), it never slows ingestion, and its memory is
//! one entry per device. The full series stays in the sensing hub.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;
use yunnao_context::ContextBroker;
use yunnao_context::jsonld::Context;
use yunnao_context::model;
use yunnao_core::Problem;
use yunnao_sensing::Sensing;

pub fn spawn(sensing: Sensing, context: ContextBroker, period: Duration, per_round: usize) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(problem) = round(&sensing, &context, per_round).await {
                tracing::error!(%problem, "mirroring telemetry into the context broker failed");
            }
        }
    });
}

/// The entity id of a device.
pub fn entity_id(entity_type: &str, device_id: &str) -> String {
    format!("urn:ngsi-ld:{entity_type}:{device_id}")
}

/// Devices per transaction: short, so the SQLite write slot is never held for long.
const CHUNK: usize = 100;

/// Mirrors up to `per_round` devices, a chunk at a time, each only while no telemetry write is
/// waiting (ingestion comes first; under saturation the mirror waits and newest values win).
/// Returns how many were mirrored.
pub async fn round(
    sensing: &Sensing,
    context: &ContextBroker,
    per_round: usize,
) -> Result<usize, Problem> {
    let mut done = 0;
    while done < per_round {
        if sensing.ingest_in_flight() > 0 {
            break;
        }
        let mirrored = chunk(sensing, context, CHUNK.min(per_round - done)).await?;
        if mirrored == 0 {
            break;
        }
        done += mirrored;
        tokio::task::yield_now().await;
    }
    Ok(done)
}

async fn chunk(sensing: &Sensing, context: &ContextBroker, size: usize) -> Result<usize, Problem> {
    let batch = sensing.latest.take(size);
    if batch.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = batch.iter().map(|(id, _)| &**id).collect();
    let devices: HashMap<String, yunnao_sensing::DeviceView> = sensing
        .get_devices(&ids)
        .await?
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    let now = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms());
    let core = Context::core();
    let mut items = Vec::with_capacity(batch.len());
    for (device_id, latest) in &batch {
        let Some(device) = devices.get(&**device_id) else {
            continue; // deleted since it reported
        };
        let Some(profile) = sensing.profile(&latest.profile) else {
            continue;
        };
        let mut body = Map::new();
        body.insert(
            "id".into(),
            entity_id(&profile.entity_type, device_id).into(),
        );
        body.insert("type".into(), profile.entity_type.clone().into());
        body.insert("name".into(), device.name.clone().into());
        body.insert("deviceCategory".into(), profile.code.clone().into());
        body.insert(
            "refDevice".into(),
            json!({"type": "Relationship", "object": format!("urn:ngsi-ld:Device:{device_id}")}),
        );
        if let Some(location) = &device.location {
            body.insert(
                "location".into(),
                json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [location.lon, location.lat]}}),
            );
        }
        for (key, ts, value) in &latest.values {
            let unit = profile
                .key(key)
                .map(|k| k.unit.as_str())
                .unwrap_or_default();
            let value: Value = if unit == "bool" {
                Value::Bool(*value != 0.0)
            } else {
                json!(value)
            };
            body.insert(
                key.clone(),
                json!({"type": "Property", "value": value, "observedAt": yunnao_core::time::rfc3339_ms(*ts)}),
            );
        }
        match model::parse_entity(Value::Object(body), &core, &now) {
            Ok(entity) => items.push((entity, device.department.clone())),
            Err(problem) => tracing::warn!(%problem, device = %device_id, "device not mirrored"),
        }
    }
    context
        .merge_many(&context.config.default_tenant, &items)
        .await?;
    Ok(batch.len())
}
