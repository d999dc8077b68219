#!/usr/bin/env bash
# bench/run.sh -- the INVITE-404 benchmark (or, with SCENARIO=proxy, full proxied calls): voxgate against Kamailio (-x tlsf) and the floor
# responder (../shared/bench/floor404.c), in one sequence, at the same rates and call counts,
# on loopback only, through the shared driver ../shared/bench/run-peer-bench.sh.
#
# Usage: bench/run.sh            (see bench/README.md)
# Environment:
#   RATES="2000 10000"   offered rates, calls/s
#   COUNT                calls per run (default: 15 s worth, rate*15)
#   REPEAT=1             runs per (rate, server); the table shows the median when > 1
#   SERVERS="floor kamailio voxgate"   order within a round (rounds alternate the servers)
#   TABLE_FROM=FILE      print the table of an earlier results file, run nothing
#   BAR=0.3              pass when (voxgate-floor)/(kamailio-floor) <= BAR at every rate
#   plus those of bench/lib.sh (VOXGATE_BIN, SKIP_BUILD, SHARED_DIR, OUT_DIR, KAMAILIO_ARGS...)
# Exit status: 0 when every rate passes, 1 when one fails, 2 on a set-up error.
set -u
. "$(dirname "$0")/lib.sh"

# SCENARIO=proxy (bench/lib.sh): full proxied calls at 500 calls/s by default; the floor is
# bench/floor-relay.c (a stateless relay sending the same datagrams). The table's ratio is
# above the floor (bar 0.4); RAW_RATIO lines give voxgate/kamailio CPU per call as well.
# FLOOR_ZERO=1 SERVERS="kamailio voxgate" compares raw CPU only.
if [ "$SCENARIO" = proxy ]; then
  RATES=${RATES:-"500"}
  SERVERS=${SERVERS:-"floor kamailio voxgate"}
  BAR=${BAR:-0.4}
  FLOOR_ZERO=${FLOOR_ZERO:-0}
else
  FLOOR_ZERO=0
fi
RATES=${RATES:-"2000 10000"}
REPEAT=${REPEAT:-1}
SERVERS=${SERVERS:-"floor kamailio voxgate"}
BAR=${BAR:-0.3}

if [ -n "${TABLE_FROM:-}" ]; then
  RESULTS=$TABLE_FROM   # only print the table of an earlier results file
else
require_shared
ensure_tools
build_floor
case " $SERVERS " in *" voxgate "*) build_voxgate; write_voxgate_config ;; esac

mkdir -p "$OUT"
RESULTS=$OUT/results-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  echo "# bench/run.sh $(date -u +%FT%TZ) host=$(hostname) cpus=$(nproc) kernel=$(uname -r)"
  echo "# RATES=\"$RATES\" REPEAT=$REPEAT SERVERS=\"$SERVERS\" KAMAILIO_ARGS=\"$KAMAILIO_ARGS\" voxgate=${VOXGATE_BIN:-NA}"
  echo "# git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo -dirty)"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RESULTS"
blog "raw lines -> $RESULTS"

for rep in $(seq "$REPEAT"); do
  for rate in $RATES; do
    count=${COUNT:-$(( rate * 15 ))}
    for server in $SERVERS; do
      blog "round $rep/$REPEAT rate=$rate count=$count server=$server"
      line=$(run_one "$server" "$rate" "$count")
      echo "$line"
      echo "rep=$rep $line" >> "$RESULTS"
      sleep 1
    done
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS"
fi

# ------------------------------------------------------------------ table
TABLE=$(grep '^rep=' "$RESULTS" | awk -v bar="$BAR" -v rates="$RATES" -v servers="$SERVERS" -v flzero="$FLOOR_ZERO" '
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
  if (f["error"] == "" && f["calls"] > 0) { cnt[k]++; val[k, cnt[k]] = f["cpu_us_per_call"] + 0;
    scnt[k]++; sval[k, scnt[k]] = f["sched_us_per_call"] + 0 }
  runs[k]++; calls[k] += f["calls"]; failed[k] += f["failed"]; retr[k] += f["retrans"]
  dsrv[k] += f["udp_drops_server"]; duac[k] += f["udp_drops_uac"]
  if (f["error"] != "" || f["failed"] != "0" || f["retrans"] != "0" || f["sipp_rc"] != "0") bad[k] = 1
}
function why(k,   w) {
  w = ""
  if (failed[k] + 0) w = w " failed"
  if (retr[k] + 0) w = w " retrans"
  if (dsrv[k] + 0) w = w " server-socket-drops"
  if (duac[k] + 0) w = w " sipp-socket-drops"
  if (w == "") w = " error"
  return substr(w, 2)
}
function smed(key,   n, i, j, t, a) {
  n = scnt[key]; if (n == 0) return "NA"
  for (i = 1; i <= n; i++) a[i] = sval[key, i]
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
  return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
END {
  nr = split(rates, R, " "); ns = split(servers, S, " "); allpass = 1
  printf "%-7s %-9s %4s %9s %6s %7s %9s %9s %11s %9s %9s\n", "rate", "server", "runs", "calls", "failed", "retrans", "drops_srv", "drops_uac", "cpu_us/call", "above_flr", "sched_us"
  for (r = 1; r <= nr; r++) {
    rate = R[r]; fl = (flzero == 1) ? 0 : med(rate SUBSEP "floor")
    for (s = 1; s <= ns; s++) {
      k = rate SUBSEP S[s]; m = med(k); sm = smed(k)
      af = (m != "NA" && fl != "NA") ? sprintf("%.1f", m - fl) : "NA"
      printf "%-7s %-9s %4d %9d %6s %7s %9s %9s %11s %9s %9s%s\n", rate, S[s], runs[k], calls[k], failed[k], retr[k], dsrv[k], duac[k], (m == "NA" ? m : sprintf("%.1f", m)), af, (sm == "NA" ? sm : sprintf("%.1f", sm)), (bad[k] ? "  (" why(k) ")" : "")
    }
    v = med(rate SUBSEP "voxgate"); km = med(rate SUBSEP "kamailio")
    if (v == "NA" || km == "NA" || fl == "NA") {
      printf "rate %s: ratio (voxgate-floor)/(kamailio-floor) = NA -> FAIL (missing run)\n\n", rate; allpass = 0; continue
    }
    if (km - fl <= 0) { printf "rate %s: kamailio not above the floor; ratio undefined -> FAIL\n\n", rate; allpass = 0; continue }
    ratio = (v - fl) / (km - fl)
    ok = (ratio <= bar + 0 && !bad[rate SUBSEP "voxgate"])
    if (!ok) allpass = 0
    if (km > 0) printf "rate %s: raw CPU per call voxgate/kamailio = %.1f/%.1f = %.2f\n", rate, v, km, v / km
    printf "rate %s: voxgate %.1f above floor, kamailio %.1f above floor, ratio %.2f (bar %s) -> %s%s\n\n", rate, v - fl, km - fl, ratio, bar, ok ? "PASS" : "FAIL", bad[rate SUBSEP "voxgate"] ? " (voxgate run not clean: " why(rate SUBSEP "voxgate") ")" : ""
  }
  print (allpass ? "RESULT: PASS" : "RESULT: FAIL")
}')
echo
echo "$TABLE"
if [ -z "${TABLE_FROM:-}" ]; then
  echo "$TABLE" | sed 's/^/# /' >> "$RESULTS"
  blog "raw lines and table saved in $RESULTS"
fi
echo "$TABLE" | tail -1 | grep -q PASS
