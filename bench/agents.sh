#!/usr/bin/env bash
# Agent link scale: N simulated agents (one process, many QUIC connections)
# enroll and heartbeat at 1 Hz against one controller on this machine.
#
#   bench/agents.sh [N ...]        default: 1000 5000 10000
#
# Prints, per N: enroll+connect rate, mTLS reconnect rate, controller RSS
# per agent and controller CPU at steady state. Release build. The swarm
# shares the machine's cores with the controller; its own CPU is printed too.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p controller -p myplatform-bench
ulimit -n 65536 2>/dev/null || true
tmp=$(mktemp -d)
ctl_pid=""
cleanup() { [ -n "$ctl_pid" ] && kill "$ctl_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 5000 10000)
for n in "${sizes[@]}"; do
  quic=$(free_port); http=$(free_port)
  export MYPLATFORM_DATA_DIR="$tmp/$n" MYPLATFORM_GATEWAY__LISTEN="127.0.0.1:$quic" \
         MYPLATFORM_WEB__LISTEN="127.0.0.1:$http" MYPLATFORM_GATEWAY__HEARTBEAT_SECS=1
  RUST_LOG=warn target/release/controller serve 2>"$tmp/controller-$n.log" &
  ctl_pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done
  line=$(target/release/controller token create --role monitor --uses "$n" --ttl 1h 2>/dev/null)
  token=$(echo "$line" | sed -E 's/.*--token ([^ ]+).*/\1/')
  pin=$(echo "$line" | sed -E 's/.*--ca-pin ([^ ]+).*/\1/')
  echo "== $n agents =="
  RUST_LOG=error target/release/agent-swarm --controller "127.0.0.1:$quic" --token "$token" \
      --ca-pin "$pin" --agents "$n" --controller-pid "$ctl_pid" --hold "${HOLD:-30}"
  kill "$ctl_pid"; wait "$ctl_pid" 2>/dev/null || true; ctl_pid=""
done
