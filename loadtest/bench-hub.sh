#!/usr/bin/env bash
# Hub benchmarks, side by side: livecamp's hub vs a Node `ws` server and a socket.io server
# speaking the same protocol (loadtest/peers), driven by the same generator on the same box.
# The server runs on CPU 0, the generator on CPU 1. Results: one JSON line per run in
# target/bench/hub-*.jsonl, and a summary table on stdout.
#
#   loadtest/bench-hub.sh [connections] [rate] [seconds] [light-rate]   (defaults: 19000 10 20 2)
#
# Runs, per server: fan-out at `rate` (throughput per CPU-second; saturates one core), fan-out
# at `light-rate` (latency below saturation), idle connections (RSS per connection). Then, for
# livecamp only: a like storm and a reconnect storm. Every run is limited to RUN_LIMIT seconds
# (default 900); a run that hits the limit is reported as missing, the others go on.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

connections=${1:-19000}
rate=${2:-10}
seconds=${3:-20}
light_rate=${4:-2}
run_limit=${RUN_LIMIT:-900}
out=target/bench
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results="$out/hub-$stamp.jsonl"

ulimit -n 20000 || die "need 20000 open files (ulimit -n)"
require_tools
ensure_build_deps
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
      LIVECAMP_LISTEN="127.0.0.1:$port" LIVECAMP_MEDIA_LISTEN=127.0.0.1:0 LIVECAMP_DATA_DIR="$data" LIVECAMP_DEMO_PASSWORD=bench12345 \
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
  timeout "$run_limit" taskset -c 1 "$gen" "$@" --flavor "$flavor" --base "$base" --server-pid "$server_pid" \
    --password bench12345 | tee -a "$results" || say "$flavor $1: failed or over ${run_limit}s, not reported"
  stop_server
}

for flavor in livecamp ws socketio; do
  run "$flavor" hub-fanout --connections "$connections" --rate "$rate" --duration "$seconds"
  run "$flavor" hub-fanout --connections "$connections" --rate "$light_rate" --duration "$seconds"
  run "$flavor" hub-idle --connections "$connections" --settle 15
done
run livecamp hub-likes --connections 100 --rate 50000 --duration 10
run livecamp hub-reconnect --connections "$connections" --rate 5 --connect-concurrency 1024

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
rates = sorted({r['rate_per_second'] for r in rows if r['benchmark'] == 'hub-fanout'}, reverse=True)
heavy = rates[0] if rates else None
fan = {r['flavor']: r for r in rows if r['benchmark'] == 'hub-fanout' and r['rate_per_second'] == heavy}
light = {r['flavor']: r for r in rows if r['benchmark'] == 'hub-fanout' and r['rate_per_second'] != heavy}
idle = {r['flavor']: r for r in rows if r['benchmark'] == 'hub-idle'}
print()
print("| server | deliveries/CPU-s | deliveries/s | delivered | p50 ms | p99 ms | light: CPU-s | light: p50 ms | light: p99 ms | connect s | bytes/idle conn |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for f in ['livecamp', 'ws', 'socketio']:
    r, l, i = fan.get(f, {}), light.get(f, {}), idle.get(f, {})
    print(f"| {f} | {r.get('deliveries_per_cpu_second', 0):,.0f} | {r.get('deliveries_per_second', 0):,.0f} | "
          f"{r.get('delivered_ratio', 0):.4f} | {r.get('p50_ms', 0):.2f} | {r.get('p99_ms', 0):.2f} | "
          f"{l.get('server_cpu_seconds', 0):.1f} | {l.get('p50_ms', 0):.2f} | {l.get('p99_ms', 0):.2f} | "
          f"{r.get('connect_seconds', 0):.0f} | {i.get('bytes_per_connection', 0):,.0f} |")
lc = fan.get('livecamp', {}).get('deliveries_per_cpu_second', 0)
for f in ['ws', 'socketio']:
    other = fan.get(f, {}).get('deliveries_per_cpu_second', 0)
    if other:
        print(f"livecamp / {f}: {lc / other:.2f}x deliveries per CPU-second")
for r in rows:
    if r['benchmark'] == 'hub-reconnect':
        print(f"reconnect storm: {r['connections']:,} dropped at once, all resumed after {r['all_resumed_seconds']:.1f} s "
              f"(p50 {r['resume_p50_ms']:.0f} ms, p99 {r['resume_p99_ms']:.0f} ms), resumed {r['resumed']:,}, resynced {r['resynced']}, "
              f"missed host events {r['missed_host_events']}, caught up with the host {r['caught_up_to_host']:,}")
    if r['benchmark'] == 'hub-likes':
        print(f"like storm: {r['likes_sent']:,} sent at {r['likes_per_second']:,.0f}/s, total reported {r['likes_total_reported']:,}, exact={r['exact']}")
PY
