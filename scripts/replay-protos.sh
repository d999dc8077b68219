#!/usr/bin/env bash
# scripts/replay-protos.sh -- the PROTOS c07-sip suite (4,527 malformed INVITEs, each followed by
# its CANCEL teardown) replayed over UDP to a running voxgate, inside a network namespace with
# only loopback (unshare -n). The rendered cases target 127.0.0.1 with no port in the
# Request-URI (so 5060) and carry "Via: SIP/2.0/UDP 127.0.0.1:5061": voxgate listens on
# 127.0.0.1:5060 and the sender (scripts/sipreplay.py) on 5061.
#
# Checks: case 0 (the valid INVITE) gets a reply at the start; every PROBE_EVERY (500) cases and
# at the end, the voxgate process is alive, answers OPTIONS with 200 and replies to case 0 again.
# A case passes when the probe after it passes. Replies are counted by status.
#
# Usage: scripts/replay-protos.sh
# Environment: VOXGATE_BIN, SHARED_DIR, VOXGATE_CONFIG (as replay-conformance.sh),
#   PROBE_EVERY=500, GAP_S=0.002 (between an INVITE and its teardown), MAX_SECONDS=600, LIMIT=0
# Exit: 0 all passed (or skipped), 1 a check failed, 2 set-up error.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED_DIR:-$ROOT/../shared}
TARBALL=$SHARED/conformance/protos-c07-sip/c07-sip-r2-rendered-127.0.0.1.tar.xz
PORT=5060

if [ "${_VOXGATE_IN_NETNS:-}" != 1 ]; then
  [ -f "$TARBALL" ] || { echo "SKIP: $TARBALL not found (set SHARED_DIR)"; exit 0; }
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
  export VOXGATE_BIN SHARED_DIR=$SHARED _VOXGATE_IN_NETNS=1
  exec unshare -n bash "$0" "$@"
fi

# ------------------------------------------------------------ inside the namespace
ip link set lo up
ip route add local 0.0.0.0/0 dev lo 2>/dev/null || true
TMP=$(mktemp -d /tmp/voxgate-protos.XXXXXX)
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

mkdir -p "$TMP/cases"
tar -xJf "$TARBALL" -C "$TMP/cases" || { echo "cannot extract $TARBALL"; exit 2; }
CASES=$(dirname "$(find "$TMP/cases" -type d -name invite | head -1)")
[ -d "$CASES/invite" ] || { echo "no invite/ directory in $TARBALL"; exit 2; }

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

START=$(date +%s)
python3 "$ROOT/scripts/sipreplay.py" protos --target "127.0.0.1:$PORT" --bind-port 5061 \
  --pid "$VPID" --probe-every "${PROBE_EVERY:-500}" --gap "${GAP_S:-0.002}" \
  --max-seconds "${MAX_SECONDS:-600}" --limit "${LIMIT:-0}" "$CASES"
RC=$?
echo "elapsed: $(( $(date +%s) - START )) s"
if [ ! -d "/proc/$VPID" ]; then
  echo "FAIL: voxgate is no longer running; log tail:"; tail -30 "$TMP/voxgate.log"; RC=1
elif [ "$RC" != 0 ]; then
  echo "voxgate log tail:"; tail -15 "$TMP/voxgate.log"
fi
exit $RC
