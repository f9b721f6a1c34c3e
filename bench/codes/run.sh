#!/usr/bin/env bash
# 一码通城 benchmark: offline verifications per core beside `openssl speed sm2` (same machine,
# same run), codes issued per second, online verifications over HTTP per second, p99
# latencies, and the server's peak memory. Not part of CI.
# Usage: bench/codes/run.sh [VERIFICATIONS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/../.."
VERIFICATIONS=${1:-4000}
CONCURRENCY=${2:-16}
cargo build --release -q -p yunnao -p yunnao-codesbench
WORK=$(mktemp -d /tmp/yunnao-codes-bench.XXXXXX)
PORT=18494
YUNNAO_ADMIN_PASSWORD=bench-password YUNNAO_LOG=warn \
  target/release/yunnao serve --data-dir "$WORK/yunnao" --listen 127.0.0.1:$PORT --mqtt-listen "" \
  > "$WORK/yunnao.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST http://127.0.0.1:$PORT/api/v1/auth/sign-in -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench-password"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
target/release/yunnao-codesbench --url http://127.0.0.1:$PORT --token "$TOKEN" \
  --verifications "$VERIFICATIONS" --concurrency "$CONCURRENCY"
echo "yunnao server peak memory (VmHWM): $(awk '/VmHWM/ {print int($2/1024)}' /proc/$PID/status) MiB"
