#!/usr/bin/env bash
# Hub benchmarks, side by side: livecamp's hub vs a Node `ws` server and a socket.io server
# speaking the same protocol (loadtest/peers), driven by the same generator on the same box.
# The server runs on CPU 0, the generator on CPU 1. Results: one JSON line per run in
# target/bench/hub-*.jsonl, and a summary table on stdout.
#
#   loadtest/bench-hub.sh [connections] [rate] [seconds]      (defaults: 19000 10 20)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

connections=${1:-19000}
rate=${2:-10}
seconds=${3:-20}
out=target/bench
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results="$out/hub-$stamp.jsonl"

ulimit -n 20000 || die "need 20000 open files (ulimit -n)"
require_tools
ensure_cmd taskset util-linux
say "building release binaries"
scripts/build-web.sh >/dev/null
cargo build --release --locked -p livecamp -p loadtest 2>&1 | tail -1
npm_ci loadtest/peers
gen=target/release/loadtest

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on port $1"
}

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

# start_server FLAVOR PORT: starts it pinned to CPU 0, sets server_pid and base.
start_server() {
  local flavor=$1 port=$2
  case $flavor in
    livecamp)
      data=$(mktemp -d)
      LIVECAMP_LISTEN="127.0.0.1:$port" LIVECAMP_DATA_DIR="$data" LIVECAMP_DEMO_PASSWORD=bench12345 \
        LIVECAMP_LOG_LEVEL=warn LIVECAMP_LOGIN_RATE_PER_MINUTE=100000 \
        taskset -c 0 target/release/livecamp serve >"$out/livecamp-$stamp.log" 2>&1 &
      ;;
    ws)
      PORT=$port taskset -c 0 node loadtest/peers/ws-server.mjs >"$out/ws-$stamp.log" 2>&1 &
      ;;
    socketio)
      PORT=$port taskset -c 0 node loadtest/peers/socketio-server.mjs >"$out/socketio-$stamp.log" 2>&1 &
      ;;
  esac
  server_pid=$!
  base="http://127.0.0.1:$port"
  wait_port "$port"
  sleep 1
}

run() { # run FLAVOR SUBCOMMAND ARGS...
  local flavor=$1; shift
  local port; port=$(free_port)
  start_server "$flavor" "$port"
  say "$flavor: $*"
  taskset -c 1 "$gen" "$@" --flavor "$flavor" --base "$base" --server-pid "$server_pid" --password bench12345 \
    | tee -a "$results"
  stop_server
}

for flavor in livecamp ws socketio; do
  run "$flavor" hub-fanout --connections "$connections" --rate "$rate" --duration "$seconds"
  run "$flavor" hub-idle --connections "$connections"
done
run livecamp hub-likes --connections 100 --rate 50000 --duration 10

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
fan = {r['flavor']: r for r in rows if r['benchmark'] == 'hub-fanout'}
idle = {r['flavor']: r for r in rows if r['benchmark'] == 'hub-idle'}
print()
print("| server | deliveries/CPU-s | deliveries/s | delivered | p50 ms | p99 ms | bytes/idle conn |")
print("|---|---|---|---|---|---|---|")
for f in ['livecamp', 'ws', 'socketio']:
    r, i = fan.get(f, {}), idle.get(f, {})
    print(f"| {f} | {r.get('deliveries_per_cpu_second', 0):,.0f} | {r.get('deliveries_per_second', 0):,.0f} | "
          f"{r.get('delivered_ratio', 0):.4f} | {r.get('p50_ms', 0):.2f} | {r.get('p99_ms', 0):.2f} | {i.get('bytes_per_connection', 0):,.0f} |")
lc = fan.get('livecamp', {}).get('deliveries_per_cpu_second', 0)
for f in ['ws', 'socketio']:
    other = fan.get(f, {}).get('deliveries_per_cpu_second', 0)
    if other:
        print(f"livecamp / {f}: {lc / other:.2f}x deliveries per CPU-second")
for r in rows:
    if r['benchmark'] == 'hub-likes':
        print(f"like storm: {r['likes_sent']:,} sent at {r['likes_per_second']:,.0f}/s, total reported {r['likes_total_reported']:,}, exact={r['exact']}")
PY
