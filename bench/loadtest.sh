#!/usr/bin/env bash
# Distributed load tests, one command, release build, 127.0.0.1 only.
#
#   bench/loadtest.sh [quick]
#
# 1. load-bench (e2e's LoadLab: the controller, real agent-jmeter
#    processes, real JMeter 5.6): rate accuracy per 1 s bucket beside ONE
#    stock JMeter run of the same run files, TPS change to effect,
#    hot-attach to the new generator's first request, merged percentiles
#    against the exact ones of every JTL row.
# 2. generator-swarm: N simulated generators (the real agent link) report
#    per-second results of one task at 1 Hz; controller CPU and RSS with
#    and without one client on the task's live stream.
#
# Env (defaults; `quick` shortens): LOAD_TPS=100 LOAD_GENERATORS=2
# LOAD_WARMUP=10 LOAD_MEASURE=60 (20) LOAD_CHANGES=5 (2) LOAD_DEEP_CUT=0.2
# TARGET_DELAY_MIN_MS=1 TARGET_DELAY_MAX_MS=200 TARGET_SLOW_SHARE=0.03
# LOAD_NO_PEER=false SWARM_SIZES="10 100 500" ("10 100") SWARM_QUIET=10 (5)
# SWARM_HOLD=30 (12); PARTS=1 or PARTS=2 runs one part alone.
# About 6 min on two cores plus the build; figures in bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=""
[ "${1:-}" = quick ] && quick=1
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --release --quiet -p controller -p agent-jmeter -p agent-monitor -p myplatform-bench
cargo build --release --quiet -p myplatform-bench --example load-bench
ulimit -n 65536 2>/dev/null || true

tmp=$(mktemp -d)
# Every long-lived child leads a process group of its own (setsid), so
# the cleanup reaches what it started in turn (agents, JVMs) by group id.
groups=()
cleanup() {
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  for g in "${groups[@]}"; do
    for _ in $(seq 50); do kill -0 -- "-$g" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$g" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) =="

# ---- 1. real generators ---------------------------------------------------
if [ -n "$quick" ]; then
  : "${LOAD_MEASURE:=20}" "${LOAD_CHANGES:=2}"
fi
export LOAD_MEASURE LOAD_CHANGES
parts=" ${PARTS:-1 2} "
if [[ "$parts" == *" 1 "* ]]; then
  echo "== 1. real generators (load-bench) =="
  TMPDIR="$tmp" RUST_LOG=warn setsid target/release/examples/load-bench &
  bench_pid=$!
  groups+=("$bench_pid")
  wait "$bench_pid"
  echo "(load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
fi
[[ "$parts" == *" 2 "* ]] || exit 0

# ---- 2. controller CPU per generator ---------------------------------------
if [ -n "$quick" ]; then
  sizes=(${SWARM_SIZES:-10 100}); quiet=${SWARM_QUIET:-5}; hold=${SWARM_HOLD:-12}
else
  sizes=(${SWARM_SIZES:-10 100 500}); quiet=${SWARM_QUIET:-10}; hold=${SWARM_HOLD:-30}
fi
rows=()
for n in "${sizes[@]}"; do
  quic=$(free_port); http=$(free_port)
  export MYPLATFORM_DATA_DIR="$tmp/swarm-$n" MYPLATFORM_GATEWAY__LISTEN="127.0.0.1:$quic" \
         MYPLATFORM_WEB__LISTEN="127.0.0.1:$http" \
         MYPLATFORM_LOADTEST__MAX_GENERATORS=100000 MYPLATFORM_LOADTEST__MAX_TPS=100000000
  unset MYPLATFORM_CONFIG
  target/release/controller user add bench --admin </dev/null >/dev/null 2>&1
  api_token=$(target/release/controller user token bench </dev/null 2>/dev/null)
  RUST_LOG=warn setsid target/release/controller serve 2>"$tmp/controller-$n.log" &
  ctl_pid=$!
  groups+=("$ctl_pid")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done
  line=$(target/release/controller token create --role jmeter --uses "$n" --ttl 1h 2>/dev/null)
  token=$(echo "$line" | sed -E 's/.*--token ([^ ]+).*/\1/')
  pin=$(echo "$line" | sed -E 's/.*--ca-pin ([^ ]+).*/\1/')
  echo "== 2. $n simulated generators (generator-swarm) =="
  RUST_LOG=error target/release/generator-swarm --controller "127.0.0.1:$quic" \
      --token "$token" --ca-pin "$pin" --api "http://127.0.0.1:$http" --api-token "$api_token" \
      --controller-pid "$ctl_pid" --generators "$n" --quiet "$quiet" --hold "$hold" \
      | tee "$tmp/swarm-$n.out" | grep -v '^ROW'
  rows+=("$(grep '^ROW' "$tmp/swarm-$n.out" | sed 's/^ROW //')")
  kill "$ctl_pid"; wait "$ctl_pid" 2>/dev/null || true
done

echo
echo "== 2. controller per generator at 1 Hz ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
echo "| generators | CPU % no client | CPU % 1 live client | % per generator | ms CPU per 1000 label-s | CPU % by third | RSS MiB idle -> running | live KB/s | swarm CPU % | stop -> finished s | samples stored |"
echo "| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | --- |"
for r in "${rows[@]}"; do echo "$r"; done
echo "(no goal in the issue; CPU % is of one core, 5 labels x 20 samples per generator-second)"
