#!/usr/bin/env bash
# Grid benchmark: point → unit grid lookups over the full Qingdao grid in yunnao beside PostGIS
# (ST_Contains with a GiST index on the same polygons, pgbench with 2 clients), both in this run;
# then incidents reported through the API and grid lookups over HTTP. Prints rates, ratios and
# peak memory. Not part of CI. Usage: bench/grid/run.sh [RESOLUTION] [INCIDENTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
RESOLUTION=${1:-10}
INCIDENTS=${2:-5000}
PG=${YUNNAO_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if ! dpkg -s postgresql-15-postgis-3 >/dev/null 2>&1; then
  echo "installing PostGIS (Debian postgresql-15-postgis-3)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-postgis-3 >/dev/null
fi
cargo build --release -q -p yunnao -p yunnao-gridbench
target/release/yunnao-gridbench lookups --resolution "$RESOLUTION" --postgres "$PG"

WORK=$(mktemp -d /tmp/yunnao-grid-bench.XXXXXX)
PORT=18491
YUNNAO_ADMIN_PASSWORD=bench-password YUNNAO_LOG=warn YUNNAO_GRID_RESOLUTION=$RESOLUTION \
  target/release/yunnao serve --data-dir "$WORK/yunnao" --listen 127.0.0.1:$PORT --mqtt-listen "" \
  > "$WORK/yunnao.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST http://127.0.0.1:$PORT/api/v1/auth/sign-in -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench-password"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
target/release/yunnao-gridbench incidents --url http://127.0.0.1:$PORT --token "$TOKEN" --count "$INCIDENTS"
echo "yunnao server peak memory (VmHWM): $(awk '/VmHWM/ {print int($2/1024)}' /proc/$PID/status) MiB"
