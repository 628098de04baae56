#!/usr/bin/env bash
# The browser shell (controller websocket) vs OpenSSH's client vs webssh
# (PyPI), side by side in one run against ONE throwaway sshd on loopback:
#   - keystroke echo round trip: one byte into `cat` under
#     `stty -echo -icanon` (it comes back once, from cat), p50/p99;
#   - bulk PTY output: ~100 MB of base64 printed by the shell, MB/s;
#   - SFTP download of a 1 GiB file through the controller (curl) vs scp,
#     MB/s, and the controller's VmRSS (every 100 ms: baseline, peak).
# Prints absolute figures and ratios (ours/OpenSSH, ours/webssh, ours/scp)
# against the project's goals.
#
#   bench/shell.sh
#
# Runs as root (useradd, sshd). About 3-4 minutes plus the build. Scale
# with ECHO_COUNT (500), BULK_RAW_BYTES (75000000, printed as ~101 MB of
# base64), BULK_ROUNDS (5), DOWNLOAD_MIB (1024), DOWNLOAD_ROUNDS (3).
# webssh is installed once into a venv under ~/.cache (WEBSSH_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
ECHO_COUNT=${ECHO_COUNT:-500}
BULK_RAW_BYTES=${BULK_RAW_BYTES:-75000000}
BULK_ROUNDS=${BULK_ROUNDS:-5}
DOWNLOAD_MIB=${DOWNLOAD_MIB:-1024}
DOWNLOAD_ROUNDS=${DOWNLOAD_ROUNDS:-3}
WEBSSH_VERSION=1.6.3
VENV=${WEBSSH_VENV:-$HOME/.cache/myplatform-bench/webssh-$WEBSSH_VERSION}

if [ "$(id -u)" != 0 ]; then
  echo "shell.sh: run as root (it creates a throwaway user and runs sshd)" >&2
  exit 1
fi
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v scp >/dev/null; then
  echo "installing openssh-server and openssh-client (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
fi
if [ ! -x "$VENV/bin/wssh" ]; then
  echo "installing webssh $WEBSSH_VERSION into $VENV (pip)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "webssh==$WEBSSH_VERSION"
fi

echo "building (release) ..." >&2
cargo build --release --quiet -p controller -p myplatform-bench
bin=${CARGO_TARGET_DIR:-target}/release

tmp=$(mktemp -d -t shell-bench.XXXXXX)
# The user's home is inside: sshd (as the user) must traverse to it.
chmod 755 "$tmp"
user=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ -n "$user" ]; then
    # sshd -D leaves the per-session processes it forked for the user
    # running; they are all ours (the user exists only for this run).
    for p in $(pgrep -u "$user" || true); do kill -KILL "$p" 2>/dev/null || true; done
    sleep 0.2
    userdel -r "$user" >/dev/null 2>&1 || userdel -f -r "$user" >/dev/null 2>&1 ||
      echo "shell.sh: could not remove user $user" >&2
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
json_id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }

# --- the throwaway user and sshd (as e2e/src/sshd.rs) ---
mkdir -p /run/sshd "$tmp/keys"
chmod 700 "$tmp/keys"
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$tmp/keys/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$tmp/keys/client_ed25519"
name=mpb$(random_hex 4)
password=$(random_hex 12)
useradd -m -d "$tmp/home" -s /bin/bash "$name"
user=$name
echo "$user:$password" | chpasswd
install -d -m 700 -o "$user" -g "$(id -g "$user")" "$tmp/home/.ssh"
install -m 600 -o "$user" -g "$(id -g "$user")" "$tmp/keys/client_ed25519.pub" "$tmp/home/.ssh/authorized_keys"

ssh_port=$(free_port)
# UsePAM no: sshd checks the password against /etc/shadow (what chpasswd
# wrote) and skips pam_loginuid, which refuses logins in containers.
cat >"$tmp/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $ssh_port
HostKey $tmp/keys/host_ed25519
PidFile $tmp/sshd.pid
AllowUsers $user
PermitRootLogin no
PasswordAuthentication yes
PubkeyAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile .ssh/authorized_keys
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
MaxStartups 100:30:200
Subsystem sftp internal-sftp
EOF
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" 2>"$tmp/sshd.log" &
pids+=($!)
for _ in $(seq 200); do grep -q "Server listening on 127.0.0.1 port $ssh_port" "$tmp/sshd.log" && break; sleep 0.1; done
grep -q "Server listening" "$tmp/sshd.log" || { echo "sshd did not start; its log:" >&2; cat "$tmp/sshd.log" >&2; exit 1; }
echo "sshd $(ssh -V 2>&1 | cut -d, -f1) on 127.0.0.1:$ssh_port, user $user" >&2

# --- the controller, an admin, a token, and the server to open shells on ---
web=$(free_port)
quic=$(free_port)
export MYPLATFORM_DATA_DIR="$tmp/ctl" MYPLATFORM_GATEWAY__LISTEN="127.0.0.1:$quic" MYPLATFORM_WEB__LISTEN="127.0.0.1:$web"
RUST_LOG=warn "$bin/controller" serve 2>"$tmp/controller.log" &
ctl=$!
pids+=("$ctl")
base="http://127.0.0.1:$web"
for _ in $(seq 200); do curl -sf -o /dev/null "$base/healthz" && break; sleep 0.1; done
curl -sf -o /dev/null "$base/healthz" || { echo "the controller did not start; its log:" >&2; cat "$tmp/controller.log" >&2; exit 1; }
random_hex 16 | "$bin/controller" user add bench --admin --password-stdin >/dev/null
token=$("$bin/controller" user token bench 2>/dev/null)
api() { curl -sS -f -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
gid=$(api -d '{"name":"bench","app_identifier":""}' "$base/api/groups" | json_id)
rid=$(api -d '{"name":"bench","purpose":"application"}' "$base/api/rooms" | json_id)
sid=$(api -d "{\"name\":\"bench\",\"group_id\":$gid,\"room_id\":$rid,\"address\":\"127.0.0.1\",\"ssh_port\":$ssh_port,\"ssh_user\":\"$user\",\"credential\":{\"kind\":\"password\",\"secret\":\"$password\"}}" \
  "$base/api/servers" | json_id)

# --- webssh: plain HTTP on loopback, no XSRF cookie dance, host key
# accepted on first use into a file of this run ---
wport=$(free_port)
"$VENV/bin/wssh" --address=127.0.0.1 --port="$wport" --xsrf=False --policy=autoadd \
  --hostfile="$tmp/webssh_known_hosts" --syshostfile="$tmp/no_known_hosts" --logging=warning \
  >"$tmp/wssh.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$wport/" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$wport/" || { echo "wssh did not start; its log:" >&2; cat "$tmp/wssh.log" >&2; exit 1; }
echo "controller pid $ctl on $base, wssh $WEBSSH_VERSION on 127.0.0.1:$wport" >&2

# Secrets go to the bench binary through its environment, not argv.
export BENCH_TOKEN="$token" BENCH_SSH_PASSWORD="$password"
results="$tmp/results.jsonl"
targets=(--ours-url "ws://127.0.0.1:$web/api/servers/$sid/shell" --webssh-url "http://127.0.0.1:$wport"
  --ssh-port "$ssh_port" --ssh-user "$user" --ssh-key "$tmp/keys/client_ed25519" --results "$results")

echo "== keystroke echo ($ECHO_COUNT per transport, interleaved)" >&2
"$bin/shell-bench" echo "${targets[@]}" --count "$ECHO_COUNT"
echo "== bulk output ($BULK_ROUNDS rounds, interleaved)" >&2
"$bin/shell-bench" bulk "${targets[@]}" --raw-bytes "$BULK_RAW_BYTES" --rounds "$BULK_ROUNDS"

echo "== download: writing a ${DOWNLOAD_MIB} MiB file in the user's home" >&2
big="$tmp/home/big.bin"
head -c "$((DOWNLOAD_MIB * 1024 * 1024))" /dev/urandom >"$big"
chown "$user" "$big"
# Warm the page cache so neither transfer reads the disk.
cat "$big" >/dev/null
"$bin/shell-bench" download --url "$base/api/servers/$sid/files?path=$big" --controller-pid "$ctl" \
  --ssh-port "$ssh_port" --ssh-user "$user" --ssh-key "$tmp/keys/client_ed25519" \
  --remote-path "$big" --size "$((DOWNLOAD_MIB * 1024 * 1024))" --rounds "$DOWNLOAD_ROUNDS" --results "$results"
rm -f "$big"

"$bin/shell-bench" report --results "$results"
echo
echo "MB = 10^6 bytes. Bulk and download figures are medians of the rounds; the machine is shared, so read the ratios."
