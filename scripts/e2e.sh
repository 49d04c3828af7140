#!/usr/bin/env bash
# Browser and interop tests: starts livecamp (the given binary, default target/debug/livecamp) on
# a free port with a fresh data directory, runs web/e2e in headless Debian Chromium and the aiortc
# WHIP/WHEP test (media/interop), stops the server.
# Screenshots land in target/screenshots.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
bin=${1:-target/debug/livecamp}
[ -x "$bin" ] || die "$bin not found: build the server first"
[ -f web/dist/index.html ] || die "web/dist is missing: run scripts/build-web.sh first"
ensure_debs chromium fonts-noto-cjk ffmpeg
npm_ci web/e2e

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password="e2e$(date +%s)x"
log="$data/server.log"
LIVECAMP_LISTEN="127.0.0.1:$port" LIVECAMP_DATA_DIR="$data" LIVECAMP_DEMO_PASSWORD="$password" \
  LIVECAMP_LOGIN_RATE_PER_MINUTE=1000 LIVECAMP_MEDIA_LISTEN=127.0.0.1:0 "$bin" serve >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 60); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { cat "$log"; die "livecamp exited during start-up"; }
  sleep 0.5
done
curl -fs "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$log"; die "livecamp did not come up"; }
say "browser test against http://127.0.0.1:$port"
mkdir -p target/screenshots
(cd web/e2e && BASE_URL="http://127.0.0.1:$port" DEMO_PASSWORD="$password" \
  SCREENSHOT_DIR="$PWD/../../target/screenshots" node login-roles.mjs) || { tail -50 "$log"; die "browser test failed"; }
say "media: WHIP publish and WHEP play with a fake camera"
(cd web/e2e && BASE_URL="http://127.0.0.1:$port" DEMO_PASSWORD="$password" \
  SCREENSHOT_DIR="$PWD/../../target/screenshots" node media.mjs) \
  || { tail -50 "$log"; die "media browser test failed"; }
say "stage and proctoring: several publishers per room, simulcast layers"
(cd web/e2e && BASE_URL="http://127.0.0.1:$port" DEMO_PASSWORD="$password" \
  SCREENSHOT_DIR="$PWD/../../target/screenshots" node stage.mjs) \
  || { tail -50 "$log"; die "stage browser test failed"; }
say "commerce: shop, live-room selling tools, orders"
(cd web/e2e && BASE_URL="http://127.0.0.1:$port" DEMO_PASSWORD="$password" \
  SCREENSHOT_DIR="$PWD/../../target/screenshots" node commerce.mjs) \
  || { tail -50 "$log"; die "commerce browser test failed"; }
(cd web/e2e && BASE_URL="http://127.0.0.1:$port" DEMO_PASSWORD="$password" SCREENSHOT_DIR="$PWD/../../target/screenshots" node live-script.mjs) || { tail -50 "$log"; die "live script browser test failed"; }
say "short videos: upload, transcoding, playing in the shop and the room"
(cd web/e2e && BASE_URL="http://127.0.0.1:$port" DEMO_PASSWORD="$password" SCREENSHOT_DIR="$PWD/../../target/screenshots" node short-videos.mjs) || { tail -50 "$log"; die "short videos browser test failed"; }
say "media interop: aiortc publishes by WHIP and plays by WHEP"
venv=target/venv-interop
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" 2>/dev/null || { ensure_debs python3-venv; python3 -m venv "$venv"; }
fi
"$venv/bin/pip" install -q -r media/interop/requirements.txt
BASE_URL="http://127.0.0.1:$port" DEMO_PASSWORD="$password" timeout 180 "$venv/bin/python" media/interop/aiortc_whip_whep.py \
  || { tail -50 "$log"; die "aiortc interop test failed"; }
