#!/usr/bin/env bash
# bench/routing.sh -- issue 7's routing benchmark: full proxied calls (the shared driver's
# proxy scenario, SIPp UAC -> voxgate -> SIPp UAS on 127.0.0.1:5080) through
#   bare     the bare proxy config of bench/lib.sh (one upstream, no routing), and
#   routing  a routing table of 100,000 prefixes over 50 carriers (100 gateways), a
#            dialplan translation and a cached portability look-up (a private redis-server)
#            on every call,
# alternating, at the same rate and count; then the reload time of that table (SIGHUP) and
# calls during reloads.
#
# Usage: bench/routing.sh
# Environment:
#   RATE=500 COUNT=(rate*15) REPEAT=3   as bench/run.sh
#   RELOADS=3                           SIGHUPs sent during the reload run
#   plus bench/lib.sh's (VOXGATE_BIN, SKIP_BUILD, SHARED_DIR, OUT_DIR)
# Output: one driver line per run, a table (median CPU µs per call, ratio routing/bare, the
# issue's bar 1.20), reload times, and failed calls during reloads. Exit 0 when the ratio is
# within the bar and no call failed.
set -u -o pipefail
SCENARIO=proxy
. "$(dirname "$0")/lib.sh"

RATE=${RATE:-500}
COUNT=${COUNT:-$(( RATE * 15 ))}
REPEAT=${REPEAT:-3}
RELOADS=${RELOADS:-3}
PREFIXES=${PREFIXES:-100000}
CARRIERS=${CARRIERS:-50}
BAR=${BAR:-1.20}

require_shared
command -v sipp >/dev/null 2>&1 || { blog "sipp missing (apt-get install sip-tester)"; exit 2; }
command -v redis-server >/dev/null 2>&1 || { blog "redis-server missing (apt-get install redis-server)"; exit 2; }
command -v python3 >/dev/null 2>&1 || { blog "python3 missing"; exit 2; }
build_voxgate
write_voxgate_config
BARE_CFG=$VOX_CFG
mkdir -p "$OUT"

# ---------------------------------------------------------------- a private redis-server
REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REDIS_DIR=$(mktemp -d)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$REDIS_DIR" \
  >/dev/null 2>&1 &
REDIS_PID=$!
cleanup() { kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; rm -rf "$REDIS_DIR"; }
trap cleanup EXIT
for i in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/"$REDIS_PORT") 2>/dev/null && break; sleep 0.1
done
# the called number (SIPp's [service] "service", translated by the dialplan) is ported
NUMBER="+135000123456"
RN="+135000999"
printf 'SET np:%s %s\r\nQUIT\r\n' "$NUMBER" "$RN" | (exec 3<>/dev/tcp/127.0.0.1/"$REDIS_PORT"; cat >&3; timeout 2 cat <&3) >/dev/null

# ---------------------------------------------------------------- the routing config
ROUTE_CFG=$OUT/voxgate-routing.toml
python3 - "$BARE_CFG" "$ROUTE_CFG" "$PREFIXES" "$CARRIERS" "$REDIS_PORT" <<'PY'
import sys
bare, out, n, carriers, rport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
text = open(bare).read()
# the bare proxy's upstream goes: calls are routed by the tables
text = text.split("[[proxy.upstreams]]")[0]
tables_path = out.replace(".toml", "-tables.toml")
main = [text, "\n[drouting]\ndefault_group = 0\n"]
w = ["# the routing tables of bench/routing.sh ([route] tables of %s)\n[drouting]\n" % out]
for i in range(2 * carriers):
    # every gateway is the driver's UAS; strip/prefix vary
    w.append(f'[[drouting.gateways]]\nid = "g{i}"\naddress = "127.0.0.1:5080"\nstrip = {i % 3}\nprefix = "{"00" if i % 2 else ""}"\n')
for c in range(carriers):
    w.append(f'[[drouting.carriers]]\nid = "c{c}"\ngateways = ["g{2*c}", "g{2*c+1}"]\n')
for i in range(n):
    w.append(f'[[drouting.rules]]\nid = "r{i}"\ngroups = [0]\nprefix = "+{100000 + i * 7}"\ntargets = ["#c{i % carriers}", "#c{(i + 9) % carriers}"]\n')
open(tables_path, "w").write("".join(w))
w = main
w.append('''
[[dialplan.rules]]
dpid = 1
id = "national"
priority = 10
match_op = "regex"
match_exp = "^0[1-9]"
subst_exp = "^0(.*)$"
repl_exp = "+44\\\\1"

[[dialplan.rules]]
dpid = 1
id = "bench-service"
priority = 20
match_op = "regex"
match_exp = "^service$"
subst_exp = "^service$"
repl_exp = "+135000123456"

[clip]
clir_prefixes = ["#31#"]

[portability]
positive_ttl_secs = 3600
[[portability.sources]]
name = "redis"
kind = "redis"
uri = "redis://127.0.0.1:%s"
key = "np:"
timeout_ms = 200

[route]
probe_interval_secs = 0
tables = "%s"
''' % (rport, tables_path.rsplit("/", 1)[-1]))
open(out, "w").write("".join(w))
PY
# info level: the reload log line carries its duration
sed -i 's/^level = "warn"/level = "info"/' "$ROUTE_CFG"
"$VOXGATE_BIN" check --config "$ROUTE_CFG" >/dev/null || { blog "routing config refused"; exit 2; }
blog "routing config: $ROUTE_CFG ($(wc -c < "$ROUTE_CFG") bytes, $PREFIXES prefixes, $CARRIERS carriers)"
"$VOXGATE_BIN" route explain --config "$ROUTE_CFG" --to service | head -20 >&2

# the shared driver's ports are fixed: wait (bounded) while another benchmark holds 5060
wait_5060() {
  for i in $(seq 600); do
    ss -lun 2>/dev/null | grep -q '127.0.0.1:5060 ' || return 0
    sleep 0.5
  done
  blog "127.0.0.1:5060 still taken after 300 s"
}

RESULTS=$OUT/routing-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  echo "# bench/routing.sh $(date -u +%FT%TZ) host=$(hostname) cpus=$(nproc) rate=$RATE count=$COUNT repeat=$REPEAT prefixes=$PREFIXES carriers=$CARRIERS"
  echo "# git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)"
} > "$RESULTS"

for rep in $(seq "$REPEAT"); do
  for mode in bare routing; do
    if [ $mode = bare ]; then VOX_CFG=$BARE_CFG; else VOX_CFG=$ROUTE_CFG; fi
    blog "round $rep/$REPEAT $mode rate=$RATE count=$COUNT"
    wait_5060
    line=$(run_one voxgate "$RATE" "$COUNT")
    echo "mode=$mode $line"
    echo "rep=$rep mode=$mode $line" >> "$RESULTS"
    sleep 1
  done
done

# ---------------------------------------------------------------- reload time
# the node on another port, alone: SIGHUP RELOADS times, durations from its log
RL_CFG=$OUT/voxgate-routing-reload.toml
sed 's/127.0.0.1:5060/127.0.0.1:5077/' "$ROUTE_CFG" > "$RL_CFG"
RL_LOG=$OUT/reload.log
t0=$(date +%s.%N)
"$VOXGATE_BIN" run --config "$RL_CFG" 2> "$RL_LOG" &
VPID=$!
for i in $(seq 300); do grep -q "node .* up" "$RL_LOG" && break; sleep 0.1; done
t1=$(date +%s.%N)
blog "start with the table: $(awk "BEGIN{print $t1 - $t0}") s"
for i in $(seq "$RELOADS"); do
  kill -HUP "$VPID"
  for j in $(seq 100); do [ "$(grep -c 'routing tables reloaded' "$RL_LOG")" -ge "$i" ] && break; sleep 0.1; done
done
kill "$VPID"; wait "$VPID" 2>/dev/null
grep -o 'routing tables reloaded.*' "$RL_LOG" | tee -a "$RESULTS" >&2

# ---------------------------------------------------------------- calls during reloads
VOX_CFG=$ROUTE_CFG
wait_5060
( sleep 3
  for i in $(seq "$RELOADS"); do
    p=$(pgrep -f -n "run --config $ROUTE_CFG") && kill -HUP "$p"
    sleep 3
  done ) &
HUPPER=$!
line=$(run_one voxgate "$RATE" "$COUNT")
wait "$HUPPER" 2>/dev/null
echo "mode=reloading $line"
echo "rep=1 mode=reloading $line" >> "$RESULTS"

# ---------------------------------------------------------------- table
grep '^rep=' "$RESULTS" | awk -v bar="$BAR" '
function med(m,   n, i, j, t, a) {
  n = cnt[m]; if (n == 0) return 0
  for (i = 1; i <= n; i++) a[i] = v[m, i]
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
  return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
{ delete f; for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  m = f["mode"]; if (f["calls"] + 0 == 0) next
  cnt[m]++; v[m, cnt[m]] = f["cpu_us_per_call"]; failed[m] += f["failed"] }
END {
  b = med("bare"); r = med("routing")
  printf "| mode | CPU µs/call (median) | failed |\n|---|---|---|\n"
  printf "| bare proxy | %.1f | %d |\n| routing (100k prefixes, dialplan, cached NP) | %.1f | %d |\n", b, failed["bare"], r, failed["routing"]
  printf "| calls during %s reloads | %.1f | %d |\n", "SIGHUP", med("reloading"), failed["reloading"]
  ratio = (b > 0) ? r / b : 0
  ok = (b > 0 && r > 0 && ratio <= bar && failed["reloading"] == 0 && failed["routing"] == 0)
  printf "ratio routing/bare = %.3f (bar %.2f): %s\n", ratio, bar, ok ? "PASS" : "FAIL (or no measurement: see the driver lines)"
  exit !ok
}' | tee -a "$RESULTS"
