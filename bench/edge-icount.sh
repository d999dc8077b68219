#!/usr/bin/env bash
# bench/edge-icount.sh -- the user-space instructions a proxied call costs with and without
# the edge policy, counted by callgrind (deterministic, unlike CPU time on a shared machine).
#
# For each variant of bench/edge.sh (bare, edge, edge-untrusted; the configs it writes, so
# run bench/edge.sh once first, or set OUT_DIR to where they are), the release node runs
# under valgrind --tool=callgrind twice: idle for as long as a run takes, then with CALLS
# full calls (the shared driver's SIPp UAC/UAS scenarios, HOLD_MS hold, RATE calls/s).
# Instructions per call = (Ir with calls - Ir idle) / CALLS, so start-up (config build, the
# scanner's regex compile) and the once-a-second housekeeping cancel out. The kernel's share
# (datagrams, wake-ups) is the same for every variant by construction (same messages), so
# the user-space ratio bounds the CPU ratio from above.
#
# Environment: CALLS=400 RATE=40 HOLD_MS=200 VARIANTS="bare edge edge-untrusted",
#   VOXGATE_BIN (default: the release binary of CARGO_TARGET_DIR), OUT_DIR (bench/out).
# Uses 127.0.0.1:5060 (node), :5080 (UAS), :5090 (UAC); stops every process it starts.
set -u
SCENARIO=proxy
. "$(dirname "$0")/lib.sh"
CALLS=${CALLS:-400}
RATE=${RATE:-40}
HOLD_MS=${HOLD_MS:-200}
VARIANTS=${VARIANTS:-"bare edge edge-untrusted"}
require_shared
for t in valgrind callgrind_annotate sipp; do
    command -v "$t" >/dev/null 2>&1 || { blog "SKIP: $t not installed (apt-get install valgrind sip-tester)"; exit 0; }
done
build_voxgate
UAS_SF=$SHARED/bench/sipp-uas-call.xml
UAC_SF=$SHARED/bench/sipp-uac-call.xml
WORK=$(mktemp -d /tmp/voxgate-icount.XXXXXX)
NODE= UAS=
cleanup() {
    [ -n "$NODE" ] && kill "$NODE" 2>/dev/null
    [ -n "$UAS" ] && kill "$UAS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

config_of() {
    case $1 in
        bare) echo "$OUT/voxgate-bench.toml" ;;
        *) echo "$OUT/voxgate-$1.toml" ;;
    esac
}

# ir VARIANT CALLS -> total instructions of a node run
ir() {
    local v=$1 n=$2 cfg out
    cfg=$(config_of "$v")
    [ -f "$cfg" ] || { blog "no $cfg: run bench/edge.sh first"; exit 2; }
    out=$WORK/cg-$v-$n.out
    valgrind --tool=callgrind --callgrind-out-file="$out" "$VOXGATE_BIN" run --config "$cfg" \
        2> "$WORK/node-$v-$n.log" &
    NODE=$!
    for _ in $(seq 120); do grep -q "node .* up" "$WORK/node-$v-$n.log" && break; sleep 0.5; done
    sipp -sf "$UAS_SF" -i 127.0.0.1 -p 5080 -nostdin > /dev/null 2>&1 &
    UAS=$!
    sleep 0.5
    local secs=$(( n / RATE + 3 ))
    if [ "$n" -gt 0 ]; then
        sipp -sf "$UAC_SF" -i 127.0.0.1 -p 5090 -r "$RATE" -m "$n" -d "$HOLD_MS" -nostdin \
            -timeout 120 -timeout_error 127.0.0.1:5060 > "$WORK/uac-$v.out" 2>&1 ||
            blog "sipp failed for $v: $(grep -E 'Failed call' "$WORK/uac-$v.out" | tail -1)"
        sleep 2
    else
        sleep "$secs"
    fi
    kill -INT "$NODE"; wait "$NODE" 2>/dev/null; NODE=
    kill "$UAS" 2>/dev/null; wait "$UAS" 2>/dev/null; UAS=
    sleep 1
    sed -n 's/^summary: *//p' "$out" | head -1
}

printf "%-15s %12s %14s %10s %7s\n" variant idle_Ir calls_Ir Ir/call ratio
base=
for v in $VARIANTS; do
    idle=$(ir "$v" 0)
    busy=$(ir "$v" "$CALLS")
    per=$(( (busy - idle) / CALLS ))
    [ -z "$base" ] && base=$per
    printf "%-15s %12s %14s %10s %7s\n" "$v" "$idle" "$busy" "$per" "$(awk -v a="$per" -v b="$base" 'BEGIN{printf "%.3f", a/b}')"
done
