#!/usr/bin/env bash
# agent-monitor vs Debian's prometheus-node-exporter vs Debian's collectd,
# side by side in one run on this machine, each sampling once a second:
#   - agent-monitor at --interval 1s, sending to a local controller;
#   - node_exporter scraped once a second by a curl loop (gzip, as
#     Prometheus does);
#   - collectd with Interval 1, the usual host plugins, and the network
#     plugin sending to a loopback UDP sink.
# Reports peak RSS (VmHWM), CPU time per sample and bytes sent per sample.
#
#   bench/monitor.sh            (DURATION=120 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-120}
WARMUP=5

if ! command -v prometheus-node-exporter >/dev/null || ! command -v collectd >/dev/null; then
  echo "installing prometheus-node-exporter and collectd-core (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-node-exporter collectd-core >/dev/null
fi
cargo build --release --quiet -p controller
# The agent as it ships (see [profile.dist]).
cargo build --profile dist --quiet -p agent-monitor

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# CPU time in ns over all threads (schedstat: ns resolution, unlike the
# 10 ms ticks of /proc/<pid>/stat).
cpu_ticks() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {printf "%d", s}'; }
hwm_kib() { awk '/VmHWM/{print $2}' "/proc/$1/status"; }
clk=1000000000

# Controller + agent-monitor.
quic=$(free_port); http=$(free_port)
export MYPLATFORM_DATA_DIR="$tmp/ctl" MYPLATFORM_GATEWAY__LISTEN="127.0.0.1:$quic" MYPLATFORM_WEB__LISTEN="127.0.0.1:$http"
RUST_LOG=warn target/release/controller serve 2>"$tmp/controller.log" & pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done
line=$(target/release/controller token create --role monitor 2>/dev/null)
target/release/controller user add bench --admin >/dev/null 2>&1
api_token=$(target/release/controller user token bench 2>/dev/null)
# shellcheck disable=SC2086
RUST_LOG=warn target/dist/${line} --state-dir "$tmp/agent" --interval 1s 2>"$tmp/agent.log" & agent=$!; pids+=($agent)

# node_exporter + scrape loop.
nport=$(free_port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$nport" >"$tmp/ne.log" 2>&1 & ne=$!; pids+=($ne)
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$nport/metrics" && break; sleep 0.1; done
( set +e; while true; do curl -s --compressed -o /dev/null -w '%{size_download}\n' "http://127.0.0.1:$nport/metrics" >>"$tmp/ne.bytes"; sleep 1; done ) & pids+=($!)

# collectd -> UDP sink.
uport=$(free_port)
python3 - "$uport" "$tmp/udp.bytes" <<'PY' & pids+=($!)
import socket, sys, signal
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))
total = 0; n = 0
def dump(*_):
    open(sys.argv[2], "w").write(f"{total} {n}\n")
signal.signal(signal.SIGUSR1, dump)
while True:
    try:
        data = s.recv(65536)
    except InterruptedError:
        continue
    total += len(data); n += 1
PY
sink=$!
mkdir -p "$tmp/collectd"
cat >"$tmp/collectd.conf" <<CONF
Interval 1
FQDNLookup false
BaseDir "$tmp/collectd"
PIDFile "$tmp/collectd/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin cpu
LoadPlugin memory
LoadPlugin swap
LoadPlugin load
LoadPlugin disk
LoadPlugin df
LoadPlugin interface
LoadPlugin network
<Plugin network>
  Server "127.0.0.1" "$uport"
</Plugin>
CONF
collectd -f -C "$tmp/collectd.conf" >"$tmp/collectd.log" 2>&1 & cd_pid=$!; pids+=($cd_pid)

sleep "$WARMUP"
hosts() { curl -s -H "Authorization: Bearer $api_token" "http://127.0.0.1:$http/api/hosts"; }
a0=$(cpu_ticks $agent); n0=$(cpu_ticks $ne); c0=$(cpu_ticks $cd_pid)
rx0=$(hosts | python3 -c 'import json,sys; h=json.load(sys.stdin)[0]; print(h["link_rx_bytes"], h["last_seq"])')
nb0=$(wc -l <"$tmp/ne.bytes"); kill -USR1 $sink; sleep 0.2; u0=$(cat "$tmp/udp.bytes")
echo "measuring for ${DURATION}s ..."
sleep "$DURATION"
a1=$(cpu_ticks $agent); n1=$(cpu_ticks $ne); c1=$(cpu_ticks $cd_pid)
rx1=$(hosts | python3 -c 'import json,sys; h=json.load(sys.stdin)[0]; print(h["link_rx_bytes"], h["last_seq"])')
kill -USR1 $sink; sleep 0.2; u1=$(cat "$tmp/udp.bytes")
ne_scrapes=$(( $(wc -l <"$tmp/ne.bytes") - nb0 ))
ne_bytes=$(tail -n "$ne_scrapes" "$tmp/ne.bytes" | awk '{s+=$1} END {print s}')

python3 - "$clk" "$DURATION" "$a0" "$a1" "$n0" "$n1" "$c0" "$c1" "$rx0" "$rx1" "$ne_scrapes" "$ne_bytes" "$u0" "$u1" \
  "$(hwm_kib $agent)" "$(hwm_kib $ne)" "$(hwm_kib $cd_pid)" <<'PY'
import sys
a = sys.argv[1:]
clk, dur = float(a[0]), float(a[1])
ag_cpu = (float(a[3]) - float(a[2])) / clk
ne_cpu = (float(a[5]) - float(a[4])) / clk
cd_cpu = (float(a[7]) - float(a[6])) / clk
rx0, seq0 = map(int, a[8].split()); rx1, seq1 = map(int, a[9].split())
ag_n = seq1 - seq0
ne_n = int(a[10]); ne_bytes = int(a[11])
u0b, u0n = map(int, a[12].split()); u1b, u1n = map(int, a[13].split())
cd_n = dur  # Interval 1
rows = [
    ("agent-monitor", int(a[14]), ag_cpu / ag_n * 1000, (rx1 - rx0) / ag_n, ag_n),
    ("node_exporter", int(a[15]), ne_cpu / ne_n * 1000, ne_bytes / ne_n, ne_n),
    ("collectd", int(a[16]), cd_cpu / cd_n * 1000, (u1b - u0b) / cd_n, int(cd_n)),
]
print(f"\n{'':15} {'VmHWM MiB':>10} {'CPU ms/sample':>14} {'bytes/sample':>13} {'samples':>8}")
for name, hwm, cpu, b, n in rows:
    print(f"{name:15} {hwm/1024:10.1f} {cpu:14.3f} {b:13.0f} {n:8}")
base = rows[0]
print("\nratios (peer / agent-monitor):")
for name, hwm, cpu, b, n in rows[1:]:
    print(f"  {name:13} RSS x{hwm/base[1]:.1f}   CPU x{cpu/max(base[2],1e-9):.1f}   bytes x{b/max(base[3],1e-9):.1f}")
print("\nagent-monitor bytes include QUIC/TLS framing, heartbeats and acks; node_exporter's are gzip bodies"
      " without HTTP headers; collectd's are UDP payloads.")
PY
