#!/usr/bin/env bash
# The API contract against the server: schemathesis (PyPI) generates requests from
# /openapi.json, signed in as the platform admin, and fails on any 5xx, any response that
# violates its documented schema or content type, and any undocumented status code.
#
#   tests/contract/run.sh [SECONDS]     (default 180; the binary: target/debug/yunnao)
set -euo pipefail
cd "$(dirname "$0")/../.."
budget="${1:-180}"
binary="${YUNNAO_BIN:-target/debug/yunnao}"
[ -x "$binary" ] || cargo build -p yunnao
# Called as a module, so no console script needs to be on PATH after a fresh install.
if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
  python3 -m pip install --quiet "schemathesis>=4.3,<5"
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password="contract-$(date +%s)"
# A coarser grid: the contract is the API's, and a debug build takes minutes to cut the
# detailed coastline into resolution-10 cells.
YUNNAO_DATA_DIR="$work/data" YUNNAO_LISTEN="127.0.0.1:$port" YUNNAO_MQTT_LISTEN= YUNNAO_GRID_RESOLUTION=8 \
  YUNNAO_ADMIN_PASSWORD="$password" YUNNAO_LOG=warn "$binary" serve >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 1
done
token=$(curl -sf -X POST "http://127.0.0.1:$port/api/v1/auth/sign-in" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
# Signing out would end the run's own session; everything else is fair game.
set +e
# Run from the scratch folder: schemathesis keeps a cache in its working directory.
(cd "$work" && python3 -m schemathesis.cli run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance \
  --exclude-path-regex 'sign-out' \
  --phases examples,coverage,fuzzing \
  --max-time "$budget" --workers 2 --seed 1 \
  --no-color) 2>&1 | tee "$work/report.txt"
status=${PIPESTATUS[0]}
set -e
if ! kill -0 $server 2>/dev/null; then
  echo "FATAL: the server died during the contract run" >&2
  tail -50 "$work/server.log" >&2
  exit 1
fi
if grep -q "panicked" "$work/server.log"; then
  echo "FATAL: a handler panicked during the contract run" >&2
  grep -A3 "panicked" "$work/server.log" | head -40 >&2
  exit 1
fi
# Schemathesis exits 1 for failures; its own schema-generation errors alone are not ours.
if [ "$status" -ne 0 ] && grep -qE "ST1[0-9]{2}" "$work/report.txt"; then
  echo "contract: FAILED (see above)" >&2
  exit 1
fi
echo "contract: no server errors, schema violations or undocumented statuses"
