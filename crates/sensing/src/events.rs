//! What the telemetry writer tells the rest of the hub once readings are committed, and the
//! sinks it tells: the writer knows only [`Sink`]s, never who consumes them. The alarm engine,
//! the context mirror and the bus are each a sink, set up in [`crate::Sensing::start`]; the
//! writer and its consumers import this module, never each other.
//!
//! ```text
//! sources (MQTT, HTTP) ─→ Writer ─commit─→ Sinks: Queue (alarm engine, waits when full)
//!                                               Latest (context mirror, newest value wins)
//!                                               Bus (`sensing.telemetry.committed`)
//! ```

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use yunnao_bus::{Bus, Event};

/// One committed batch, as an event: `sensing.telemetry.committed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TelemetryCommitted {
    pub committed_ms: i64,
    pub devices: Vec<DeviceReadings>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceReadings {
    pub device_id: std::sync::Arc<str>,
    pub profile: std::sync::Arc<str>,
    pub department: std::sync::Arc<str>,
    /// (key, ts_ms, value)
    pub readings: Vec<(String, i64, f64)>,
}

impl Event for TelemetryCommitted {
    const TYPE: &'static str = "sensing.telemetry.committed";
    const VERSION: u32 = 1;
    fn subject(&self) -> String {
        "sensing.telemetry.committed".into()
    }
}

/// A consumer of committed batches, fed in commit order.
pub enum Sink {
    /// A bounded queue: delivery waits while it is full, so the consumer (the alarm engine)
    /// never falls arbitrarily far behind the data.
    Queue(mpsc::Sender<Arc<TelemetryCommitted>>),
    /// The newest values per device, taken by a consumer at its own pace (the context
    /// mirror): delivery never waits, a slow consumer lags but memory stays one entry a device.
    Latest(Arc<LatestValues>),
    /// Published as `sensing.telemetry.committed` (other nodes, subscribers).
    Bus(Bus),
}

impl Sink {
    pub async fn deliver(&self, batch: &Arc<TelemetryCommitted>) {
        match self {
            Sink::Queue(sender) => {
                if sender.send(batch.clone()).await.is_err() {
                    tracing::error!("a telemetry consumer stopped; committed batch not delivered");
                }
            }
            Sink::Latest(latest) => latest.record(batch),
            Sink::Bus(bus) => {
                if let Err(error) = bus.publish(&**batch).await {
                    tracing::error!(%error, "telemetry event not published");
                }
            }
        }
    }
}

/// Per-device traffic not yet written to `devices` (last seen, readings accepted). Kept out of
/// the commit path: one status write per device per flush instead of one per batch.
#[derive(Default)]
pub struct Activity {
    pending: std::sync::Mutex<HashMap<String, (i64, i64)>>,
    /// Readings committed since start (for rates on the overview).
    pub accepted_total: std::sync::atomic::AtomicU64,
}

impl Activity {
    pub(crate) fn record(&self, device: &str, seen_ms: i64, accepted: i64) {
        self.accepted_total
            .fetch_add(accepted.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.entry(device.to_owned()).or_insert((0, 0));
        entry.0 = entry.0.max(seen_ms);
        entry.1 += accepted;
    }

    /// (last seen, accepted) recorded but not yet flushed for `device`.
    pub fn pending(&self, device: &str) -> Option<(i64, i64)> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)
            .copied()
    }

    pub(crate) fn take(&self) -> HashMap<String, (i64, i64)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The newest committed value of every key of every device that reported since the last
/// `take`: what the context broker mirrors. Newest wins, so a slow consumer lags but never
/// slows ingestion or grows beyond one entry per device.
#[derive(Default)]
pub struct LatestValues {
    pending: std::sync::Mutex<HashMap<std::sync::Arc<str>, DeviceLatest>>,
    occupancy: std::sync::Mutex<Occupancy>,
}

/// The newest `occupied` value of every device that has one (parking spaces), kept with a
/// running count so the overview reads city-wide occupancy without a scan.
#[derive(Default)]
struct Occupancy {
    by_device: HashMap<std::sync::Arc<str>, (i64, bool)>,
    occupied: i64,
}

#[derive(Debug, Clone)]
pub struct DeviceLatest {
    pub profile: std::sync::Arc<str>,
    pub department: std::sync::Arc<str>,
    /// (key, ts_ms, value), one per key.
    pub values: Vec<(String, i64, f64)>,
}

impl LatestValues {
    pub(crate) fn record(&self, event: &TelemetryCommitted) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for device in &event.devices {
            let entry = pending
                .entry(device.device_id.clone())
                .or_insert_with(|| DeviceLatest {
                    profile: device.profile.clone(),
                    department: device.department.clone(),
                    values: Vec::new(),
                });
            for (key, ts, value) in &device.readings {
                match entry.values.iter_mut().find(|(k, _, _)| k == key) {
                    Some(slot) if slot.1 <= *ts => *slot = (key.clone(), *ts, *value),
                    Some(_) => {}
                    None => entry.values.push((key.clone(), *ts, *value)),
                }
            }
        }
        drop(pending);
        let mut occupancy = self.occupancy.lock().unwrap_or_else(|p| p.into_inner());
        for device in &event.devices {
            for (key, ts, value) in &device.readings {
                if key != "occupied" {
                    continue;
                }
                let now = *value != 0.0;
                let before = occupancy.by_device.get(&device.device_id).copied();
                match before {
                    Some((seen, _)) if seen > *ts => continue,
                    Some((_, was)) => occupancy.occupied += now as i64 - was as i64,
                    None => occupancy.occupied += now as i64,
                }
                occupancy
                    .by_device
                    .insert(device.device_id.clone(), (*ts, now));
            }
        }
    }

    /// Devices reporting an `occupied` key on this node since it started: (occupied, reporting).
    pub fn occupancy(&self) -> (i64, i64) {
        let occupancy = self.occupancy.lock().unwrap_or_else(|p| p.into_inner());
        (occupancy.occupied, occupancy.by_device.len() as i64)
    }

    /// Up to `max` devices' newest values, removed from the pending set.
    pub fn take(&self, max: usize) -> Vec<(std::sync::Arc<str>, DeviceLatest)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<std::sync::Arc<str>> = pending.keys().take(max).cloned().collect();
        keys.into_iter()
            .filter_map(|k| pending.remove(&k).map(|v| (k, v)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
