//! The write path: a single task owns committing readings. Requests queue on a bounded channel;
//! each loop takes everything waiting (up to a cap) and commits it in one transaction with
//! multi-row INSERTs, then answers every request. Commits are thus grouped exactly as much as
//! the load demands, with no timer, and an acknowledgement always means "durably stored".

use crate::DeviceInfo;
use crate::payload::Reading;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use yunnao_bus::{Bus, Event};
use yunnao_store::{Db, StoreError, sqlx};

/// Rows per INSERT statement (4 parameters each, well under every backend's limit).
const ROWS_PER_STATEMENT: usize = 500;
/// Devices per status UPDATE statement.
const DEVICES_PER_STATEMENT: usize = 500;

/// Per-device traffic not yet written to `devices` (last seen, readings accepted). Kept out of
/// the commit path: one status write per device per flush instead of one per batch.
#[derive(Default)]
pub struct Activity {
    pending: std::sync::Mutex<HashMap<String, (i64, i64)>>,
    /// Readings committed since start (for rates on the overview).
    pub accepted_total: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn record(&self, device: &str, seen_ms: i64, accepted: i64) {
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

    fn take(&self) -> HashMap<String, (i64, i64)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes what is pending: on SQLite one prepared UPDATE per device on the writer's own
    /// connection, elsewhere one UPDATE per chunk of devices.
    async fn flush(&self, db: &Db, sqlite: Option<&SqliteWriter>) -> Result<(), StoreError> {
        let pending: Vec<(String, (i64, i64))> = self.take().into_iter().collect();
        if pending.is_empty() {
            return Ok(());
        }
        if let Some(sqlite) = sqlite {
            return sqlite.update_status(db, pending).await;
        }
        let mut tx = db.begin_write().await?;
        for chunk in pending.chunks(DEVICES_PER_STATEMENT) {
            let mut sql = String::from("WITH v (id, seen, n) AS (VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                let p = i * 3;
                sql.push_str(&format!(
                    "(${}, CAST(${} AS BIGINT), CAST(${} AS BIGINT))",
                    p + 1,
                    p + 2,
                    p + 3
                ));
            }
            sql.push_str(
                ") UPDATE devices SET last_seen_ms = CASE WHEN devices.last_seen_ms IS NULL OR devices.last_seen_ms < v.seen \
                 THEN v.seen ELSE devices.last_seen_ms END, accepted_count = devices.accepted_count + v.n FROM v WHERE devices.id = v.id",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, (seen, n)) in chunk {
                query = query.bind(id.as_str()).bind(*seen).bind(*n);
            }
            query.execute(&mut **tx).await?;
        }
        tx.commit().await?;
        Ok(())
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
    fn record(&self, event: &TelemetryCommitted) {
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
    db: Db,
    sqlite: Option<std::sync::Arc<SqliteWriter>>,
    activity: std::sync::Arc<Activity>,
}

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

impl Writer {
    pub fn start(
        db: Db,
        bus: Bus,
        queue: usize,
        activity: std::sync::Arc<Activity>,
        alarms: Option<crate::alarms::AlarmInput>,
        status_flush: std::time::Duration,
        latest: std::sync::Arc<LatestValues>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let sqlite = match db.backend() {
            yunnao_store::Backend::Sqlite => match SqliteWriter::open(&db) {
                Ok(writer) => Some(std::sync::Arc::new(writer)),
                Err(error) => {
                    tracing::error!(%error, "cannot open the SQLite telemetry writer; using the pool");
                    None
                }
            },
            yunnao_store::Backend::Postgres => None,
        };
        tokio::spawn(run(
            db.clone(),
            sqlite.clone(),
            bus,
            receiver,
            activity.clone(),
            alarms,
            latest.clone(),
        ));
        let writer = Self {
            sender,
            in_flight: std::sync::Arc::default(),
            db,
            sqlite,
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
        if let Err(error) = self.activity.flush(&self.db, self.sqlite.as_deref()).await {
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
    db: Db,
    sqlite: Option<std::sync::Arc<SqliteWriter>>,
    bus: Bus,
    mut receiver: mpsc::Receiver<WriteRequest>,
    activity: std::sync::Arc<Activity>,
    alarms: Option<crate::alarms::AlarmInput>,
    latest: std::sync::Arc<LatestValues>,
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
        let (batch, result) = commit(&db, sqlite.as_deref(), batch).await;
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
        latest.record(&event);
        let event = std::sync::Arc::new(event);
        if let Some(alarms) = &alarms {
            alarms.submit(event.clone()).await;
        }
        if let Err(error) = bus.publish(&*event).await {
            tracing::error!(%error, "telemetry event not published");
        }
    }
}

/// On SQLite the writer uses its own rusqlite connection with a cached prepared statement on a
/// blocking thread: sqlx's per-statement round trips cost an order of magnitude in rows per
/// second here (see ../shared/STACK-NOTES.md). It takes the store's writer slot, so it never
/// races the pool's writers.
struct SqliteWriter {
    connection: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
}

impl SqliteWriter {
    fn open(db: &Db) -> Result<Self, StoreError> {
        let path = yunnao_store::sqlite_path(db.url());
        let connection = rusqlite::Connection::open(path)
            .map_err(|e| StoreError::Other(format!("telemetry writer: {e}")))?;
        connection
            .execute_batch(yunnao_store::SQLITE_WRITER_PRAGMAS)
            .map_err(|e| StoreError::Other(format!("telemetry writer: {e}")))?;
        Ok(Self {
            connection: std::sync::Arc::new(std::sync::Mutex::new(connection)),
        })
    }

    async fn update_status(
        &self,
        db: &Db,
        pending: Vec<(String, (i64, i64))>,
    ) -> Result<(), StoreError> {
        let _slot = db.sqlite_write_slot().await;
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            let tx =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut update = tx.prepare_cached(
                    "UPDATE devices SET last_seen_ms = MAX(COALESCE(last_seen_ms, ?2), ?2), \
                     accepted_count = accepted_count + ?3 WHERE id = ?1",
                )?;
                for (id, (seen, accepted)) in &pending {
                    update.execute(rusqlite::params![id, seen, accepted])?;
                }
            }
            tx.commit()
        })
        .await
        .map_err(|e| StoreError::Other(format!("device status task: {e}")))?
        .map_err(|e| StoreError::Other(format!("device status: {e}")))
    }

    async fn commit(
        &self,
        db: &Db,
        batch: Vec<WriteRequest>,
    ) -> (Vec<WriteRequest>, Result<(), StoreError>) {
        let _slot = db.sqlite_write_slot().await;
        let connection = self.connection.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            let result = (|| {
                let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    // A repeated (device, time) is the same message sent twice (QoS 1
                    // redelivery) or more keys of that moment: merge, newest value wins.
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO telemetry (device_id, ts_ms, values_json) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (device_id, ts_ms) DO UPDATE SET values_json = json_patch(telemetry.values_json, excluded.values_json)",
                    )?;
                    for row in pack(&batch) {
                        insert.execute(rusqlite::params![row.device_id, row.ts_ms, row.values_json])?;
                    }
                }
                tx.commit()
            })();
            (batch, result.map_err(|e| StoreError::Other(format!("telemetry commit: {e}"))))
        })
        .await;
        match joined {
            Ok(outcome) => outcome,
            // The batch went down with the task: its senders are dropped, which callers see as
            // "not committed".
            Err(e) => (
                Vec::new(),
                Err(StoreError::Other(format!("telemetry writer task: {e}"))),
            ),
        }
    }
}

async fn commit(
    db: &Db,
    sqlite: Option<&SqliteWriter>,
    batch: Vec<WriteRequest>,
) -> (Vec<WriteRequest>, Result<(), StoreError>) {
    if let Some(sqlite) = sqlite {
        return sqlite.commit(db, batch).await;
    }
    let result = commit_pool(db, &batch).await;
    (batch, result)
}

async fn commit_pool(db: &Db, batch: &[WriteRequest]) -> Result<(), StoreError> {
    let rows = pack(batch);
    let mut tx = db.begin_write().await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from("INSERT INTO telemetry (device_id, ts_ms, values_json) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let p = i * 3;
            sql.push_str(&format!("(${},${},${})", p + 1, p + 2, p + 3));
        }
        // `pack` merged repeats inside the batch (PostgreSQL refuses to update one row twice
        // in a statement); a repeat of an earlier batch merges here, newest value wins.
        sql.push_str(
            " ON CONFLICT (device_id, ts_ms) DO UPDATE SET values_json = \
             (CAST(telemetry.values_json AS JSONB) || CAST(excluded.values_json AS JSONB))::text",
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            query = query
                .bind(row.device_id)
                .bind(row.ts_ms)
                .bind(row.values_json.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    tx.commit().await?;
    Ok(())
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
