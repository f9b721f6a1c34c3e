//! The simulated devices: where they are, who owns them, and what they report.

use crate::{Api, SimConfig, SimStats, count};
use geo::Intersects;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use yunnao_city::{District, districts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A few hundred devices: starts in seconds.
    Small,
    /// The plan's scale where one machine carries it: 300,000 parking spaces, thousands of
    /// water, rain, gas, air and charger sensors.
    City,
}

impl Scale {
    pub fn parse(text: &str) -> Option<Scale> {
        match text {
            "small" => Some(Scale::Small),
            "city" => Some(Scale::City),
            _ => None,
        }
    }
}

/// (profile, owning department, reporting interval s, small count, city count, district weights)
const KINDS: [(&str, &str, u64, usize, usize); 10] = [
    ("parking-space", "transport", 600, 400, 300_000),
    ("rain-gauge", "water", 300, 20, 500),
    ("reservoir-level", "water", 300, 10, 100),
    ("river-flow", "water", 300, 10, 200),
    ("water-quality", "water", 600, 10, 300),
    ("pipe-pressure", "water", 60, 20, 2_000),
    ("manhole-gas", "city-management", 300, 40, 3_000),
    ("ev-charger", "power-supply", 300, 40, 5_000),
    ("air-quality", "ecology", 3600, 10, 300),
    ("smart-lamp-post", "city-management", 900, 40, 500),
];

/// Urban districts hold most parking and lamps; weights per district in code order.
const URBAN_WEIGHTS: [f64; 10] = [4.0, 4.0, 3.0, 2.0, 2.0, 2.0, 1.5, 1.0, 1.0, 1.0];

#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub profile: &'static str,
    pub department: &'static str,
    pub interval_s: u64,
    pub lon: f64,
    pub lat: f64,
    /// Index of the district (code order).
    pub district: usize,
}

#[derive(Debug, Clone)]
pub struct Fleet {
    pub devices: Arc<Vec<Device>>,
    pub districts: Arc<Vec<District>>,
}

/// A uniformly random point inside `district`.
pub fn point_in(district: &District, rng: &mut ChaCha8Rng) -> (f64, f64) {
    use geo::BoundingRect;
    let Some(rect) = district.boundary.bounding_rect() else {
        return (120.38, 36.06);
    };
    for _ in 0..1000 {
        let lon = rng.random_range(rect.min().x..rect.max().x);
        let lat = rng.random_range(rect.min().y..rect.max().y);
        if district.boundary.intersects(&geo::Point::new(lon, lat)) {
            // Six decimals: about 0.1 m, what a GPS fix gives.
            return ((lon * 1e6).round() / 1e6, (lat * 1e6).round() / 1e6);
        }
    }
    (rect.center().x, rect.center().y)
}

pub fn pick_district(rng: &mut ChaCha8Rng) -> usize {
    let total: f64 = URBAN_WEIGHTS.iter().sum();
    let mut x = rng.random_range(0.0..total);
    for (i, w) in URBAN_WEIGHTS.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    0
}

impl Fleet {
    pub fn generate(scale: Scale, rng: &mut ChaCha8Rng) -> Result<Fleet, String> {
        let districts = districts()?;
        let mut devices = Vec::new();
        for (profile, department, interval_s, small, city) in KINDS {
            let n = match scale {
                Scale::Small => small,
                Scale::City => city,
            };
            for i in 0..n {
                let district =
                    if matches!(profile, "parking-space" | "smart-lamp-post" | "ev-charger") {
                        pick_district(rng)
                    } else {
                        rng.random_range(0..districts.len())
                    };
                let (lon, lat) = point_in(&districts[district], rng);
                devices.push(Device {
                    id: format!("sim-{profile}-{i:06}"),
                    profile,
                    department,
                    interval_s,
                    lon,
                    lat,
                    district,
                });
            }
        }
        Ok(Fleet {
            devices: Arc::new(devices),
            districts: Arc::new(districts),
        })
    }
}

/// Profiles whose devices speak MQTT when the server's MQTT endpoint is known.
const MQTT_PROFILES: [&str; 2] = ["manhole-gas", "air-quality"];
/// One connection each: enough to exercise the endpoint, few enough for any laptop.
const MQTT_DEVICES: usize = 1000;

impl Device {
    fn speaks_mqtt(&self) -> bool {
        MQTT_PROFILES.contains(&self.profile)
    }
}

/// Registers the fleet through the import API, 5,000 at a time; devices that exist stay.
/// With `mqtt`, returns the access tokens of the devices that will connect over MQTT (new
/// devices get theirs from the import; existing ones have theirs rotated).
pub(crate) async fn register(
    admin: &Api,
    fleet: &Fleet,
    mqtt: bool,
) -> anyhow::Result<HashMap<String, String>> {
    let wanted: HashSet<&str> = if mqtt {
        fleet
            .devices
            .iter()
            .filter(|d| d.speaks_mqtt())
            .take(MQTT_DEVICES)
            .map(|d| d.id.as_str())
            .collect()
    } else {
        HashSet::new()
    };
    let mut tokens = HashMap::new();
    let names = |profile: &str| match profile {
        "parking-space" => "泊位",
        "rain-gauge" => "雨量站",
        "reservoir-level" => "水库水位站",
        "river-flow" => "河道流量站",
        "water-quality" => "水质站",
        "pipe-pressure" => "管网压力点",
        "manhole-gas" => "窨井燃气监测点",
        "ev-charger" => "充电桩",
        "air-quality" => "空气质量站",
        _ => "智慧灯杆",
    };
    for chunk in fleet.devices.chunks(5000) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|d| {
                json!({
                    "id": d.id,
                    "name": format!("模拟{} {}", names(d.profile), &d.id[d.id.len() - 6..]),
                    "profile": d.profile,
                    "department": d.department,
                    "location": {"lon": d.lon, "lat": d.lat},
                    "tags": ["simulated"],
                    "simulated": true,
                })
            })
            .collect();
        let (status, body) = admin
            .call(
                Method::POST,
                "/api/v1/devices/import",
                Some(Value::Array(batch)),
            )
            .await?;
        if status != 200 {
            anyhow::bail!("registering simulated devices failed: {status} {body}");
        }
        for created in body["created"].as_array().into_iter().flatten() {
            if let (Some(id), Some(token)) =
                (created["id"].as_str(), created["access_token"].as_str())
                && wanted.contains(id)
            {
                tokens.insert(id.to_owned(), token.to_owned());
            }
        }
    }
    for id in wanted {
        if tokens.contains_key(id) {
            continue;
        }
        let (status, body) = admin
            .call(Method::POST, &format!("/api/v1/devices/{id}/token"), None)
            .await?;
        match body["access_token"].as_str() {
            Some(token) if status == 200 => {
                tokens.insert(id.to_owned(), token.to_owned());
            }
            _ => tracing::warn!(
                id,
                status,
                "no MQTT token for a simulated device; it uses HTTP"
            ),
        }
    }
    Ok(tokens)
}

/// One simulated device on its own MQTT connection: publishes what it is handed at QoS 1
/// and counts the server's acknowledgements (sent only after the readings are committed).
fn spawn_mqtt_device(
    address: &str,
    device_id: &str,
    token: &str,
    stats: Arc<SimStats>,
) -> Option<tokio::sync::mpsc::Sender<String>> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let mut options = rumqttc::MqttOptions::new(device_id, host, port);
    options.set_credentials(token, "");
    options.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<String>(4);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    count(&stats.mqtt_acknowledged, 1);
                }
                Ok(_) => {}
                Err(e) => {
                    count(&stats.errors, 1);
                    tracing::debug!(error = %e, "simulated MQTT device reconnecting");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(payload) = receiver.recv().await {
            if client
                .publish(
                    "v1/devices/me/telemetry",
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .is_err()
            {
                break;
            }
        }
    });
    Some(sender)
}

/// Alarm rules for the simulated faults (once; kept if they exist).
pub(crate) async fn alarm_rules(admin: &Api) -> anyhow::Result<()> {
    let (_, existing) = admin.call(Method::GET, "/api/v1/alarm-rules", None).await?;
    let have = |name: &str| {
        existing
            .as_array()
            .is_some_and(|rules| rules.iter().any(|r| r["name"] == name))
    };
    let rules = [
        json!({"name": "模拟: 窨井甲烷超限", "profile": "manhole-gas", "department": "city-management", "key": "CH4",
               "kind": "threshold", "operator": "above", "threshold": 50.0, "severity": "critical"}),
        json!({"name": "模拟: 水库超汛限水位", "profile": "reservoir-level", "department": "water", "key": "height",
               "kind": "threshold", "operator": "above", "threshold": 45.0, "severity": "critical"}),
        json!({"name": "模拟: 强降雨", "profile": "rain-gauge", "department": "water", "key": "precipitation",
               "kind": "threshold", "operator": "above", "threshold": 30.0, "severity": "major"}),
        json!({"name": "模拟: 管网失压", "profile": "pipe-pressure", "department": "water", "key": "pressure",
               "kind": "threshold", "operator": "below", "threshold": 0.1, "severity": "critical"}),
    ];
    for rule in rules {
        let name = rule["name"].as_str().unwrap_or_default();
        if !have(name) {
            let (status, body) = admin
                .call(Method::POST, "/api/v1/alarm-rules", Some(rule.clone()))
                .await?;
            if status != 201 {
                anyhow::bail!("alarm rule {name}: {status} {body}");
            }
        }
    }
    Ok(())
}

/// Weather and faults shared by all devices.
struct World {
    /// Storm intensity 0..1 (0: dry).
    storm: f64,
    storm_left_s: f64,
}

fn hour_of_day_cst(now_ms: i64) -> f64 {
    (((now_ms / 1000 + 8 * 3600) % 86_400) as f64) / 3600.0
}

fn values(device: &Device, world: &World, rng: &mut ChaCha8Rng, hour: f64) -> Map<String, Value> {
    let mut v = Map::new();
    let mut put = |key: &str, value: f64| {
        v.insert(key.to_owned(), json!((value * 100.0).round() / 100.0));
    };
    let noise = |rng: &mut ChaCha8Rng, scale: f64| rng.random_range(-scale..scale);
    let daytime = if (7.0..20.0).contains(&hour) {
        1.0
    } else {
        0.0
    };
    match device.profile {
        "parking-space" => {
            // Urban spaces fill by day; night 30%, day 80%.
            let busy = 0.3 + 0.5 * daytime * if device.district < 6 { 1.0 } else { 0.7 };
            put("occupied", if rng.random_bool(busy) { 1.0 } else { 0.0 });
        }
        "rain-gauge" => put(
            "precipitation",
            (world.storm * 60.0 + noise(rng, 2.0) * world.storm).max(0.0),
        ),
        "reservoir-level" => put("height", 30.0 + world.storm * 18.0 + noise(rng, 0.5)),
        "river-flow" => {
            put("flow", 50.0 + world.storm * 900.0 + noise(rng, 5.0).abs());
            put("height", 1.5 + world.storm * 3.0 + noise(rng, 0.05));
        }
        "water-quality" => {
            put("pH", 7.2 + noise(rng, 0.3));
            put("temperature", 14.0 + noise(rng, 1.0));
            put(
                "turbidity",
                5.0 + world.storm * 300.0 + noise(rng, 1.0).abs(),
            );
            put("O2", 8.0 + noise(rng, 0.5));
        }
        "pipe-pressure" => {
            // A burst main now and then: the pressure collapses.
            let burst = rng.random_bool(0.0005);
            put(
                "pressure",
                if burst { 0.05 } else { 0.32 + noise(rng, 0.02) },
            );
        }
        "manhole-gas" => {
            let leak = rng.random_bool(0.005);
            put(
                "CH4",
                if leak {
                    rng.random_range(55.0..95.0)
                } else {
                    2.0 + noise(rng, 1.5).abs()
                },
            );
            put("H2S", 1.0 + noise(rng, 0.8).abs());
            put("CO", 5.0 + noise(rng, 3.0).abs());
        }
        "ev-charger" => {
            let free = rng.random_range(0..=4) as f64;
            put("availableCapacity", free);
            put("power", (4.0 - free) * rng.random_range(20.0..60.0));
        }
        "air-quality" => {
            put("pm25", 35.0 + noise(rng, 15.0) - world.storm * 20.0);
            put("pm10", 60.0 + noise(rng, 20.0) - world.storm * 30.0);
            put("no2", 30.0 + noise(rng, 10.0));
            put("o3", 60.0 + noise(rng, 20.0));
        }
        _ => {
            let on = if daytime > 0.0 { 0.0 } else { 1.0 };
            put("powerState", on);
            put("illuminanceLevel", on * 0.8);
            put("powerConsumption", on * (150.0 + noise(rng, 10.0)));
        }
    }
    v
}

/// Reports every device at its interval (first reports spread over one interval), in gateway
/// batches of up to 5,000 readings.
pub(crate) async fn run_devices(
    admin: Api,
    fleet: Fleet,
    tokens: HashMap<String, String>,
    config: SimConfig,
    stats: Arc<SimStats>,
) -> anyhow::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x00de_71ce);
    let mut connections: HashMap<usize, tokio::sync::mpsc::Sender<String>> = HashMap::new();
    if let Some(address) = &config.mqtt {
        for (i, device) in fleet.devices.iter().enumerate() {
            if let Some(token) = tokens.get(&device.id)
                && let Some(sender) = spawn_mqtt_device(address, &device.id, token, stats.clone())
            {
                connections.insert(i, sender);
            }
        }
        tracing::info!(devices = connections.len(), %address, "simulated devices on MQTT");
    }
    let start = Instant::now();
    let factor = config.interval_factor.max(0.001);
    // Next due time of each device, seconds since start.
    let mut due: Vec<f64> = fleet
        .devices
        .iter()
        .map(|d| rng.random_range(0.0..(d.interval_s as f64 * factor).max(1.0)))
        .collect();
    let mut world = World {
        storm: 0.0,
        storm_left_s: 0.0,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = start.elapsed().as_secs_f64();
        // A storm about once every 20 minutes (of scaled time), lasting 5.
        if world.storm_left_s > 0.0 {
            world.storm_left_s -= 1.0;
            if world.storm_left_s <= 0.0 {
                world.storm = 0.0;
            }
        } else if rng.random_bool((1.0 / (1200.0 * factor)).min(1.0)) {
            world.storm = rng.random_range(0.5..1.0);
            world.storm_left_s = 300.0 * factor;
            tracing::info!(intensity = world.storm, "simulated storm begins");
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let hour = hour_of_day_cst(now_ms);
        let mut batch = String::new();
        let mut items = 0u64;
        for (i, device) in fleet.devices.iter().enumerate() {
            if due[i] > now {
                continue;
            }
            due[i] += (device.interval_s as f64 * factor).max(1.0);
            let values = values(device, &world, &mut rng, hour);
            if let Some(connection) = connections.get(&i) {
                // A device that has not caught up skips this report, as a real one would.
                if connection
                    .try_send(json!({"ts": now_ms, "values": values}).to_string())
                    .is_ok()
                {
                    count(&stats.readings_sent, 1);
                }
                continue;
            }
            let item = json!({"device": device.id, "ts": now_ms, "values": values});
            batch.push_str(&item.to_string());
            batch.push('\n');
            items += 1;
            if items.is_multiple_of(5000) {
                send(&admin, std::mem::take(&mut batch), &stats).await;
            }
        }
        if !batch.is_empty() {
            send(&admin, batch, &stats).await;
        }
        count(&stats.readings_sent, items);
    }
}

async fn send(admin: &Api, batch: String, stats: &SimStats) {
    let result = admin
        .client
        .post(format!("{}/api/v1/telemetry/bulk", admin.base))
        .bearer_auth(&admin.token)
        .header("content-type", "application/x-ndjson")
        .body(batch)
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            count(&stats.errors, 1);
            tracing::warn!(status = %response.status(), "simulated telemetry refused");
        }
        Err(e) => {
            count(&stats.errors, 1);
            tracing::warn!(error = %e, "simulated telemetry not sent");
        }
    }
}
