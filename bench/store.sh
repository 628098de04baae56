#!/usr/bin/env bash
# The controller's embedded metric store vs a real InfluxDB 1.x (Debian's
# influxd), the same generated host data into both, in one run:
#   - ingest rate (values/s): embedded fed directly on one thread (append
#     only, and with the controller's flush once per simulated second);
#     InfluxDB via raw line protocol and via the controller's InfluxStore
#     client, wall time until written (influxd uses its own cores; its CPU
#     time is printed too);
#   - bytes per value on disk after a simulated day (InfluxDB after its WAL
#     is snapshotted and the shard fully compacted);
#   - query time (median): 24 h of one host, group means over 1 h and 24 h.
#
#   bench/store.sh [store-bench flags]
#
# Defaults take about 8-10 minutes on a 2-core machine. Scale with
# INGEST_HOSTS (1000), INGEST_MINUTES (10), DAY_HOSTS (100), DAY_HOURS (24),
# GROUP_HOSTS (100), RUNS (7), RAW_PARALLEL (2), RAW_BATCH (10000),
# INFLUX_BATCH (5000), COMPACT_TIMEOUT (300 s), SKIP_CLIENT_INGEST=true.
# INFLUXD=/path/to/influxd picks another influxd (1.x).
set -euo pipefail
cd "$(dirname "$0")/.."

influxd=${INFLUXD:-$(command -v influxd || true)}
if [ -z "$influxd" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "influxd not found: installing Debian's influxdb (apt-get)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null; } ||
      { echo "store.sh: 'apt-get install influxdb' failed" >&2; exit 1; }
    influxd=$(command -v influxd || true)
  fi
  if [ -z "$influxd" ]; then
    echo "store.sh: influxd (InfluxDB 1.x) is not installed: run 'apt-get install influxdb' as root, or set INFLUXD=/path/to/influxd" >&2
    exit 1
  fi
fi
[ -x "$influxd" ] || { echo "store.sh: INFLUXD=$influxd is not executable" >&2; exit 1; }

echo "building (release) ..." >&2
cargo build --release --quiet -p myplatform-bench
target_dir=${CARGO_TARGET_DIR:-target}

tmp=$(mktemp -d -t store-bench.XXXXXX)
influx_pid=""
cleanup() {
  if [ -n "$influx_pid" ]; then
    kill "$influx_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$influx_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$influx_pid" 2>/dev/null || true
    wait "$influx_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port)
rpc=$(free_port)
while [ "$rpc" = "$http" ]; do rpc=$(free_port); done

# As e2e/src/influx.rs, plus: the WAL is snapshotted into TSM 5 s after the
# last write and a shard is fully compacted 15 s after it (defaults: 10 min
# and 4 h), so the size measured is InfluxDB's settled size, not its WAL.
cat >"$tmp/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"

[meta]
  dir = "$tmp/meta"

[data]
  dir = "$tmp/data"
  wal-dir = "$tmp/wal"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "5s"
  compact-full-write-cold-duration = "15s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$http"
  log-enabled = false
  max-body-size = 0

[continuous_queries]
  enabled = false
EOF

"$influxd" run -config "$tmp/influxdb.conf" >"$tmp/influxd.log" 2>&1 &
influx_pid=$!
for _ in $(seq 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$http/ping" && break
  kill -0 "$influx_pid" 2>/dev/null || { echo "influxd exited during start; its log:" >&2; cat "$tmp/influxd.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$http/ping" || { echo "influxd did not answer /ping in 30 s; its log:" >&2; tail -50 "$tmp/influxd.log" >&2; exit 1; }
echo "influxd $("$influxd" version 2>/dev/null | head -1) on 127.0.0.1:$http (pid $influx_pid)" >&2

"$target_dir/release/store-bench" \
  --influx-url "http://127.0.0.1:$http" \
  --influx-data-dir "$tmp/data" --influx-wal-dir "$tmp/wal" \
  --influxd-pid "$influx_pid" --work-dir "$tmp/embedded" "$@"
