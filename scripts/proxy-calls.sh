#!/usr/bin/env bash
# Proxied SIPp calls against the built voxgate binary, on loopback only.
#
# Starts a SIPp UAS (the upstream), then `voxgate run` as a stateful proxy relaying every
# call to it (record-routing, dialogs tracked; ports chosen by the kernel and read back from
# the node's log), and runs SIPp full calls (INVITE/100/180/200/ACK/pause/BYE/200) through
# it over UDP and over TCP. Fails unless every call succeeded with no unexpected message and
# the node's /metrics counted the dialogs. Stops the node with SIGTERM and checks exit 0.
#
# Skips (exit 0) when sipp is not installed. Environment:
#   VOXGATE_BIN   binary to test (default: cargo build -p voxgate, debug profile)
#   CALLS_RATE    calls per second (default 50)
#   CALLS         calls per transport (default 200)
#   KEEP_TMP=1    keep the temporary directory
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${CALLS_RATE:-50}
CALLS=${CALLS:-200}

if ! command -v sipp >/dev/null 2>&1; then
  echo "proxy-calls: sipp not found (Debian package sip-tester); skipping"
  exit 0
fi
if [ -z "${VOXGATE_BIN:-}" ]; then
  cargo build -q -p voxgate
  VOXGATE_BIN="${CARGO_TARGET_DIR:-target}/debug/voxgate"
fi
[ -x "$VOXGATE_BIN" ] || { echo "proxy-calls: no binary at $VOXGATE_BIN" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxgate-proxy-calls.XXXXXX")
NODE_PID=""
UAS_PID=""
cleanup() {
  for p in "$NODE_PID" "$UAS_PID"; do
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      kill -KILL "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "proxy-calls: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

UAC=crates/voxgate/tests/sipp/uac-call.xml
UAS=crates/voxgate/tests/sipp/uas-call.xml
[ -f ../shared/bench/sipp-uac-call.xml ] && UAC=../shared/bench/sipp-uac-call.xml
[ -f ../shared/bench/sipp-uas-call.xml ] && UAS=../shared/bench/sipp-uas-call.xml

free_port() {  # a UDP+TCP port free now on 127.0.0.1
  python3 -c 'import socket
for _ in range(50):
    u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.bind(("127.0.0.1",0)); p=u.getsockname()[1]
    t=socket.socket()
    try:
        t.bind(("127.0.0.1",p)); print(p); break
    except OSError: pass'
}

UP=$(free_port)
sipp -sf "$UAS" -i 127.0.0.1 -p "$UP" -nostdin -trace_err -error_file "$TMP/uas.err" \
  > /dev/null 2> "$TMP/uas.stderr" &
UAS_PID=$!

cat > "$TMP/node.toml" <<TOML
[node]
name = "proxy-calls"
drain_secs = 2

[[listen]]
proto = "udp"
addr = "127.0.0.1:0"

[[listen]]
proto = "tcp"
addr = "127.0.0.1:0"

[proxy]
record_route = true

[[proxy.upstreams]]
addr = "127.0.0.1:$UP"

[admin]
listen = "127.0.0.1:0"
TOML

"$VOXGATE_BIN" check --config "$TMP/node.toml" >/dev/null
"$VOXGATE_BIN" run --config "$TMP/node.toml" 2> "$TMP/node.log" &
NODE_PID=$!
for _ in $(seq 100); do
  grep -q "node proxy-calls up" "$TMP/node.log" 2>/dev/null && break
  kill -0 "$NODE_PID" 2>/dev/null || { cat "$TMP/node.log" >&2; echo "proxy-calls: voxgate exited" >&2; exit 1; }
  sleep 0.1
done
grep -q "node proxy-calls up" "$TMP/node.log" || { cat "$TMP/node.log" >&2; exit 1; }
# shellcheck source=scripts/lib-node.sh
. "$(dirname "$0")/lib-node.sh"
UDP_ADDR=$(addr_of "listening udp")
TCP_ADDR=$(addr_of "listening tcp")
ADMIN_ADDR=$(addr_of "admin listening")
echo "proxy-calls: voxgate up: udp $UDP_ADDR, tcp $TCP_ADDR, admin $ADMIN_ADDR; upstream 127.0.0.1:$UP"

run_sipp() {
  local name=$1 tflag=$2 target=$3 rc port
  port=$(free_port)
  set +e
  timeout 120 sipp -sf "$UAC" -t "$tflag" -i 127.0.0.1 -p "$port" -s bob \
    -r "$RATE" -m "$CALLS" -d 200 -timeout 90 -timeout_error -nostdin \
    -trace_stat -stf "$TMP/$name.csv" -fd 1 -trace_err -error_file "$TMP/$name.err" \
    "$target" > "$TMP/$name.screen" 2> "$TMP/$name.stderr"
  rc=$?
  set -e
  local ok fail unexp
  ok=$(csv_last "$TMP/$name.csv" "SuccessfulCall(C)" 2>/dev/null || echo NA)
  fail=$(csv_last "$TMP/$name.csv" "FailedCall(C)" 2>/dev/null || echo NA)
  unexp=$(csv_last "$TMP/$name.csv" "FailedUnexpectedMessage(C)" 2>/dev/null || echo NA)
  echo "proxy-calls: $name: sipp_rc=$rc calls=$ok failed=$fail unexpected=$unexp (rate $RATE/s)"
  if [ "$rc" != 0 ] || [ "$ok" != "$CALLS" ] || [ "$fail" != 0 ]; then
    echo "proxy-calls: $name FAILED" >&2
    tail -n 5 "$TMP/$name.stderr" >&2 || true
    head -c 1500 "$TMP/$name.err" >&2 2>/dev/null || true; echo >&2
    return 1
  fi
}

status=0
run_sipp udp u1 "$UDP_ADDR" || status=1
run_sipp tcp t1 "$TCP_ADDR" || status=1

# The node counted the calls.
metrics=$(fetch_metrics "$ADMIN_ADDR")
dialogs=$(printf '%s\n' "$metrics" | sed -n 's/^voxgate_proxy_dialogs_created_total \([0-9]*\).*/\1/p')
echo "proxy-calls: voxgate_proxy_dialogs_created_total = ${dialogs:-missing}"
if [ "${dialogs:-0}" -lt $(( 2 * CALLS )) ]; then
  echo "proxy-calls: metrics do not count the $(( 2 * CALLS )) dialogs" >&2
  status=1
fi

stop_node proxy-calls || status=1

if [ "$status" = 0 ]; then
  echo "proxy-calls: 2 passed, 0 failed"
else
  echo "proxy-calls: FAILED (KEEP_TMP=1 $0 keeps the logs)" >&2
  [ "${KEEP_TMP:-0}" = 1 ] || tail -n 30 "$TMP/node.log" >&2
fi
exit "$status"
