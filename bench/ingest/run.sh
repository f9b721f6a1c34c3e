#!/usr/bin/env bash
# Ingestion benchmark: the same readings (DEVICES × PER_DEVICE, three values each) through
#   (a) yunnao HTTP bulk, (b) yunnao MQTT QoS 1, (c) InfluxDB 1.6 line protocol, (d) raw SQLite,
# all on this machine in one run; prints readings/s, the ratios, alarm detection delay and
# yunnao's peak memory. Not part of CI. Usage: bench/ingest/run.sh [DEVICES] [PER_DEVICE]
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICES=${1:-100000}
PER_DEVICE=${2:-10}
MQTT_DEVICES=${MQTT_DEVICES:-1000}
MQTT_PER_DEVICE=$(( DEVICES * PER_DEVICE / MQTT_DEVICES ))
WORK=$(mktemp -d /tmp/yunnao-bench.XXXXXX)
HTTP_PORT=18480
MQTT_PORT=18483
INFLUX_PORT=18486
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

command -v influxd >/dev/null || { apt-get update -qq && apt-get install -y -qq influxdb; }
cargo build --release -q -p yunnao -p yunnao-loadgen
BIN=target/release
LOAD=$BIN/yunnao-loadgen

echo "== $DEVICES devices x $PER_DEVICE readings x 3 values; MQTT: $MQTT_DEVICES connections x $MQTT_PER_DEVICE"

# --- yunnao (SQLite, the embedded default) -------------------------------------------------
YUNNAO_ADMIN_PASSWORD=bench-password YUNNAO_LOG=warn $BIN/yunnao serve --data-dir "$WORK/yunnao" \
  --listen 127.0.0.1:$HTTP_PORT --mqtt-listen 127.0.0.1:$MQTT_PORT > "$WORK/yunnao.log" 2>&1 &
YUNNAO_PID=$!; pids+=("$YUNNAO_PID")
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:$HTTP_PORT/health >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST http://127.0.0.1:$HTTP_PORT/api/v1/auth/sign-in -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench-password"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
$LOAD setup --url http://127.0.0.1:$HTTP_PORT --token "$TOKEN" --devices "$DEVICES" --tokens "$WORK/tokens.csv"

$LOAD http --url http://127.0.0.1:$HTTP_PORT --token "$TOKEN" --devices "$DEVICES" --per-device "$PER_DEVICE" \
  --batch 5000 --writers 4 | tee "$WORK/http.txt"
$LOAD count --path "$WORK/yunnao/yunnao.db" | tee "$WORK/http-count.txt"
$LOAD alarm-latency --url http://127.0.0.1:$HTTP_PORT --token "$TOKEN" | tee "$WORK/alarms.txt"

$LOAD mqtt --port $MQTT_PORT --tokens "$WORK/tokens.csv" --devices "$MQTT_DEVICES" --per-device "$MQTT_PER_DEVICE" \
  --ts-offset 100000 | tee "$WORK/mqtt.txt"
$LOAD count --path "$WORK/yunnao/yunnao.db" | tee "$WORK/mqtt-count.txt"
PEAK_KB=$(awk '/VmHWM/ {print $2}' /proc/$YUNNAO_PID/status)
kill "$YUNNAO_PID"; wait "$YUNNAO_PID" 2>/dev/null || true

# --- InfluxDB 1.6 (Debian package, stock durability: WAL fsync on every write) -----------
mkdir -p "$WORK/influx"
cat > "$WORK/influx/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$((INFLUX_PORT + 1))"
[meta]
  dir = "$WORK/influx/meta"
[data]
  dir = "$WORK/influx/data"
  wal-dir = "$WORK/influx/wal"
  max-values-per-tag = 0
  max-series-per-database = 0
[http]
  bind-address = "127.0.0.1:$INFLUX_PORT"
  log-enabled = false
CONF
influxd -config "$WORK/influx/influxdb.conf" > "$WORK/influx.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:$INFLUX_PORT/ping >/dev/null && break; sleep 0.1; done
curl -sf -X POST "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode 'q=CREATE DATABASE bench' >/dev/null
$LOAD influx --url http://127.0.0.1:$INFLUX_PORT --devices "$DEVICES" --per-device "$PER_DEVICE" --batch 5000 --writers 4 | tee "$WORK/influx.txt"
INFLUX_COUNT=$(curl -sf -G "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode 'db=bench' \
  --data-urlencode 'q=SELECT count(CH4) FROM gas' | python3 -c 'import sys,json;print(json.load(sys.stdin)["results"][0]["series"][0]["values"][0][1])')
echo "COUNT influx readings $INFLUX_COUNT"

# --- raw SQLite ----------------------------------------------------------------------------
$LOAD sqlite --path "$WORK/raw.db" --devices "$DEVICES" --per-device "$PER_DEVICE" --batch 10000 | tee "$WORK/sqlite.txt"
$LOAD count --path "$WORK/raw.db" | tee "$WORK/sqlite-count.txt"
$LOAD sqlite --layout message --path "$WORK/raw-messages.db" --devices "$DEVICES" --per-device "$PER_DEVICE" --batch 10000 \
  | tee "$WORK/sqlite-messages.txt"
$LOAD count --path "$WORK/raw-messages.db" --query "SELECT 3 * COUNT(*) FROM telemetry" | tee "$WORK/sqlite-messages-count.txt"

# --- summary -------------------------------------------------------------------------------
python3 - "$WORK" "$DEVICES" "$PER_DEVICE" "$PEAK_KB" "$INFLUX_COUNT" <<'PY'
import sys, re, pathlib
work, devices, per, peak_kb, influx_count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def rate(name):
    text = pathlib.Path(work, name).read_text()
    return float(re.search(r"readings_per_s=(\d+)", text).group(1))
def count(name):
    return int(re.search(r"COUNT (\d+)", pathlib.Path(work, name).read_text()).group(1))
readings = devices * per
http, mqtt, influx, sqlite = rate("http.txt"), rate("mqtt.txt"), rate("influx.txt"), rate("sqlite.txt")
sqlite_messages = rate("sqlite-messages.txt")
checks = [
    ("yunnao rows after HTTP", count("http-count.txt"), 3 * readings),
    ("yunnao rows after MQTT", count("mqtt-count.txt"), 6 * readings),
    ("InfluxDB CH4 values", influx_count, readings),
    ("raw SQLite rows", count("sqlite-count.txt"), 3 * readings),
    ("raw SQLite (message rows) values", count("sqlite-messages-count.txt"), 3 * readings),
]
for label, got, want in checks:
    print(f"check {label}: {got} (expected {want}) {'OK' if got == want else 'MISMATCH'}")
print(f"\nreadings/s (3 values each):")
for label, value in [("yunnao HTTP bulk", http), ("yunnao MQTT QoS1", mqtt), ("InfluxDB 1.6", influx),
                     ("raw SQLite (row per value)", sqlite), ("raw SQLite (row per message)", sqlite_messages)]:
    print(f"  {label:30} {value:>10.0f}")
print(f"\nratio yunnao/InfluxDB:                     HTTP {http/influx:.2f}x   MQTT {mqtt/influx:.2f}x")
print(f"ratio yunnao/raw SQLite (row per value):   HTTP {http/sqlite:.2f}x   MQTT {mqtt/sqlite:.2f}x")
print(f"ratio yunnao/raw SQLite (row per message): HTTP {http/sqlite_messages:.2f}x   MQTT {mqtt/sqlite_messages:.2f}x")
print(pathlib.Path(work, "alarms.txt").read_text().strip())
print(f"yunnao peak memory (VmHWM): {peak_kb/1024:.0f} MiB")
PY
