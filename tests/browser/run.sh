#!/usr/bin/env bash
# The browser test: `yunnao demo` (fixed seed) in headless Chromium (tests/browser/overview.js).
# Needs chromium and Node.js; CI installs Chromium and CJK fonts from Debian.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "FATAL: chromium not found (apt-get install chromium)" >&2; exit 1; }
(cd tests/browser && npm ci --silent --no-audit --no-fund)
cargo build -q -p yunnao
PORT=18700
DATA=$(mktemp -d /tmp/yunnao-browser.XXXXXX)
# The full resolution-10 grid (the city crate is optimised even in debug builds), so that the
# test opens 平度市 with all its 312,925 unit grids.
YUNNAO_LOG=warn target/debug/yunnao demo --seed 2022 --data-dir "$DATA" \
  --listen 127.0.0.1:$PORT --mqtt-listen 127.0.0.1:$((PORT + 1)) > "$DATA/demo.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.2; done
node tests/browser/overview.js http://127.0.0.1:$PORT target/browser
