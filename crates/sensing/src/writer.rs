//! The write path: a single task owns committing readings. Requests queue on a bounded channel;
//! each loop takes everything waiting (up to a cap) and commits it in one transaction with
//! multi-row INSERTs, then answers every request. Commits are thus grouped exactly as much as
//! the load demands, with no timer, and an acknowledgement always means "durably stored".

use crate::DeviceInfo;
use crate::events::{Activity, DeviceReadings, Sink, TelemetryCommitted};
use crate::payload::Reading;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use yunnao_store::{Arg, Db, RowStatement, RowWriter, StoreError};

/// Writes the device activity pending in `activity`, in one transaction.
async fn flush_activity(activity: &Activity, rows: &RowWriter) -> Result<(), StoreError> {
    let pending = activity.take();
    let mut args = Vec::with_capacity(pending.len() * 3);
    for (id, (seen, accepted)) in pending {
        args.extend([Arg::text(id), Arg::Int(seen), Arg::Int(accepted)]);
    }
    rows.write(STATUS_UPDATE, args).await
}

/// Devices' last-seen times and counters: newest time wins, counts add up.
const STATUS_UPDATE: RowStatement<'static> = RowStatement {
    head: "WITH v (id, seen, n) AS (VALUES ",
    row: "($1, CAST($2 AS BIGINT), CAST($3 AS BIGINT))",
    tail: ") UPDATE devices SET last_seen_ms = CASE WHEN devices.last_seen_ms IS NULL OR devices.last_seen_ms < v.seen \
           THEN v.seen ELSE devices.last_seen_ms END, accepted_count = devices.accepted_count + v.n FROM v WHERE devices.id = v.id",
    width: 3,
};

/// Readings per transaction at most.
const MAX_BATCH_READINGS: usize = 20_000;

/// Readings of one or more devices, acknowledged together (one message, or a gateway's batch).
pub struct WriteRequest {
    pub items: Vec<(DeviceInfo, Vec<Reading>)>,
    pub received_ms: i64,
    pub done: oneshot::Sender<Result<(), String>>,
}

impl WriteRequest {
    fn readings(&self) -> usize {
        self.items.iter().map(|(_, r)| r.len()).sum()
    }
}

#[derive(Clone)]
pub struct Writer {
    sender: mpsc::Sender<WriteRequest>,
    /// Write requests queued or being committed: background writers (the context mirror) wait
    /// for this to reach zero, so ingestion never waits for them.
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    rows: RowWriter,
    activity: std::sync::Arc<Activity>,
}

impl Writer {
    /// Starts the writer: `queue` requests wait at most; every committed batch goes to each
    /// of `sinks` in turn; devices' activity is written every `status_flush`.
    pub fn start(
        db: Db,
        queue: usize,
        activity: std::sync::Arc<Activity>,
        sinks: Vec<Sink>,
        status_flush: std::time::Duration,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let rows = db.row_writer();
        let insert = telemetry_insert(&db);
        tokio::spawn(run(rows.clone(), insert, receiver, activity.clone(), sinks));
        let writer = Self {
            sender,
            in_flight: std::sync::Arc::default(),
            rows,
            activity,
        };
        let flusher = writer.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(status_flush);
            loop {
                interval.tick().await;
                flusher.flush_status().await;
            }
        });
        writer
    }

    /// Writes devices' pending last-seen times and counters now (also at shutdown).
    pub async fn flush_status(&self) {
        if let Err(error) = flush_activity(&self.activity, &self.rows).await {
            tracing::error!(%error, "device status flush failed");
        }
    }

    /// Queues readings and waits until they are committed.
    pub async fn write(
        &self,
        device: DeviceInfo,
        readings: Vec<Reading>,
        received_ms: i64,
    ) -> Result<(), String> {
        self.write_many(vec![(device, readings)], received_ms).await
    }

    /// Queues the readings of several devices as one request; all are committed together.
    pub async fn write_many(
        &self,
        items: Vec<(DeviceInfo, Vec<Reading>)>,
        received_ms: i64,
    ) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        let (done, committed) = oneshot::channel();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = async {
            self.sender
                .send(WriteRequest {
                    items,
                    received_ms,
                    done,
                })
                .await
                .map_err(|_| "the writer has stopped".to_owned())?;
            committed
                .await
                .map_err(|_| "the writer stopped before committing".to_owned())?
        }
        .await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Write requests queued or being committed right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn run(
    rows: RowWriter,
    insert: String,
    mut receiver: mpsc::Receiver<WriteRequest>,
    activity: std::sync::Arc<Activity>,
    sinks: Vec<Sink>,
) {
    while let Some(first) = receiver.recv().await {
        let mut count = first.readings();
        let mut batch = vec![first];
        while count < MAX_BATCH_READINGS {
            match receiver.try_recv() {
                Ok(request) => {
                    count += request.readings();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let result = commit(&rows, &insert, &batch).await;
        if let Err(error) = &result {
            tracing::error!(%error, readings = count, "telemetry commit failed");
        }
        let committed_ms = yunnao_core::time::now_ms();
        let mut event = TelemetryCommitted {
            committed_ms,
            devices: Vec::new(),
        };
        for request in batch {
            if result.is_ok() {
                for (device, readings) in request.items {
                    activity.record(&device.id, request.received_ms, readings.len() as i64);
                    event.devices.push(DeviceReadings {
                        device_id: device.id,
                        profile: device.profile,
                        department: device.department,
                        readings: readings
                            .into_iter()
                            .map(|r| (r.key, r.ts_ms, r.value))
                            .collect(),
                    });
                }
            }
            let _ = request.done.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|_| "storage failed; the readings were not stored".to_owned()),
            );
        }
        if event.devices.is_empty() {
            continue;
        }
        let event = std::sync::Arc::new(event);
        for sink in &sinks {
            sink.deliver(&event).await;
        }
    }
}

/// The end of the telemetry INSERT: a repeated (device, time) is the same message sent twice
/// (QoS 1 redelivery) or more keys of that moment, merged with the stored row, newest value
/// wins (`pack` merges repeats inside one batch: PostgreSQL refuses to update one row twice in
/// a statement).
fn telemetry_insert(db: &Db) -> String {
    format!(
        " ON CONFLICT (device_id, ts_ms) DO UPDATE SET values_json = {}",
        db.dialect()
            .json_merge("telemetry.values_json", "excluded.values_json")
    )
}

/// Commits a batch's readings in one transaction (see [`RowWriter`]: on SQLite one prepared
/// statement a row on the writer's own connection, elsewhere multi-row statements).
async fn commit(rows: &RowWriter, tail: &str, batch: &[WriteRequest]) -> Result<(), StoreError> {
    let packed = pack(batch);
    let mut args = Vec::with_capacity(packed.len() * 3);
    for row in packed {
        args.extend([
            Arg::text(row.device_id.to_owned()),
            Arg::Int(row.ts_ms),
            Arg::text(row.values_json),
        ]);
    }
    let statement = RowStatement {
        head: "INSERT INTO telemetry (device_id, ts_ms, values_json) VALUES ",
        row: "($1,$2,$3)",
        tail,
        width: 3,
    };
    rows.write(statement, args).await
}

/// One stored row: a device's values at one moment, as a JSON object.
struct PackedRow<'a> {
    device_id: &'a str,
    ts_ms: i64,
    values_json: String,
}

/// A device's values at one moment, before encoding.
type Moment<'a> = (&'a str, i64, Vec<(&'a str, f64)>);

/// Groups a batch's readings by (device, time), merging repeats (the later value wins).
fn pack(batch: &[WriteRequest]) -> Vec<PackedRow<'_>> {
    let mut rows: Vec<Moment<'_>> = Vec::new();
    let mut index: HashMap<(&str, i64), usize> = HashMap::new();
    for request in batch {
        for (device, readings) in &request.items {
            for reading in readings {
                let at = (&*device.id, reading.ts_ms);
                let slot = match rows.last() {
                    // Readings of one sample arrive together: skip the lookup for them.
                    Some(last) if (last.0, last.1) == at => rows.len() - 1,
                    _ => *index.entry(at).or_insert_with(|| {
                        rows.push((at.0, at.1, Vec::with_capacity(readings.len())));
                        rows.len() - 1
                    }),
                };
                let values = &mut rows[slot].2;
                match values.iter_mut().find(|(key, _)| *key == reading.key) {
                    Some(existing) => existing.1 = reading.value,
                    None => values.push((&reading.key, reading.value)),
                }
            }
        }
    }
    rows.into_iter()
        .map(|(device_id, ts_ms, values)| PackedRow {
            device_id,
            ts_ms,
            values_json: values_json(&values),
        })
        .collect()
}

/// `{"key": value, …}`; values are finite (validated), printed in their shortest exact form.
fn values_json(values: &[(&str, f64)]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(2 + values.len() * 20);
    out.push('{');
    for (i, (key, value)) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match serde_json::to_string(key) {
            Ok(quoted) => out.push_str(&quoted),
            Err(_) => out.push_str("\"\""),
        }
        let _ = write!(out, ":{value:?}");
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stored_as_exact_json() {
        let cases: &[(&[(&str, f64)], &str)] = &[
            (&[("CH4", 1.5), ("CO", 3.0)], r#"{"CH4":1.5,"CO":3.0}"#),
            (&[("x", 0.1 + 0.2)], r#"{"x":0.30000000000000004}"#),
            (
                &[("tiny", 1e-7), ("huge", 1e300)],
                r#"{"tiny":1e-7,"huge":1e300}"#,
            ),
            (&[("a\"b", -0.0)], r#"{"a\"b":-0.0}"#),
        ];
        for (values, expected) in cases {
            let json = values_json(values);
            assert_eq!(&json, expected);
            let parsed: HashMap<String, f64> = serde_json::from_str(&json).expect("valid JSON");
            for (key, value) in values.iter() {
                assert_eq!(parsed[*key].to_bits(), value.to_bits(), "{key} round-trips");
            }
        }
    }
}
