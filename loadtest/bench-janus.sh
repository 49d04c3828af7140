#!/usr/bin/env bash
# SFU benchmark 2: bench-sfu.sh's fan-out against Janus (Debian's janus package, 1.1), for a
# ratio. The same synthetic stream (~1.5 Mbit/s of video in 30 frames/s plus audio) goes as plain
# RTP into a streaming-plugin mountpoint; N subscribers watch it through Janus's HTTP API and,
# once connected (ICE, DTLS), only count SRTP packets, exactly. Janus runs on CPU 0, the
# generator on CPU 1, as for livecamp.
# Results: one JSON line per run in target/bench/sfu-janus-*.jsonl and a table on stdout.
#
#   loadtest/bench-janus.sh [seconds] [N ...]      (defaults: 10  100 200 300 500)
#
# Environment: SKIP_BUILD=1 uses the built loadtest. JANUS_EVENT_LOOPS (default 1): Janus's
# event_loops, the threads that carry every connection's media — one for one core, as its
# configuration advises; 0 for Janus's default of a thread per connection (slower on one core).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

seconds=${1:-10}
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(100 200 300 500)
out=target/bench
mkdir -p "$out"
results="$out/sfu-janus-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

ulimit -n 20000 || die "need 20000 open files (ulimit -n)"
ensure_debs janus
ensure_cmd taskset util-linux
ensure_cmd ip iproute2
if [ -z "${SKIP_BUILD:-}" ]; then
  command -v cargo >/dev/null || die "Rust is required (https://rustup.rs): cargo not found"
  ensure_build_deps
  say "building the load generator"
  cargo build --release --locked -p loadtest 2>&1 | tail -1
fi

# Janus gathers no ICE candidate on the loopback interface (it skips it), so ICE runs on the
# box's own address; packets to a local address stay on the kernel's loopback path all the same.
ice_ip=$(ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }')
[ -n "$ice_ip" ] || die "Janus needs a non-loopback IPv4 address for ICE; none found"
libdir=$(dirname "$(dpkg -L janus | grep -m1 '/plugins/libjanus_streaming.so$')")
libdir=${libdir%/plugins}
event_loops=${JANUS_EVENT_LOOPS:-1}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
free_udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A minimal Janus in $1: the HTTP transport on 127.0.0.1:$2, the streaming plugin with one "rtp"
# mountpoint (id 1: VP8 on 127.0.0.1:$3, payload type 96; Opus on 127.0.0.1:$4, 111).
janus_config() {
  local dir=$1 port=$2 video=$3 audio=$4
  mkdir -p "$dir/plugins" "$dir/transports" "$dir/none"
  ln -s "$libdir/plugins/libjanus_streaming.so" "$dir/plugins/"
  ln -s "$libdir/transports/libjanus_http.so" "$dir/transports/"
  local loops=""
  [ "$event_loops" -eq 0 ] || loops="event_loops = $event_loops"
  cat >"$dir/janus.jcfg" <<EOF
general: {
	configs_folder = "$dir"
	plugins_folder = "$dir/plugins"
	transports_folder = "$dir/transports"
	events_folder = "$dir/none"
	loggers_folder = "$dir/none"
	debug_level = 3
	# The subscribers send nothing once connected: no session may time out during a run.
	session_timeout = 3600
	$loops
}
certificates: {
}
media: {
}
nat: {
	nice_debug = false
	ice_enforce_list = "$ice_ip"
}
plugins: {
}
transports: {
}
loggers: {
}
events: {
}
EOF
  cat >"$dir/janus.transport.http.jcfg" <<EOF
general: {
	json = "plain"
	base_path = "/janus"
	http = true
	port = $port
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
EOF
  cat >"$dir/janus.plugin.streaming.jcfg" <<EOF
general: {
}
bench: {
	type = "rtp"
	id = 1
	description = "loadtest"
	media = (
		{ type = "video" mid = "v" port = $video iface = "127.0.0.1" pt = 96 codec = "vp8" },
		{ type = "audio" mid = "a" port = $audio iface = "127.0.0.1" pt = 111 codec = "opus" }
	)
}
EOF
}

for n in "${counts[@]}"; do
  conf=$(mktemp -d)
  port=$(free_port)
  video=$(free_udp_port)
  audio=$(free_udp_port)
  janus_config "$conf" "$port" "$video" "$audio"
  taskset -c 0 janus -C "$conf/janus.jcfg" -F "$conf" -o >"$out/sfu-janus-server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -fs -X POST "http://127.0.0.1:$port/janus" -d '{"janus":"info","transaction":"up"}' >/dev/null 2>&1 && break
    sleep 0.2
  done
  say "$n subscribers (Janus)"
  timeout 300 taskset -c 1 target/release/loadtest sfu-janus --base "http://127.0.0.1:$port" --server-pid "$server" \
    --video-port "$video" --audio-port "$audio" --subscribers "$n" --duration "$seconds" --event-loops "$event_loops" | tee -a "$results" \
    || say "run with $n failed"
  kill "$server"; wait "$server" 2>/dev/null || true
  rm -rf "$conf"
done

python3 - "$results" <<'PY'
import json, sys
print()
loops = {json.loads(l).get('janus_event_loops') for l in open(sys.argv[1]) if l.startswith('{')}
print(f"Janus, event_loops = {', '.join(str(l) for l in loops)} (0: a thread per connection)")
print()
print("| subscribers | loss | forwarded packets/s | per SFU CPU-second | CPU µs / packet | SFU CPU | connect p50 / max ms | RSS MB |")
print("|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    if not line.startswith('{'):
        continue
    r = json.loads(line)
    print(f"| {r['subscribers']} | {r['loss'] * 100:.2f} % | {r['forwarded_per_second']:,.0f} | {r['forwarded_per_cpu_second']:,.0f} | "
          f"{r['cpu_us_per_packet']:.2f} | {r['server_cpu_seconds']:.2f} s | {r['connect_p50_ms']} / {r['connect_max_ms']} | {r['server_rss_mb']:.0f} |")
PY
