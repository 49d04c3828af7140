#!/usr/bin/env bash
# Join → first decoded frame in headless Chromium (web/e2e/first-frame.mjs): a host publishes a
# fake 720p camera, one viewer joins by WHEP again and again and times its first decoded frame.
#
#   loadtest/bench-first-frame.sh [joins]     (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
joins=${1:-50}
require_tools
ensure_build_deps
ensure_debs chromium
scripts/build-web.sh >/dev/null
cargo build --release --locked -p livecamp 2>&1 | tail -1
npm_ci web/e2e
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LIVECAMP_LISTEN="127.0.0.1:$port" LIVECAMP_MEDIA_LISTEN=127.0.0.1:0 LIVECAMP_DATA_DIR="$data" \
  LIVECAMP_DEMO_PASSWORD=bench12345 LIVECAMP_LOG_LEVEL=warn target/release/livecamp serve >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
mkdir -p target/bench
(cd web/e2e && BASE_URL="http://127.0.0.1:$port" DEMO_PASSWORD=bench12345 JOINS="$joins" node first-frame.mjs) \
  | tee -a target/bench/first-frame.jsonl
