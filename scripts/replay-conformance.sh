#!/usr/bin/env bash
# scripts/replay-conformance.sh -- replay every RFC 4475 and RFC 5118 torture message over UDP
# to a running voxgate and check each reply (or silence) against the conformance index.
#
# Runs voxgate and the sender (scripts/sipreplay.py) inside a network namespace with only
# loopback (unshare -n), so nothing can leave the machine whatever the messages' Via say. In the
# namespace every IPv4 address is routed to loopback (ip route add local 0.0.0.0/0 dev lo), so a
# reply sent to the wrong address (a Via sent-by instead of the source) is caught and reported.
#
# Usage: scripts/replay-conformance.sh
# Environment:
#   VOXGATE_BIN   binary to test (default: cargo build -p voxgate, debug, in CARGO_TARGET_DIR
#                 or <repo>/target)
#   SHARED_DIR    shared material (default <repo>/../shared); absent -> skip (exit 0)
#   PORT=5099     voxgate's UDP port in the namespace (not one the messages' Via name)
#   VOXGATE_CONFIG  a config to use instead of the generated one (must listen on 127.0.0.1:PORT)
# Exit: 0 all passed (or skipped), 1 a check failed, 2 set-up error.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED_DIR:-$ROOT/../shared}
PORT=${PORT:-5099}
CONF=$SHARED/conformance

if [ "${_VOXGATE_IN_NETNS:-}" != 1 ]; then
  if [ ! -d "$CONF/rfc4475/messages" ] || [ ! -d "$CONF/rfc5118/messages" ]; then
    echo "SKIP: $CONF/rfc4475 or rfc5118 not found (set SHARED_DIR)"; exit 0
  fi
  if ! unshare -n true 2>/dev/null; then
    echo "SKIP: unshare -n is not permitted here (needs root or user namespaces)"; exit 0
  fi
  command -v ip >/dev/null || { echo "SKIP: the ip command (iproute2) is missing"; exit 0; }
  command -v python3 >/dev/null || { echo "SKIP: python3 is missing"; exit 0; }
  if [ -z "${VOXGATE_BIN:-}" ]; then
    (cd "$ROOT" && cargo build -q -p voxgate) || { echo "build failed"; exit 2; }
    VOXGATE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/voxgate
  fi
  [ -x "$VOXGATE_BIN" ] || { echo "no voxgate binary at $VOXGATE_BIN"; exit 2; }
  export VOXGATE_BIN SHARED_DIR=$SHARED PORT _VOXGATE_IN_NETNS=1
  exec unshare -n bash "$0" "$@"
fi

# ------------------------------------------------------------ inside the namespace
ip link set lo up
ip route add local 0.0.0.0/0 dev lo 2>/dev/null ||
  echo "note: could not route all IPv4 to loopback; misaddressed replies show as silence"
TMP=$(mktemp -d /tmp/voxgate-replay.XXXXXX)
VPID=""
cleanup() {
  if [ -n "$VPID" ] && [ -d "/proc/$VPID" ]; then
    kill -TERM "$VPID" 2>/dev/null
    for _ in $(seq 50); do [ -d "/proc/$VPID" ] || break; sleep 0.1; done
    kill -KILL "$VPID" 2>/dev/null
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

CFG=${VOXGATE_CONFIG:-$TMP/voxgate.toml}
if [ -z "${VOXGATE_CONFIG:-}" ]; then
  cat > "$CFG" <<CFG
[[listen]]
proto = "udp"
addr = "127.0.0.1:$PORT"

[admin]
enabled = false
CFG
fi
"$VOXGATE_BIN" run --config "$CFG" > "$TMP/voxgate.log" 2>&1 &
VPID=$!
for _ in $(seq 100); do
  ss -Huln "src 127.0.0.1:$PORT" 2>/dev/null | grep -q . && break
  [ -d "/proc/$VPID" ] || break
  sleep 0.1
done
if ! ss -Huln "src 127.0.0.1:$PORT" 2>/dev/null | grep -q .; then
  echo "voxgate did not start on 127.0.0.1:$PORT; log:"; tail -30 "$TMP/voxgate.log"; exit 2
fi

python3 "$ROOT/scripts/sipreplay.py" conformance --target "127.0.0.1:$PORT" \
  "$SHARED_DIR/conformance/rfc4475" "$SHARED_DIR/conformance/rfc5118"
RC=$?
if [ ! -d "/proc/$VPID" ]; then
  echo "FAIL: voxgate is no longer running; log tail:"; tail -30 "$TMP/voxgate.log"; RC=1
elif [ "$RC" != 0 ]; then
  echo "voxgate log tail:"; tail -15 "$TMP/voxgate.log"
fi
exit $RC
