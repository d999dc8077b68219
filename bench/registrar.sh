#!/usr/bin/env bash
# bench/registrar.sh -- registrations per second with MD5 digest authentication, voxgate side
# by side with Kamailio (bench/kamailio-registrar.cfg: registrar + usrloc + auth_db on SQLite,
# -x tlsf), in one sequence, at the same rates and counts, on loopback only.
#
# Each "call" of SIPp (bench/registrar-reg.xml) is one registration: REGISTER, 401, REGISTER
# with credentials, 200, for the next user of a pool (an injection file, -inf). Both servers
# keep subscribers (stored HA1) and bindings in SQLite, written behind. The figure is the
# server's CPU (utime+stime of all its processes and threads, from /proc) per registration,
# counted from the first REGISTER to SETTLE_S after the last (so that deferred database
# writes are counted too).
#
# Usage: bench/registrar.sh
# Environment:
#   RATES="1000 2000"    offered registrations per second
#   DURATION_S=15        seconds of traffic per run (count = rate * DURATION_S)
#   USERS=1000           users in the pool (each registers count/USERS times)
#   REPEAT=1             runs per (rate, server); the table shows the median when > 1
#   SERVERS="kamailio voxgate"
#   BAR=0.4              pass when voxgate's CPU per registration <= BAR * Kamailio's
#   PORT=5170 SIPP_PORT=5191   server and SIPp ports on 127.0.0.1 (refused when busy)
#   WRITE_BACK_S=5       both servers gather binding changes this long before writing them
#                        to SQLite (Kamailio: usrloc db_mode 2 timer_interval; voxgate:
#                        [registrar] write_behind_ms)
#   SETTLE_S             wait after SIPp before the last CPU sample (default WRITE_BACK_S+1,
#                        so that the last write is counted); then, up to FLUSH_MAX_S
#                        (default 60) more, until the location table holds a row per user
#                        (min(USERS, count)): with many new users Kamailio's usrloc timer
#                        is still flushing rows one by one after SETTLE_S, and sampling it
#                        mid-flush would leave most of its write cost out
#   KAMAILIO_ARGS        default "-x tlsf"
#   plus VOXGATE_BIN, SKIP_BUILD, CARGO_TARGET_DIR, OUT_DIR of bench/lib.sh
# Exit status: 0 when every rate passes, 1 when one fails, 2 on a set-up error.
set -u
. "$(dirname "$0")/lib.sh"

RATES=${RATES:-"1000 2000"}
DURATION_S=${DURATION_S:-15}
USERS=${USERS:-1000}
REPEAT=${REPEAT:-1}
SERVERS=${SERVERS:-"kamailio voxgate"}
BAR=${BAR:-0.4}
PORT=${PORT:-5170}
SIPP_PORT=${SIPP_PORT:-5191}
WRITE_BACK_S=${WRITE_BACK_S:-5}
SETTLE_S=${SETTLE_S:-$(( WRITE_BACK_S + 1 ))}
FLUSH_MAX_S=${FLUSH_MAX_S:-60}
HZ=$(getconf CLK_TCK)
SCEN_XML=$BENCH_DIR/registrar-reg.xml
KAM_CFG=$BENCH_DIR/kamailio-registrar.cfg

need() { command -v "$1" >/dev/null 2>&1 || { blog "missing $1 ($2)"; exit 2; }; }
need sipp "apt-get install -y sip-tester"
need sqlite3 "apt-get install -y sqlite3"
need python3 "apt-get install -y python3"
case " $SERVERS " in *" kamailio "*)
  need kamailio "apt-get install -y kamailio"
  [ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so ] ||
    { blog "missing Kamailio's db_sqlite (apt-get install -y kamailio-sqlite-modules)"; exit 2; }
  [ -f /usr/share/kamailio/db_sqlite/standard-create.sql ] ||
    { blog "missing /usr/share/kamailio/db_sqlite (kamailio-sqlite-modules)"; exit 2; } ;;
esac
case " $SERVERS " in *" voxgate "*) build_voxgate ;; esac
mkdir -p "$OUT"

port_busy() { ss -Huln "src 127.0.0.1:$1" 2>/dev/null | grep -q .; }

tree_pids() {
  local root=$1 p
  local -a queue=("$root") out=()
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}; queue=("${queue[@]:1}")
    [ -d /proc/$p ] || continue
    out+=("$p")
    for c in $(cat /proc/$p/task/*/children 2>/dev/null); do queue+=("$c"); done
  done
  echo "${out[@]}"
}

ticks_of() {
  local t=0 p s
  for p in "$@"; do
    s=$(cat /proc/$p/stat 2>/dev/null) || continue
    s=${s##*) }
    set -- $s
    t=$(( t + ${12} + ${13} ))
  done
  echo $t
}

stop_pid() {
  local p=$1 i
  [ -n "$p" ] && [ -d /proc/$p ] || return 0
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 50); do [ -d /proc/$p ] || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null
}

SERVER_PID=""; TMP=""
cleanup() {
  local p
  if [ -n "$SERVER_PID" ]; then
    for p in $(tree_pids "$SERVER_PID"); do stop_pid "$p"; done
    wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
  fi
  [ -n "$TMP" ] && [ "${KEEP_TMP:-0}" != 1 ] && rm -rf "$TMP"
  TMP=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# users.csv (SIPp injection file) and users.sql (HA1 rows for both servers' schemas)
make_users() {
  python3 - "$1" "$USERS" <<'PY'
import hashlib, sys
d, n = sys.argv[1], int(sys.argv[2])
with open(f"{d}/users.csv", "w") as csv, open(f"{d}/kam.sql", "w") as kam, \
     open(f"{d}/vox.sql", "w") as vox:
    csv.write("SEQUENTIAL\n")
    kam.write("BEGIN;\n"); vox.write("BEGIN;\n")
    for i in range(n):
        u, p = f"bench{i:06d}", f"pw-{i:06d}"
        csv.write(f"{u};[authentication username={u} password={p}]\n")
        md5 = hashlib.md5(f"{u}:127.0.0.1:{p}".encode()).hexdigest()
        sha = hashlib.sha256(f"{u}:127.0.0.1:{p}".encode()).hexdigest()
        kam.write(f"INSERT INTO subscriber (username, domain, password, ha1, ha1b) "
                  f"VALUES ('{u}', '127.0.0.1', '', '{md5}', '');\n")
        vox.write(f"INSERT OR IGNORE INTO subscriber (username, domain, ha1_md5, ha1_sha256, "
                  f"customer, created, updated) VALUES ('{u}', '127.0.0.1', '{md5}', '{sha}', "
                  f"'bench', 0, 0);\n")
    kam.write("COMMIT;\n"); vox.write("COMMIT;\n")
PY
}

start_server() {  # start_server NAME -> SERVER_PID, or exit 2
  local name=$1 i
  case "$name" in
    kamailio)
      local kdir=/usr/share/kamailio/db_sqlite
      cat "$kdir/standard-create.sql" "$kdir/auth_db-create.sql" "$kdir/usrloc-create.sql" \
        | sqlite3 "$TMP/kamailio.db" || { blog "kamailio schema failed"; exit 2; }
      sqlite3 "$TMP/kamailio.db" < "$TMP/kam.sql" || { blog "kamailio users failed"; exit 2; }
      # WAL, as voxgate's SQLite: with the default rollback journal the usrloc flush locks
      # the auth_db readers out ("database is locked") and REGISTERs fail
      sqlite3 "$TMP/kamailio.db" 'PRAGMA journal_mode=WAL;' > /dev/null
      sed -e "s/^listen=udp:127.0.0.1:5060$/listen=udp:127.0.0.1:$PORT/" \
          -e "s/^modparam(\"usrloc\", \"timer_interval\", 5)$/modparam(\"usrloc\", \"timer_interval\", $WRITE_BACK_S)/" \
          "$KAM_CFG" > "$TMP/kamailio.cfg"
      kamailio -f "$TMP/kamailio.cfg" -DD -E -m 1024 -M 8 $KAMAILIO_ARGS \
        -A "VG_DB=\"sqlite://$TMP/kamailio.db\"" \
        -P "$TMP/server.pid" -Y "$TMP" > "$TMP/server.log" 2>&1 &
      SERVER_PID=$! ;;
    voxgate)
      "$VOXGATE_BIN" subscriber --database "$TMP/voxgate.db" add bench-seed 127.0.0.1 seed \
        > /dev/null 2>&1 || { blog "voxgate subscriber add failed"; exit 2; }
      sqlite3 "$TMP/voxgate.db" < "$TMP/vox.sql" || { blog "voxgate users failed"; exit 2; }
      cat > "$TMP/voxgate.toml" <<CFG
# written by bench/registrar.sh: registrar with MD5 digest (SIPp knows MD5 only), SQLite
[[listen]]
proto = "udp"
addr = "127.0.0.1:$PORT"

[admin]
enabled = false

[log]
level = "warn"

[subscribers]
database = "sqlite://$TMP/voxgate.db"

[auth]
secret = "bench secret"
methods = ["REGISTER"]
algorithms = ["MD5"]
max_failures = 0

[registrar]
domains = ["127.0.0.1"]
write_behind_ms = $(( WRITE_BACK_S * 1000 ))
CFG
      "$VOXGATE_BIN" check --config "$TMP/voxgate.toml" > /dev/null 2> "$TMP/check.err" ||
        { blog "voxgate check failed:"; cat "$TMP/check.err" >&2; exit 2; }
      ( cd "$TMP" && exec "$VOXGATE_BIN" run --config "$TMP/voxgate.toml" ) > "$TMP/server.log" 2>&1 &
      SERVER_PID=$! ;;
    *) blog "unknown server $name"; exit 2 ;;
  esac
  for i in $(seq 100); do port_busy "$PORT" && break; sleep 0.1; done
  if ! port_busy "$PORT" || ! [ -d /proc/$SERVER_PID ]; then
    blog "$name did not start; log:"; tail -20 "$TMP/server.log" >&2; exit 2
  fi
  sleep 2
}

csv_last() {
  awk -F';' -v col="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i; next}
                         {v=$c} END{print (c? v : "NA")}' "$1" 2>/dev/null
}

# run_one SERVER RATE COUNT -> one summary line
run_one() {
  local server=$1 rate=$2 count=$3
  trap cleanup EXIT
  TMP=$(mktemp -d /tmp/vg-regbench.XXXXXX)
  make_users "$TMP"
  start_server "$server"
  local spids c0 c1 t0 t1 rc ok fail retr rows rss
  spids=$(tree_pids "$SERVER_PID")
  c0=$(ticks_of $spids); t0=$(date +%s.%N)
  timeout $(( count / rate + 60 )) sipp -sf "$SCEN_XML" -inf "$TMP/users.csv" \
    -i 127.0.0.1 -p "$SIPP_PORT" -r "$rate" -rp 1000 -m "$count" \
    -timeout $(( count / rate + 30 )) -timeout_error -recv_timeout 10000 -nostdin \
    -buff_size 1048576 -trace_stat -stf "$TMP/stat.csv" -fd 1 \
    -trace_err -error_file "$TMP/err.log" \
    "127.0.0.1:$PORT" > /dev/null 2> "$TMP/sipp.stderr"
  rc=$?
  t1=$(date +%s.%N)
  sleep "$SETTLE_S"
  # then until every binding is in the server's location table (Kamailio's usrloc timer may
  # still be flushing a large write-back: its CPU is only comparable once it has), at most
  # FLUSH_MAX_S more
  local want=$(( count < USERS ? count : USERS )) db have waited=0
  case "$server" in kamailio) db=$TMP/kamailio.db ;; *) db=$TMP/voxgate.db ;; esac
  while [ "$waited" -lt "$FLUSH_MAX_S" ]; do
    have=$(sqlite3 "$db" 'SELECT count(*) FROM location' 2>/dev/null || echo 0)
    [ "${have:-0}" -ge "$want" ] && break
    sleep 1; waited=$(( waited + 1 ))
  done
  spids=$(tree_pids "$SERVER_PID")
  c1=$(ticks_of $spids)
  rss=0
  for p in $spids; do rss=$(( rss + $(awk '/^VmRSS/{print $2}' /proc/$p/status 2>/dev/null || echo 0) )); done
  if [ "${THREADS:-0}" = 1 ]; then   # CPU ticks per thread name, to stderr
    for p in $spids; do
      for t in /proc/$p/task/*; do echo "$(cat "$t/comm") $(awk '{print $14+$15}' "$t/stat")"; done
    done | awk '{a[$1]+=$2} END{for (k in a) printf "  %s %s ticks\n", k, a[k]}' >&2
  fi
  ok=$(csv_last "$TMP/stat.csv" "SuccessfulCall(C)")
  fail=$(csv_last "$TMP/stat.csv" "FailedCall(C)")
  retr=$(csv_last "$TMP/stat.csv" "Retransmissions(C)")
  cleanup_server
  case "$server" in
    kamailio) rows=$(sqlite3 "$TMP/kamailio.db" 'SELECT count(*) FROM location' 2>/dev/null) ;;
    voxgate) rows=$(sqlite3 "$TMP/voxgate.db" 'SELECT count(*) FROM location' 2>/dev/null) ;;
  esac
  if [ "$rc" != 0 ] || [ "${fail:-1}" != 0 ]; then
    blog "$server: sipp rc=$rc, errors:"; head -c 1000 "$TMP/err.log" >&2 2>/dev/null; echo >&2
  fi
  awk -v s="$server" -v r="$rate" -v ok="$ok" -v f="$fail" -v x="$retr" -v dc="$(( c1 - c0 ))" \
      -v hz="$HZ" -v t0="$t0" -v t1="$t1" -v rc="$rc" -v rows="${rows:-NA}" -v rss="$rss" 'BEGIN {
    cpu = dc / hz; n = ok + 0; w = t1 - t0
    printf "server=%s rate=%s regs=%d failed=%s retrans=%s server_cpu_s=%.2f " \
           "cpu_us_per_reg=%.1f wall_s=%.1f achieved_rps=%.0f location_rows=%s rss_kb=%s sipp_rc=%s\n",
           s, r, n, f, x, cpu, (n > 0 ? cpu * 1e6 / n : 0), w, (w > 0 ? n / w : 0), rows, rss, rc
  }'
  if [ "${KEEP_TMP:-0}" = 1 ]; then blog "kept $TMP"; else rm -rf "$TMP"; fi
  TMP=""
}

cleanup_server() {
  local p pids
  if [ -n "$SERVER_PID" ]; then
    pids=$(tree_pids "$SERVER_PID")
    stop_pid "$SERVER_PID"
    for p in $pids; do stop_pid "$p"; done
    wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
  fi
}

for port in "$PORT" "$SIPP_PORT"; do
  if port_busy "$port"; then blog "127.0.0.1:$port/udp is busy"; exit 2; fi
done

RESULTS=$OUT/registrar-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  echo "# bench/registrar.sh $(date -u +%FT%TZ) host=$(hostname) cpus=$(nproc) kernel=$(uname -r)"
  echo "# RATES=\"$RATES\" DURATION_S=$DURATION_S USERS=$USERS REPEAT=$REPEAT KAMAILIO_ARGS=\"$KAMAILIO_ARGS\" voxgate=${VOXGATE_BIN:-NA}"
  echo "# git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RESULTS"
blog "raw lines -> $RESULTS"
for rep in $(seq "$REPEAT"); do
  for rate in $RATES; do
    for server in $SERVERS; do
      blog "round $rep/$REPEAT rate=$rate server=$server count=$(( rate * DURATION_S ))"
      line=$(run_one "$server" "$rate" $(( rate * DURATION_S )))
      echo "$line"
      echo "rep=$rep $line" >> "$RESULTS"
      sleep 1
    done
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS"

TABLE=$(grep '^rep=' "$RESULTS" | awk -v bar="$BAR" -v rates="$RATES" '
function med(key,   n, i, j, t, a) {
  n = cnt[key]; if (n == 0) return "NA"
  for (i = 1; i <= n; i++) a[i] = val[key, i]
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
  return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
{
  delete f
  for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  k = f["rate"] SUBSEP f["server"]
  if (f["regs"] > 0) { cnt[k]++; val[k, cnt[k]] = f["cpu_us_per_reg"] + 0 }
  if (f["failed"] != "0" || f["sipp_rc"] != "0") bad[k] = 1
  runs[k]++; regs[k] += f["regs"]; failed[k] += f["failed"]; retr[k] += f["retrans"]
}
END {
  nr = split(rates, R, " "); allpass = 1
  printf "%-6s %-9s %4s %8s %6s %7s %10s\n", "rate", "server", "runs", "regs", "failed", "retrans", "cpu_us/reg"
  for (r = 1; r <= nr; r++) {
    split("kamailio voxgate", S, " ")
    for (s = 1; s <= 2; s++) {
      k = R[r] SUBSEP S[s]; m = med(k)
      printf "%-6s %-9s %4d %8d %6s %7s %10s%s\n", R[r], S[s], runs[k], regs[k], failed[k], retr[k], (m == "NA" ? m : sprintf("%.1f", m)), (bad[k] ? "  (not clean)" : "")
    }
    v = med(R[r] SUBSEP "voxgate"); km = med(R[r] SUBSEP "kamailio")
    if (v == "NA" || km == "NA" || km <= 0) { printf "rate %s: ratio NA -> FAIL\n\n", R[r]; allpass = 0; continue }
    ratio = v / km; ok = (ratio <= bar + 0 && !bad[R[r] SUBSEP "voxgate"])
    if (!ok) allpass = 0
    printf "rate %s: voxgate/kamailio CPU per registration = %.2f (bar %s) -> %s\n\n", R[r], ratio, bar, ok ? "PASS" : "FAIL"
  }
  print (allpass ? "RESULT: PASS" : "RESULT: FAIL")
}')
echo
echo "$TABLE"
echo "$TABLE" | sed 's/^/# /' >> "$RESULTS"
blog "saved in $RESULTS"
echo "$TABLE" | tail -1 | grep -q PASS
