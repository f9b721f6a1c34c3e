#!/usr/bin/env bash
# Context-broker benchmark: 100,000 NGSI-LD entities through yunnao's API beside raw SQLite doing
# the same reads and writes; prints each figure, the ratio, and yunnao's peak memory.
# Not part of CI. Usage: bench/context/run.sh [ENTITIES]
set -euo pipefail
cd "$(dirname "$0")/../.."
ENTITIES=${1:-100000}
WORK=$(mktemp -d /tmp/yunnao-context-bench.XXXXXX)
PORT=18490
cargo build --release -q -p yunnao -p yunnao-contextgen
YUNNAO_ADMIN_PASSWORD=bench-password YUNNAO_LOG=warn target/release/yunnao serve --data-dir "$WORK/yunnao" \
  --listen 127.0.0.1:$PORT --mqtt-listen "" > "$WORK/yunnao.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST http://127.0.0.1:$PORT/api/v1/auth/sign-in -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench-password"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
target/release/yunnao-contextgen --url http://127.0.0.1:$PORT --token "$TOKEN" --raw "$WORK/raw.db" --entities "$ENTITIES" --server-pid $PID
echo "yunnao peak memory (VmHWM): $(awk '/VmHWM/ {print int($2/1024)}' /proc/$PID/status) MiB"
