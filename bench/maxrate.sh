#!/usr/bin/env bash
# bench/maxrate.sh -- the highest clean rate of each server in the INVITE-404 scenario.
#
# Clean = RUNS (3) consecutive runs of DURATION_S (20) seconds at that rate with every call
# completed, no failed call, no retransmission, no timeout, SIPp exiting 0 and SIPp achieving at
# least MIN_ACHIEVED (90 %) of the offered rate. Rates are stepped up (STEPS); a server leaves the race at its
# first unclean run, and the script prints, for that run, which UDP socket dropped packets:
# udp_drops_server (the server's socket on 5060) or udp_drops_uac (SIPp's own socket), so the
# note can say which side saturates first. Servers are run one after the other at each step, in
# one sequence, so they see the same machine.
#
# Usage: bench/maxrate.sh [SERVER...]        (default: kamailio voxgate; also: floor)
# Environment:
#   STEPS="8000 12000 16000 20000 24000"  rates tried, ascending
#   DURATION_S=20  RUNS=3
#   MIN_ACHIEVED=0.90  SIPp must achieve this share of the offered rate (its wall time includes
#                      start-up and the last replies, and SIPp itself is starved on a busy machine)
#   MAX_TOTAL_S=1800   time bound for the whole script (stops before a run would exceed it)
#   plus those of bench/lib.sh (VOXGATE_BIN, SKIP_BUILD, SHARED_DIR, OUT_DIR, KAMAILIO_ARGS...)
set -u
. "$(dirname "$0")/lib.sh"

SERVERS=${*:-${SERVERS:-"kamailio voxgate"}}
STEPS=${STEPS:-"8000 12000 16000 20000 24000"}
DURATION_S=${DURATION_S:-20}
RUNS=${RUNS:-3}
MAX_TOTAL_S=${MAX_TOTAL_S:-1800}
MIN_ACHIEVED=${MIN_ACHIEVED:-0.90}

require_shared
ensure_tools
case " $SERVERS " in *" floor "*) build_floor ;; esac
case " $SERVERS " in *" voxgate "*) build_voxgate; write_voxgate_config ;; esac

mkdir -p "$OUT"
RESULTS=$OUT/maxrate-$(date -u +%Y%m%dT%H%M%SZ).txt
echo "# bench/maxrate.sh $(date -u +%FT%TZ) cpus=$(nproc) SERVERS=\"$SERVERS\" STEPS=\"$STEPS\" DURATION_S=$DURATION_S RUNS=$RUNS KAMAILIO_ARGS=\"$KAMAILIO_ARGS\"" > "$RESULTS"
START=$(date +%s)
declare -A BEST STOPPED WHY
for s in $SERVERS; do BEST[$s]=0; STOPPED[$s]=0; WHY[$s]="not stopped (highest step clean, or time bound)"; done
TIMED_OUT=0

for rate in $STEPS; do
  count=$(( rate * DURATION_S ))
  for s in $SERVERS; do
    [ "${STOPPED[$s]}" = 1 ] && continue
    clean=1
    for run in $(seq "$RUNS"); do
      if [ $(( $(date +%s) - START + DURATION_S + 15 )) -gt "$MAX_TOTAL_S" ]; then
        blog "time bound MAX_TOTAL_S=$MAX_TOTAL_S reached"; TIMED_OUT=1; break 3
      fi
      blog "server=$s rate=$rate run $run/$RUNS count=$count"
      line=$(run_one "$s" "$rate" "$count")
      echo "$line"; echo "$line" >> "$RESULTS"
      calls=$(field calls "$line"); failed=$(field failed "$line"); retr=$(field retrans "$line")
      tmo=$(field timeouts "$line"); rc=$(field sipp_rc "$line"); ach=$(field achieved_cps "$line")
      dsrv=$(field udp_drops_server "$line"); duac=$(field udp_drops_uac "$line")
      reasons=""
      [ "$calls" = "$count" ] || reasons+=" calls=$calls/$count"
      [ "$failed" = 0 ] || reasons+=" failed=$failed"
      [ "$retr" = 0 ] || reasons+=" retrans=$retr"
      [ "${tmo:-0}" = 0 ] || reasons+=" timeouts=$tmo"
      [ "$rc" = 0 ] || reasons+=" sipp_rc=$rc"
      awk -v a="${ach:-0}" -v r="$rate" -v m="$MIN_ACHIEVED" 'BEGIN{exit !(a >= m * r)}' ||
        reasons+=" achieved_cps=$ach"
      echo "  drops: udp_drops_server=$dsrv udp_drops_uac=$duac" >&2
      if [ -n "$reasons" ]; then
        side="neither socket dropped"
        if [ "${dsrv:-0}" != 0 ] && [ "${duac:-0}" != 0 ]; then side="both sockets dropped (server $dsrv, SIPp UAC $duac)"
        elif [ "${dsrv:-0}" != 0 ]; then side="the SERVER's socket dropped ($dsrv)"
        elif [ "${duac:-0}" != 0 ]; then side="SIPp's own UAC socket dropped ($duac)"; fi
        WHY[$s]="unclean at $rate (run $run):$reasons; $side"
        STOPPED[$s]=1; clean=0
        blog "server=$s unclean at rate=$rate:$reasons; $side"
        break
      fi
    done
    [ "$clean" = 1 ] && BEST[$s]=$rate
  done
done

{
  echo
  printf "%-9s %16s  %s\n" server max_clean_cps "first unclean run / why"
  for s in $SERVERS; do
    printf "%-9s %16s  %s\n" "$s" "${BEST[$s]}" "${WHY[$s]}"
  done
  [ "$TIMED_OUT" = 1 ] && echo "(stopped by the time bound MAX_TOTAL_S=$MAX_TOTAL_S)"
  echo "clean = $RUNS consecutive ${DURATION_S}s runs: all calls, no failure, no retransmission, no timeout, >=${MIN_ACHIEVED} of the rate achieved"
} | tee -a "$RESULTS"
blog "saved in $RESULTS"
