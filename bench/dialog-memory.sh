#!/usr/bin/env bash
# bench/dialog-memory.sh -- resident memory per dialog of voxgate as a stateful proxy.
#
# Starts voxgate (release build) as a proxy on 127.0.0.1 (ports chosen here) relaying to a
# minimal UAS (bench/dialog_memory.py uas, answers every INVITE 200), reads the node's RSS
# from /proc, sets up DIALOGS long calls (INVITE -> 200 -> ACK, never BYE) with the UAC of
# the same file, reads RSS again right away and once the INVITE transactions have ended
# (RFC 6026 Timer L, 64*T1), and prints bytes per dialog from the dialog count the
# node reports in /stats. Not part of the test run (it takes ~1 minute and ~0.3 GB).
#
# Environment: DIALOGS (default 100000), VOXGATE_BIN (default: release build in
# CARGO_TARGET_DIR or target), SETTLE_S (default 40), T1_MS (default 50), KEEP_TMP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${DIALOGS:-100000}
T1_MS=${T1_MS:-50}
SETTLE=${SETTLE_S:-40}
if [ -z "${VOXGATE_BIN:-}" ]; then
  cargo build -q --release -p voxgate
  VOXGATE_BIN="${CARGO_TARGET_DIR:-target}/release/voxgate"
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxgate-dialog-mem.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ "${KEEP_TMP:-0}" = 1 ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
UP=$(free_port)
python3 bench/dialog_memory.py uas "$UP" & PIDS+=($!)
cat > "$TMP/node.toml" <<TOML
[[listen]]
proto = "udp"
addr = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
[proxy]
max_dialogs = $(( N + 1000 ))
max_transactions = $(( 2 * N + 1000 ))
[[proxy.upstreams]]
addr = "127.0.0.1:$UP"
[transactions]
max_transactions = $(( 2 * N + 1000 ))
# T1 = 50 ms makes Timer L/M (64*T1) 3.2 s: the INVITE transactions of earlier calls end
# while later calls are set up, so the peak of live transactions (which the allocator keeps
# as RSS) does not mask the dialogs' own memory. ${T1_MS} overrides it.
t1_ms = ${T1_MS:-50}
t2_ms = 400
TOML
RUST_LOG=info "$VOXGATE_BIN" run --config "$TMP/node.toml" 2> "$TMP/node.log" & NODE=$!; PIDS+=($NODE)
for _ in $(seq 100); do grep -q "node .* up" "$TMP/node.log" 2>/dev/null && break; sleep 0.1; done
addr_of() { sed -n "s/.*$1 \([0-9.]*:[0-9]*\).*/\1/p" "$TMP/node.log" | head -n1; }
UDP=$(addr_of "listening udp"); ADMIN=$(addr_of "admin listening")
rss() { awk '/^VmRSS/{print $2*1024}' "/proc/$NODE/status"; }
stats() {
  exec 3<>"/dev/tcp/${ADMIN%:*}/${ADMIN##*:}"
  printf 'GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
  timeout 5 cat <&3 | tail -n1; exec 3<&-
}
sleep 1
R0=$(rss)
echo "node up: udp $UDP admin $ADMIN, RSS before: $R0 bytes"
python3 bench/dialog_memory.py uac "$UDP" "$N"
R1=$(rss)
sleep 1
S1=$(stats | grep -o '"proxy":.*')
echo "right after the calls: RSS $R1 bytes; $S1"
echo "waiting ${SETTLE}s for the INVITE transactions to end (Timer L)"
sleep "$SETTLE"
R2=$(rss)
S2=$(stats | grep -o '"proxy":.*')
D=$(echo "$S2" | sed -n 's/.*"confirmed":\([0-9]*\).*/\1/p')
echo "after settle: RSS $R2 bytes; $S2"
awk -v r0="$R0" -v r1="$R1" -v r2="$R2" -v d="${D:-0}" 'BEGIN {
  if (d == 0) { print "no confirmed dialogs"; exit 1 }
  printf "dialogs=%d rss_before=%d rss_peak=%d rss_settled=%d bytes_per_dialog_peak=%.0f bytes_per_dialog_settled=%.0f\n",
    d, r0, r1, r2, (r1 - r0) / d, (r2 - r0) / d }'
