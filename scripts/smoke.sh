#!/usr/bin/env bash
# SIPp smoke test against the built voxgate binary, on loopback only.
#
# Starts `voxgate run` with a temporary config (UDP and TCP on 127.0.0.1, ports chosen by the
# kernel and read back from the node's log), then runs SIPp's INVITE -> 404 -> ACK scenario
# over UDP and over TCP, and fails unless every call succeeded with no retransmission and no
# unexpected message. Stops the node with SIGTERM and checks it exits 0. Then runs
# scripts/proxy-calls.sh (SIPp full calls through the node as a stateful proxy).
#
# Skips (exit 0) when sipp is not installed. Environment:
#   VOXGATE_BIN   binary to test (default: cargo build -p voxgate, debug profile)
#   SMOKE_RATE    calls per second (default 200)
#   SMOKE_CALLS   calls per transport (default 1000)
#   KEEP_TMP=1    keep the temporary directory (config, node log, SIPp files)
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${SMOKE_RATE:-200}
CALLS=${SMOKE_CALLS:-1000}

if ! command -v sipp >/dev/null 2>&1; then
  echo "smoke: sipp not found (Debian package sip-tester); skipping the SIPp smoke test"
  exit 0
fi

if [ -z "${VOXGATE_BIN:-}" ]; then
  cargo build -q -p voxgate
  VOXGATE_BIN="${CARGO_TARGET_DIR:-target}/debug/voxgate"
fi
[ -x "$VOXGATE_BIN" ] || { echo "smoke: no binary at $VOXGATE_BIN" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxgate-smoke.XXXXXX")
NODE_PID=""
cleanup() {
  if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -KILL "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "smoke: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# The shared benchmark scenario when the shared material is beside the repo, else our own
# minimal INVITE -> (100) -> 404 -> ACK scenario.
SCENARIO=../shared/bench/sipp-uac-404.xml
if [ ! -f "$SCENARIO" ]; then
  SCENARIO=$TMP/uac-404.xml
  cat > "$SCENARIO" <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="voxgate smoke: INVITE answered 404">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: smoke <sip:smoke@[local_ip]:[local_port]>;tag=[pid]smoke[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:smoke@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="404"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: smoke <sip:smoke@[local_ip]:[local_port]>;tag=[pid]smoke[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
XML
fi

cat > "$TMP/node.toml" <<'TOML'
[node]
name = "smoke"
drain_secs = 2

[[listen]]
proto = "udp"
addr = "127.0.0.1:0"

[[listen]]
proto = "tcp"
addr = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[log]
level = "info"
TOML

"$VOXGATE_BIN" check --config "$TMP/node.toml" >/dev/null
"$VOXGATE_BIN" run --config "$TMP/node.toml" 2> "$TMP/node.log" &
NODE_PID=$!

# Wait (bounded) for the node to be up, then read its bound addresses from the log.
for _ in $(seq 100); do
  grep -q "node smoke up" "$TMP/node.log" 2>/dev/null && break
  kill -0 "$NODE_PID" 2>/dev/null || { cat "$TMP/node.log" >&2; echo "smoke: voxgate exited" >&2; exit 1; }
  sleep 0.1
done
grep -q "node smoke up" "$TMP/node.log" || { cat "$TMP/node.log" >&2; echo "smoke: voxgate not up in 10 s" >&2; exit 1; }
# shellcheck source=scripts/lib-node.sh
. "$(dirname "$0")/lib-node.sh"
UDP_ADDR=$(addr_of "listening udp")
TCP_ADDR=$(addr_of "listening tcp")
ADMIN_ADDR=$(addr_of "admin listening")
echo "smoke: voxgate up: udp $UDP_ADDR, tcp $TCP_ADDR, admin $ADMIN_ADDR; scenario $SCENARIO"

# run_sipp NAME TRANSPORT-FLAG TARGET: SIPp's own port is random, retried when taken.
run_sipp() {
  local name=$1 tflag=$2 target=$3 rc port try
  for try in 1 2 3 4 5; do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    rm -f "$TMP/$name.csv"
    set +e
    timeout 120 sipp -sf "$SCENARIO" -t "$tflag" -i 127.0.0.1 -p "$port" \
      -r "$RATE" -m "$CALLS" -timeout 60 -timeout_error -recv_timeout 5000 -nostdin \
      -trace_stat -stf "$TMP/$name.csv" -fd 1 \
      -trace_err -error_file "$TMP/$name.err" \
      "$target" > "$TMP/$name.screen" 2> "$TMP/$name.stderr"
    rc=$?
    set -e
    grep -q "Address already in use" "$TMP/$name.stderr" 2>/dev/null || break
  done
  local ok fail retr unexp
  ok=$(csv_last "$TMP/$name.csv" "SuccessfulCall(C)" 2>/dev/null || echo NA)
  fail=$(csv_last "$TMP/$name.csv" "FailedCall(C)" 2>/dev/null || echo NA)
  retr=$(csv_last "$TMP/$name.csv" "Retransmissions(C)" 2>/dev/null || echo NA)
  unexp=$(csv_last "$TMP/$name.csv" "FailedUnexpectedMessage(C)" 2>/dev/null || echo NA)
  echo "smoke: $name: sipp_rc=$rc calls=$ok failed=$fail retransmissions=$retr unexpected=$unexp (rate $RATE/s)"
  if [ "$rc" != 0 ] || [ "$ok" != "$CALLS" ] || [ "$fail" != 0 ] || [ "$retr" != 0 ]; then
    echo "smoke: $name FAILED" >&2
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
invites=$(printf '%s\n' "$metrics" | sed -n 's/^voxgate_requests_total{method="INVITE"} \([0-9]*\).*/\1/p')
echo "smoke: voxgate_requests_total{method=\"INVITE\"} = ${invites:-missing}"
if [ "${invites:-0}" -lt $(( 2 * CALLS )) ]; then
  echo "smoke: metrics do not count the $(( 2 * CALLS )) INVITEs" >&2
  status=1
fi

stop_node smoke || status=1

# Proxied calls (stateful mode) with the same binary.
if [ "$status" = 0 ]; then
  VOXGATE_BIN="$VOXGATE_BIN" bash scripts/proxy-calls.sh || status=1
fi

if [ "$status" = 0 ]; then
  echo "smoke: 2 passed, 0 failed"
else
  echo "smoke: FAILED (log: KEEP_TMP=1 $0)" >&2
  [ "${KEEP_TMP:-0}" = 1 ] || tail -n 30 "$TMP/node.log" >&2
fi
exit "$status"
