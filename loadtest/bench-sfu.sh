#!/usr/bin/env bash
# SFU fan-out: one publisher (WHIP, ~1.5 Mbit/s of video in 30 frames/s plus audio) to N
# subscribers (WHEP), for each N given. The server runs on CPU 0, the generator on CPU 1; the
# subscribers complete ICE/DTLS and then only count SRTP packets (by sequence number, exactly).
# Then 10,000 players join and leave (sfu-churn): the server's RSS before and after.
# Results: one JSON line per run in target/bench/sfu-*.jsonl and a table on stdout.
#
#   loadtest/bench-sfu.sh [seconds] [N ...]      (defaults: 10  500 700 850 1000 1150)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

seconds=${1:-10}
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(500 700 850 1000 1150)
out=target/bench
mkdir -p "$out"
results="$out/sfu-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

ulimit -n 20000 || die "need 20000 open files (ulimit -n)"
require_tools
ensure_build_deps
ensure_cmd taskset util-linux
say "building release binaries"
scripts/build-web.sh >/dev/null
cargo build --release --locked -p livecamp -p loadtest 2>&1 | tail -1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for n in "${counts[@]}"; do
  data=$(mktemp -d)
  port=$(free_port)
  LIVECAMP_LISTEN="127.0.0.1:$port" LIVECAMP_MEDIA_LISTEN=127.0.0.1:0 LIVECAMP_DATA_DIR="$data" \
    LIVECAMP_DEMO_PASSWORD=bench12345 LIVECAMP_LOG_LEVEL=warn LIVECAMP_LOGIN_RATE_PER_MINUTE=100000 \
    taskset -c 0 target/release/livecamp serve >"$out/sfu-server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
  say "$n subscribers"
  timeout 300 taskset -c 1 target/release/loadtest sfu-fanout --base "http://127.0.0.1:$port" --server-pid "$server" \
    --password bench12345 --subscribers "$n" --duration "$seconds" | tee -a "$results" || say "run with $n failed"
  kill "$server"; wait "$server" 2>/dev/null || true
  rm -rf "$data"
done

data=$(mktemp -d)
port=$(free_port)
LIVECAMP_LISTEN="127.0.0.1:$port" LIVECAMP_MEDIA_LISTEN=127.0.0.1:0 LIVECAMP_DATA_DIR="$data" \
  LIVECAMP_DEMO_PASSWORD=bench12345 LIVECAMP_LOG_LEVEL=warn LIVECAMP_LOGIN_RATE_PER_MINUTE=100000 \
  taskset -c 0 target/release/livecamp serve >"$out/sfu-server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
say "10,000 joins and leaves"
timeout 600 taskset -c 1 target/release/loadtest sfu-churn --base "http://127.0.0.1:$port" --server-pid "$server" \
  --password bench12345 --cycles 10000 --batch 100 | tee -a "$results" || say "churn run failed"
kill "$server"; wait "$server" 2>/dev/null || true
rm -rf "$data"

python3 - "$results" <<'PY'
import json, sys
print()
print("| subscribers | loss | forwarded packets/s | per SFU CPU-second | CPU µs / packet | SFU CPU | connect p50 / max ms | RSS MB |")
print("|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    if not line.startswith('{'):
        continue
    r = json.loads(line)
    if r['benchmark'] == 'sfu-churn':
        continue
    print(f"| {r['subscribers']} | {r['loss'] * 100:.2f} % | {r['forwarded_per_second']:,.0f} | {r['forwarded_per_cpu_second']:,.0f} | "
          f"{r['cpu_us_per_packet']:.2f} | {r['server_cpu_seconds']:.2f} s | {r['connect_p50_ms']} / {r['connect_max_ms']} | {r['server_rss_mb']:.0f} |")
for line in open(sys.argv[1]):
    if line.startswith('{') and json.loads(line)['benchmark'] == 'sfu-churn':
        r = json.loads(line)
        print(f"\nchurn: {r['cycles']:,} joins and leaves, {r['failed']} failed, RSS {r['rss_start_mb']:.1f} MB -> {r['rss_end_mb']:.1f} MB "
              f"({r['bytes_per_cycle']:.0f} bytes per cycle)")
PY
