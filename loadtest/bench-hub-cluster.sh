#!/usr/bin/env bash
# One room across several livecamp nodes sharing PostgreSQL and Redis, with more viewers than
# one process may hold (20,000 open files per process here, so 6 nodes of ~16,700 viewers for
# 100k): the generator starts one child process per node (at most 19,000 viewers each, more
# processes for bigger shares). Nothing is pinned: the nodes, the generators, Redis and
# PostgreSQL share the box's cores, so the figure is a floor for what a real cluster does.
# Results: one JSON line in target/bench/hub-cluster-*.jsonl.
#
#   loadtest/bench-hub-cluster.sh [nodes] [connections] [rate] [seconds]   (defaults: 6 100000 1 20)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

nodes=${1:-6}
connections=${2:-100000}
rate=${3:-1}
seconds=${4:-20}
out=target/bench
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results="$out/hub-cluster-$stamp.jsonl"
db="livecamp_bench_$(date +%s)"

ulimit -n 20000 || die "need 20000 open files (ulimit -n)"
require_tools
ensure_build_deps
scripts/test-services.sh
say "building release binaries"
scripts/build-web.sh >/dev/null
cargo build --release --locked -p livecamp -p loadtest 2>&1 | tail -1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on port $1"
}

pids=()
work=$(mktemp -d)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
target/release/livecamp keys generate >"$work/livecamp.toml"
cat >>"$work/livecamp.toml" <<TOML
database_url = "postgres://postgres@127.0.0.1:5432/$db"
redis_url = "redis://127.0.0.1:6379"
redis_namespace = "bench$stamp"
demo_password = "bench12345"
login_rate_per_minute = 100000
log_level = "warn"
TOML

bases=()
start_node() { # start_node N DEMO_DATA
  local port; port=$(free_port)
  mkdir -p "$work/node$1"
  LIVECAMP_LISTEN="127.0.0.1:$port" LIVECAMP_MEDIA_LISTEN=127.0.0.1:0 LIVECAMP_DATA_DIR="$work/node$1" LIVECAMP_DEMO_DATA="$2" \
    target/release/livecamp --config "$work/livecamp.toml" serve >"$out/cluster-node$1-$stamp.log" 2>&1 &
  pids+=($!)
  bases+=("http://127.0.0.1:$port")
  wait_port "$port"
}
# The first node creates the schema and the demo data; the others join an existing database.
start_node 1 true
for n in $(seq 2 "$nodes"); do start_node "$n" false; done
sleep 1
redis_pid=$(redis-cli -h 127.0.0.1 -p 6379 info server | awk -F: '/^process_id/ {print $2}' | tr -d '\r')

say "$nodes nodes, $connections viewers, $rate broadcasts/s for ${seconds}s"
joined_bases=$(IFS=,; echo "${bases[*]}")
joined_pids=$(IFS=,; echo "${pids[*]}")
timeout "${RUN_LIMIT:-1800}" target/release/loadtest hub-cluster --bases "$joined_bases" --server-pids "$joined_pids" \
  --redis-pid "$redis_pid" --password bench12345 --connections "$connections" --rate "$rate" \
  --duration "$seconds" | tee -a "$results"

python3 - "$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if not line.startswith('{'):
        continue
    r = json.loads(line)
    print(f"\n{r['connections']:,} viewers on {r['nodes']} nodes ({r['generator_processes']} generator processes), "
          f"connected in {r['connect_seconds']:.0f} s")
    print(f"{r['deliveries']:,} of {r['expected_deliveries']:,} deliveries ({r['delivered_ratio']:.4f}) in {r['window_seconds']:.1f} s: "
          f"{r['deliveries_per_second']:,.0f}/s, {r['deliveries_per_cpu_second']:,.0f} per node CPU-second "
          f"(nodes {r['servers_cpu_seconds']:.1f} CPU-s, Redis {r['redis_cpu_seconds']:.2f} CPU-s)")
    print(f"latency p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms; nodes' RSS {r['servers_rss_mb']:.0f} MB")
PY
