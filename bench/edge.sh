#!/usr/bin/env bash
# bench/edge.sh -- what the edge security policy costs per call: the proxied-call scenario of
# bench/run.sh (SCENARIO=proxy: INVITE/100/180/200/ACK/hold/BYE/200 from the shared driver's
# SIPp UAC through voxgate to its SIPp UAS) run against the same release binary three ways:
#
#   bare            the [proxy] config of bench/lib.sh, no [security]
#   edge            + [security]: ACL (the caller a trusted peer, customer "bench"), pike,
#                   scanner matcher, brute-force defence, two rate-limit pipes (per customer,
#                   per source), two concurrent-call limits (per customer, per source), a
#                   fraud profile for the customer; on a trusted peer the engine skips pike,
#                   scanner and brute force, and runs the customer's pipes, fraud and limits
#   edge-untrusted  the same, but the caller is not a trusted peer: ACL, pike, scanner and
#                   brute force on every request, the per-source pipe and limit on calls
#
# Every limit is far above the offered load (nothing is refused: the cost measured is that of
# checking). CPU per call comes from the shared driver (utime+stime of the node from /proc);
# the ratio is edge / bare (target <= 1.3). Variants alternate within each round.
#
# Usage: bench/edge.sh
# Environment: RATE=500, COUNT (default RATE*10), REPEAT=3 (median shown), SETTLE_S=10,
#   BAR=1.3, VARIANTS="bare edge edge-untrusted", plus bench/lib.sh's VOXGATE_BIN,
#   SKIP_BUILD, CARGO_TARGET_DIR, SHARED_DIR, OUT_DIR.
# Exit: 0 when every edge variant is within BAR, 1 when one is not, 2 on a set-up error.
set -u
SCENARIO=proxy
. "$(dirname "$0")/lib.sh"

RATE=${RATE:-500}
COUNT=${COUNT:-$((RATE * 10))}
REPEAT=${REPEAT:-3}
BAR=${BAR:-1.3}
VARIANTS=${VARIANTS:-"bare edge edge-untrusted"}
export SETTLE_S=${SETTLE_S:-10}

require_shared
command -v sipp >/dev/null 2>&1 || { blog "SKIP: sipp not installed (apt-get install sip-tester)"; exit 0; }
build_voxgate
write_voxgate_config
BARE_CFG=$VOX_CFG

security_common() {
    cat <<'CFG'

[security.pike]
sampling_time_unit_secs = 2
reqs_density_per_unit = 100000

[security.scanner]
ban_ttl_secs = 3600

[security.bruteforce]
max_failures_per_ip = 10

[security.ratelimit]
reply = "503"
[[security.ratelimit.pipes]]
name = "invite-per-customer"
key = "customer"
methods = ["INVITE"]
limit = 100000
[[security.ratelimit.pipes]]
name = "per-source"
key = "source_ip"
limit = 100000
algorithm = "token_bucket"

[security.concurrency]
reply = "486"
[[security.concurrency.limits]]
name = "channels-per-customer"
key = "customer"
max = 100000
[[security.concurrency.limits]]
name = "channels-per-source"
key = "source_ip"
max = 100000

[security.fraud]
default_profile = "standard"
[[security.fraud.profiles]]
name = "standard"
[[security.fraud.profiles.rules]]
id = 1
prefix = "900"
cpm = { warning = 100000, critical = 200000 }
concurrent_calls = { warning = 100000, critical = 200000 }
[[security.fraud.profiles.rules]]
id = 2
prefix = "00"
cpm = { warning = 100000, critical = 200000 }
CFG
}

EDGE_CFG=$OUT/voxgate-edge.toml
{
    cat "$BARE_CFG"
    echo
    echo "[security]"
    echo 'emergency_numbers = ["112", "911"]'
    echo "[security.acl]"
    echo 'default_action = "allow"'
    echo "[[security.acl.rules]]"
    echo 'cidr = "127.0.0.1/32"'
    echo 'context = "bench"'
    echo "trusted = true"
    echo "[[security.acl.rules]]"
    echo 'cidr = "198.51.100.66"'
    echo 'action = "deny"'
    security_common
} > "$EDGE_CFG"

UNTRUSTED_CFG=$OUT/voxgate-edge-untrusted.toml
{
    cat "$BARE_CFG"
    echo
    echo "[security]"
    echo 'emergency_numbers = ["112", "911"]'
    echo "[security.acl]"
    echo 'default_action = "allow"'
    echo "[[security.acl.rules]]"
    echo 'cidr = "198.51.100.66"'
    echo 'action = "deny"'
    security_common
} > "$UNTRUSTED_CFG"

for c in "$EDGE_CFG" "$UNTRUSTED_CFG"; do
    "$VOXGATE_BIN" check --config "$c" >/dev/null 2>"$OUT/voxgate-check.err" ||
        { blog "voxgate check --config $c failed:"; cat "$OUT/voxgate-check.err" >&2; exit 2; }
done

VOX_VERSION=$("$VOXGATE_BIN" --version 2>/dev/null | awk '{print $NF; exit}')
RESULTS=$OUT/edge-$(date -u +%Y%m%dT%H%M%SZ).txt
{
    echo "# bench/edge.sh $(date -u +%FT%TZ) host=$(hostname) cpus=$(nproc) kernel=$(uname -r)"
    echo "# RATE=$RATE COUNT=$COUNT REPEAT=$REPEAT SETTLE_S=$SETTLE_S voxgate=$VOXGATE_BIN"
    echo "# git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)"
    echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RESULTS"
blog "raw lines -> $RESULTS"

for rep in $(seq "$REPEAT"); do
    for v in $VARIANTS; do
        case $v in
            bare) cfg=$BARE_CFG ;;
            edge) cfg=$EDGE_CFG ;;
            edge-untrusted) cfg=$UNTRUSTED_CFG ;;
            *) blog "unknown variant $v"; exit 2 ;;
        esac
        blog "round $rep/$REPEAT variant=$v rate=$RATE count=$COUNT"
        line=$(SERVER_CMD="$VOXGATE_BIN run --config $cfg" SERVER_NAME="voxgate-$v" \
            SERVER_VERSION="${VOX_VERSION:-NA}" bash "$DRIVER" custom proxy "$RATE" "$COUNT")
        [ -n "$line" ] || line="server=voxgate-$v calls=0 error=driver_failed"
        echo "$line"
        echo "rep=$rep variant=$v $line" >> "$RESULTS"
        sleep 1
    done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS"

grep '^rep=' "$RESULTS" | awk -v bar="$BAR" -v variants="$VARIANTS" '
function med(v,   n, i, j, t, a) {
    n = cnt[v]; if (n == 0) return "NA"
    for (i = 1; i <= n; i++) a[i] = val[v, i]
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
    return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
{
    delete f
    for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    v = f["variant"]
    if (f["error"] == "" && f["calls"] > 0) { cnt[v]++; val[v, cnt[v]] = f["cpu_us_per_call"] + 0 }
    calls[v] += f["calls"]; failed[v] += f["failed"]; retr[v] += f["retrans"]
}
END {
    n = split(variants, V, " "); base = med("bare"); ok = 1
    printf "%-15s %4s %8s %7s %8s %12s %7s\n", "variant", "runs", "calls", "failed", "retrans", "cpu_us/call", "ratio"
    for (i = 1; i <= n; i++) {
        v = V[i]; m = med(v)
        r = (base != "NA" && base > 0 && m != "NA") ? sprintf("%.2f", m / base) : "NA"
        printf "%-15s %4d %8d %7d %8d %12s %7s\n", v, cnt[v], calls[v], failed[v], retr[v], m, r
        if (v != "bare" && (r == "NA" || r + 0 > bar + 0)) ok = 0
    }
    printf "bar: edge / bare <= %s: %s\n", bar, ok ? "PASS" : "FAIL"
    exit ok ? 0 : 1
}' | tee -a "$RESULTS"
exit "${PIPESTATUS[1]}"
