#!/usr/bin/env bash
# Data hub benchmark: import rows/s beside PostgreSQL COPY of the same file, datastore_search
# with a filter and a sort as a grantee (masked, metered, audited) beside the same query on
# the database, catalogue search p99 over 10,000 datasets, the server's peak memory. All in
# one run on one machine; not part of CI.
# Usage: bench/data/run.sh [ROWS] [CONCURRENCY] [SECONDS]
# Needs PostgreSQL: YUNNAO_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-10000000}
CONCURRENCY=${2:-8}
SECONDS_EACH=${3:-10}
BASE=${YUNNAO_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=yunnao_databench_$$
psql "$BASE" -qc "CREATE DATABASE $DB" >/dev/null
PG="${BASE%/*}/$DB"
cargo build --release -q -p yunnao -p yunnao-databench
WORK=$(mktemp -d /tmp/yunnao-data-bench.XXXXXX)
PORT=18495
start() {
  YUNNAO_ADMIN_PASSWORD=bench-password YUNNAO_LOG=warn YUNNAO_DB="$PG" YUNNAO_DATA_SEED_TABLES=false \
    YUNNAO_DATA_IMPORT_MAX_MIB=4096 YUNNAO_REQUEST_TIMEOUT_SECS=600 \
    target/release/yunnao serve --data-dir "$WORK/yunnao" --listen 127.0.0.1:$PORT --mqtt-listen "" \
    >> "$WORK/yunnao.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.1; done
}
cleanup() { kill $PID 2>/dev/null || true; sleep 1; psql "$BASE" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null || true; }
trap cleanup EXIT
start
TOKEN=$(curl -sf -X POST http://127.0.0.1:$PORT/api/v1/auth/sign-in -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench-password"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
target/release/yunnao-databench tables --url http://127.0.0.1:$PORT --token "$TOKEN" --pg "$PG" \
  --rows "$ROWS" --concurrency "$CONCURRENCY" --seconds "$SECONDS_EACH"
echo "yunnao server peak memory after import and search (VmHWM): $(awk '/VmHWM/ {print int($2/1024)}' /proc/$PID/status) MiB"
kill $PID; wait $PID 2>/dev/null || true
target/release/yunnao-databench catalogue-seed --pg "$PG" --datasets 10000
start
target/release/yunnao-databench catalogue --url http://127.0.0.1:$PORT --queries 4000
echo "yunnao server peak memory with 10,000 datasets (VmHWM): $(awk '/VmHWM/ {print int($2/1024)}' /proc/$PID/status) MiB"
