#!/usr/bin/env bash
# bench/registrar-memory.sh -- resident memory of a voxgate registrar holding N bindings
# (default 1,000,000), on loopback only.
#
# SIPp (bench/registrar-noauth.xml) registers N distinct users
# (u1..uN, one Contact each, Expires 3600, no authentication so that only the bindings are
# measured) at RATE per second against a voxgate with a registrar, its bindings written
# behind to SQLite as usual. Resident memory (VmRSS) is read before the first REGISTER and
# once every binding is held (the `voxgate_registrar_bindings` gauge) and the location
# writer has caught up; the difference divided by N is the cost of a binding.
#
# Usage: bench/registrar-memory.sh
# Environment:
#   BINDINGS=1000000   bindings to hold
#   RATE=8000          REGISTERs per second offered
#   PORT=5171 SIPP_PORT=5192   SIP ports on 127.0.0.1 (refused when busy)
#   plus VOXGATE_BIN, SKIP_BUILD, CARGO_TARGET_DIR, OUT_DIR of bench/lib.sh
# Output: one summary line (also appended to bench/out/registrar-memory-*.txt).
set -u
. "$(dirname "$0")/lib.sh"

BINDINGS=${BINDINGS:-1000000}
RATE=${RATE:-8000}
PORT=${PORT:-5171}
SIPP_PORT=${SIPP_PORT:-5192}
SCEN_XML=$BENCH_DIR/registrar-noauth.xml

command -v sipp >/dev/null 2>&1 || { blog "missing sipp (apt-get install -y sip-tester)"; exit 2; }
command -v sqlite3 >/dev/null 2>&1 || { blog "missing sqlite3"; exit 2; }
build_voxgate
mkdir -p "$OUT"

port_busy() { ss -Huln "src 127.0.0.1:$1" 2>/dev/null | grep -q .; }
for p in "$PORT" "$SIPP_PORT"; do
  if port_busy "$p"; then blog "127.0.0.1:$p/udp is busy"; exit 2; fi
done
ADMIN_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')

TMP=$(mktemp -d /tmp/vg-regmem.XXXXXX)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && [ -d /proc/$SERVER_PID ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 100); do [ -d /proc/$SERVER_PID ] || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  [ "${KEEP_TMP:-0}" = 1 ] && blog "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat > "$TMP/voxgate.toml" <<CFG
# written by bench/registrar-memory.sh: a registrar for 127.0.0.1, bindings in SQLite
[[listen]]
proto = "udp"
addr = "127.0.0.1:$PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[log]
level = "warn"

[subscribers]
database = "sqlite://$TMP/voxgate.db"

[registrar]
domains = ["127.0.0.1"]
max_bindings = $(( BINDINGS * 2 ))
CFG
"$VOXGATE_BIN" check --config "$TMP/voxgate.toml" >/dev/null 2>"$TMP/check.err" ||
  { blog "voxgate check failed:"; cat "$TMP/check.err" >&2; exit 2; }
( cd "$TMP" && exec "$VOXGATE_BIN" run --config "$TMP/voxgate.toml" ) > "$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do port_busy "$PORT" && break; sleep 0.1; done
port_busy "$PORT" || { blog "voxgate did not start:"; tail -20 "$TMP/server.log" >&2; exit 2; }
sleep 2

rss_kb() { awk '/^VmRSS/{print $2}' /proc/$SERVER_PID/status; }
hwm_kb() { awk '/^VmHWM/{print $2}' /proc/$SERVER_PID/status; }
bindings() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
    awk '$1=="voxgate_registrar_bindings"{print $2; f=1} END{if(!f) print 0}'
}

RSS0=$(rss_kb)
blog "voxgate pid $SERVER_PID rss ${RSS0} kB before; registering $BINDINGS users at $RATE/s"
t0=$(date +%s)
timeout $(( BINDINGS / RATE + 300 )) sipp -sf "$SCEN_XML" -i 127.0.0.1 -p "$SIPP_PORT" \
  -r "$RATE" -rp 1000 -m "$BINDINGS" -timeout $(( BINDINGS / RATE + 240 )) \
  -recv_timeout 10000 -nostdin -buff_size 4194304 \
  -trace_stat -stf "$TMP/stat.csv" -fd 5 \
  "127.0.0.1:$PORT" > /dev/null 2> "$TMP/sipp.stderr"
rc=$?
t1=$(date +%s)
csv_last() {
  awk -F';' -v col="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i; next}
                         {v=$c} END{print (c? v : "NA")}' "$1" 2>/dev/null
}
OK=$(csv_last "$TMP/stat.csv" "SuccessfulCall(C)")
FAIL=$(csv_last "$TMP/stat.csv" "FailedCall(C)")
RETR=$(csv_last "$TMP/stat.csv" "Retransmissions(C)")

# wait for the location writer to catch up (rows in SQLite), 120 s at most
ROWS=0
for _ in $(seq 120); do
  ROWS=$(sqlite3 "$TMP/voxgate.db" 'SELECT count(*) FROM location' 2>/dev/null || echo 0)
  [ "${ROWS:-0}" -ge "${OK:-0}" ] && break
  sleep 1
done
sleep 3
HELD=$(bindings)
RSS1=$(rss_kb); HWM=$(hwm_kb)
LINE=$(awk -v n="$HELD" -v r0="$RSS0" -v r1="$RSS1" -v hwm="$HWM" -v ok="$OK" -v f="$FAIL" \
  -v x="$RETR" -v rows="$ROWS" -v rc="$rc" -v w="$(( t1 - t0 ))" -v rate="$RATE" 'BEGIN {
  per = (n > 0) ? (r1 - r0) * 1024 / n : 0
  printf "bindings=%d registered=%s failed=%s retrans=%s sqlite_rows=%s rate=%s wall_s=%s " \
         "rss_before_kb=%s rss_after_kb=%s hwm_kb=%s bytes_per_binding=%.0f sipp_rc=%s\n",
         n, ok, f, x, rows, rate, w, r0, r1, hwm, per, rc
}')
echo "$LINE"
echo "$(date -u +%FT%TZ) git=$(cd "$ROOT" && git rev-parse --short HEAD) $LINE" >> "$OUT/registrar-memory-$(date -u +%Y%m%d).txt"
