#!/usr/bin/env bash
# The demo at city scale, measured as a user meets it: start to the first live map, the
# overview, plan and district pages with the whole city loaded, ingestion against the load the
# simulated fleet offers, and the same with 100 browsers on the live stream. Not part of CI.
# Usage: bench/demo/run.sh [SCALE]   (city by default; small for a quick look)
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE=${1:-city}
PORT=18600
WORK=$(mktemp -d /tmp/yunnao-demo-bench.XXXXXX)
cargo build --release -q -p yunnao
START=$(date +%s.%N)
YUNNAO_LOG=warn target/release/yunnao demo --scale "$SCALE" --seed 2022 --data-dir "$WORK/data" \
  --listen 127.0.0.1:$PORT --mqtt-listen 127.0.0.1:$((PORT + 1)) > "$WORK/demo.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 bench/demo/measure.py --base http://127.0.0.1:$PORT --pid $PID --start "$START" --scale "$SCALE"
