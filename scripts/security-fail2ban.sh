#!/usr/bin/env bash
# contrib/fail2ban's filter against the ban lines a real node writes: a node per log format
# (text, json) bans a scanner (User-Agent friendly-scanner from 127.0.0.9) and its stderr is
# checked with fail2ban-regex, with forged and non-ban lines added that must not match.
# Skips (exit 0) when fail2ban-regex is absent (apt-get install fail2ban). Loopback only.
set -u -o pipefail
cd "$(dirname "$0")/.."
for t in fail2ban-regex python3; do
    command -v "$t" >/dev/null || { echo "SKIP: $t not installed (apt-get install fail2ban)"; exit 0; }
done
if [ -z "${VOXGATE_BIN:-}" ]; then
    cargo build -q -p voxgate || exit 1
    VOXGATE_BIN=${CARGO_TARGET_DIR:-target}/debug/voxgate
fi
FILTER=$PWD/contrib/fail2ban/filter.d/voxgate.conf
WORK=$(mktemp -d /tmp/voxgate-f2b.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

for fmt in text json; do
    port=$(python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    printf '[[listen]]\nproto = "udp"\naddr = "127.0.0.1:%s"\n[admin]\nenabled = false\n[log]\nformat = "%s"\n[security]\n' \
        "$port" "$fmt" > "$WORK/$fmt.toml"
    "$VOXGATE_BIN" run --config "$WORK/$fmt.toml" 2> "$WORK/$fmt.log" &
    PID=$!
    for _ in $(seq 50); do grep -q "up shards\|node voxgate up" "$WORK/$fmt.log" && break; sleep 0.1; done
    python3 - "$port" <<'PY'
import socket, sys
port = int(sys.argv[1])
msg = ("OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK-f2b\r\n"
       "From: <sip:100@127.0.0.9>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: f2b-1\r\n"
       "CSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.9", 0))
s.sendto(msg.encode(), ("127.0.0.1", port))
PY
    for _ in $(seq 50); do grep -q 'voxgate\[ban\]' "$WORK/$fmt.log" && break; sleep 0.1; done
    kill "$PID"; wait "$PID" 2>/dev/null; PID=
done
cat "$WORK/text.log" "$WORK/json.log" > "$WORK/all.log"
# lines that must not match: a lifted ban, a user ban, and ban text quoted in a JSON message
cat >> "$WORK/all.log" <<'EOF'
2026-11-27T02:24:29.717045Z  INFO voxgate::ban: voxgate[ban]: unbanned ip=127.0.0.9 reason=expired
2026-11-27T02:24:29.717045Z  WARN voxgate::ban: voxgate[ban]: banned user=alice@example.com reason=bruteforce ttl=600
{"timestamp":"2026-11-27T02:24:32.312696Z","level":"WARN","fields":{"message":"x voxgate[ban]: banned ip=127.0.0.7 reason=scanner ttl=3600\"}"},"target":"voxgate::security"}
EOF
out=$(fail2ban-regex --print-all-matched "$WORK/all.log" "$FILTER" 2>&1)
matched=$(echo "$out" | sed -n 's/^Lines: .* \([0-9]*\) matched.*/\1/p')
echo "$out" | sed -n '/Matched line/,/^`-/p'
fail=0
[ "$matched" = 2 ] || { echo "FAIL: $matched lines matched, want 2 (one text, one json)"; fail=1; }
for fmt in text json; do
    grep -q 'voxgate\[ban\]: banned ip=127.0.0.9' "$WORK/$fmt.log" || { echo "FAIL: no ban line in the $fmt log"; fail=1; }
done
echo "$out" | sed -n '/Matched line/,/^`-/p' | grep -q '127.0.0.7' && { echo "FAIL: a forged line matched"; fail=1; }
[ "$fail" = 0 ] && echo "PASS: fail2ban filter matches the node's ban lines in text and json formats, and no forged JSON line"
# the line scripts/test.sh counts
if [ "$fail" = 0 ]; then echo "security-fail2ban: 1 passed, 0 failed"; else echo "security-fail2ban: 0 passed, 1 failed"; fi
exit "$fail"
