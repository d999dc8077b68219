#!/usr/bin/env bash
# sip-wire vs rsip 0.4: instructions per message (callgrind) and wall time (criterion).
#
#   bench/parser/run.sh            # instruction table, then a short criterion run
#   NO_CRITERION=1 bench/parser/run.sh
#   MSGS="sipp carrier phone all" bench/parser/run.sh
#
# Instructions per iteration = (I(N=1001) - I(N=1)) / 1000: the difference removes process
# start-up, first-touch page faults and lazy initialisation. Counts are deterministic to a few
# instructions, so they are comparable on a busy, shared machine, unlike wall time.
# Plain callgrind rather than gungraun/iai-callgrind: those need a separately installed runner
# (`cargo install gungraun-runner` at the matching version) and measure the same thing.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-parserbench}"
MSGS="${MSGS:-sipp carrier phone all}"
TASKS="parse read forward"

command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }
cargo build --release --bin icount >&2
BIN="$CARGO_TARGET_DIR/release/icount"

# total instructions (Ir) of one run
count() {
	local out
	out=$(mktemp)
	valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" "$@" >/dev/null 2>&1
	awk '/^totals:/ {print $2}' "$out"
	rm -f "$out"
}

# instructions per iteration of: icount <impl> <task> N <message>
per_iter() {
	local one many
	one=$(count "$1" "$2" 1 "$3")
	many=$(count "$1" "$2" 1001 "$3")
	echo $(((many - one) / 1000))
}

printf '%-8s %-8s %12s %12s %8s\n' message task sip-wire rsip ratio
for msg in $MSGS; do
	for task in $TASKS; do
		w=$(per_iter wire "$task" "$msg")
		r=$(per_iter rsip "$task" "$msg")
		ratio=$(awk -v r="$r" -v w="$w" 'BEGIN { if (w > 0) printf "%.1fx", r / w; else print "-" }')
		printf '%-8s %-8s %12s %12s %8s\n' "$msg" "$task" "$w" "$r" "$ratio"
	done
done
echo "(instructions per message; 'all' = the three messages in one iteration)"

if [ -z "${NO_CRITERION:-}" ]; then
	cargo bench --bench criterion -- --warm-up-time 1 --measurement-time 2 --noplot 2>&1 |
		grep -E '^(parse|read|forward)/|time:' || true
fi
