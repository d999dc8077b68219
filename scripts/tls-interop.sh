#!/usr/bin/env bash
# SIP over TLS against a real, independent TLS SIP client (sipsak, GnuTLS), on loopback only.
#
# Issue 3 asks that the SIPp scenario also complete over TLS. Debian's SIPp has no TLS, and the
# project's own rustls client (crates/voxgate/tests/cli.rs, crates/voxgate-transport/tests/tls.rs)
# shares its TLS stack with the server, so this script drives voxgate with a client whose TLS
# and SIP code were written elsewhere: Debian's `sipsak` (built with GnuTLS; `sipsak -V` lists
# TLS_SUPPORT(GNUTLS)). sipsak was chosen over baresip and pjsua2 because it is one small
# package, runs one transaction per invocation with no config directory or interactive
# console, verifies the server certificate against a CA file, reports the final status in its
# exit code (0: 2xx, 1: 3xx-6xx, 2: no reply / error, 3: internal error) and sends the ACK
# of a non-2xx INVITE reply itself.
#
# What it does:
#   1. builds voxgate (or uses VOXGATE_BIN), makes a throwaway self-signed certificate for
#      127.0.0.1 (CN and subjectAltName IP) with the openssl CLI;
#   2. starts `voxgate run` with a TLS listener on 127.0.0.1, port chosen by the kernel and
#      read back from the log, `sip.aliases = ["127.0.0.1"]` so that `sip:127.0.0.1` (no port)
#      names the node, and the admin API on a kernel-chosen loopback port;
#   3. over TLS, with certificate verification on (--tls-ca-cert, no ignore flag):
#        - OPTIONS sip:127.0.0.1, INTEROP_OPTIONS times: each must get 200 (exit 0);
#        - INVITE sip:<unknown number>@127.0.0.1, INTEROP_INVITES times: each must get
#          404 (exit 1 and "404" in the reply) and sipsak must send its ACK;
#        - with `openssl s_client -tls1_3` (a second, OpenSSL-based TLS stack) carrying
#          hand-written SIP, INTEROP_TLS13_RUNS connections of OPTIONS -> 200,
#          INVITE -> 404, ACK (with the 404's To tag);
#   4. reads /metrics: the node must count every INVITE and absorb every ACK
#      (voxgate_drops_total{reason="ack_absorbed"});
#   5. stops the node with SIGTERM: it must exit 0 within 10 s.
# Prints "N passed, M failed" and exits non-zero on any failure.
#
# TLS version: sipsak 0.9.8 mishandles TLS 1.3 post-handshake messages: a NewSessionTicket
# (which rustls, like most TLS 1.3 servers, sends right after the handshake) makes its
# gnutls_record_recv return no data, and it gives up with "nothing received, select returned
# error" although the reply is on the wire. The client is therefore pinned to TLS 1.2 through
# a GnuTLS override file (GNUTLS_SYSTEM_PRIORITY_FILE, `disabled-version = tls1.3`); TLS 1.3
# is covered by the openssl s_client step here and by the rustls client tests. Set
# INTEROP_TLS13=1 to run sipsak with TLS 1.3 anyway (expected to fail for the reason above).
#
# When sipsak is missing it is installed with apt-get if running as root; otherwise (or if
# the install fails, or the installed sipsak has no TLS) the script skips with exit 0.
# Environment:
#   VOXGATE_BIN       binary to test (default: cargo build -p voxgate, debug profile)
#   INTEROP_OPTIONS   OPTIONS transactions (default 5)
#   INTEROP_INVITES   INVITE transactions (default 20)
#   INTEROP_TLS13_RUNS  openssl s_client TLS 1.3 connections (default 10; 0 to skip)
#   KEEP_TMP=1        keep the temporary directory (cert, config, node log, sipsak output)
set -euo pipefail
cd "$(dirname "$0")/.."

OPTIONS_N=${INTEROP_OPTIONS:-5}
INVITES_N=${INTEROP_INVITES:-20}
TLS13_N=${INTEROP_TLS13_RUNS:-10}
STEP_TIMEOUT=15   # seconds for any one client run
trap '' PIPE      # a client that died makes our writes fail (EPIPE), not kill the script

skip() { echo "tls-interop: $*; skipping"; exit 0; }

# --- the client ------------------------------------------------------------------------
if ! command -v sipsak >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tls-interop: installing sipsak with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q sipsak >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q sipsak >/dev/null 2>&1 \
        || skip "sipsak (Debian package sipsak) could not be installed"
    fi
  else
    skip "sipsak not found (Debian package sipsak) and not root to install it"
  fi
fi
command -v sipsak >/dev/null 2>&1 || skip "sipsak not found after install"
sipsak -V 2>&1 | grep -q "TLS_SUPPORT" || skip "this sipsak is built without TLS"
command -v openssl >/dev/null 2>&1 || {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q openssl >/dev/null 2>&1 || true
  fi
  command -v openssl >/dev/null 2>&1 || skip "openssl CLI not found"
}

# --- the node ----------------------------------------------------------------------------
if [ -z "${VOXGATE_BIN:-}" ]; then
  timeout 1800 cargo build -q -p voxgate
  VOXGATE_BIN="${CARGO_TARGET_DIR:-target}/debug/voxgate"
fi
[ -x "$VOXGATE_BIN" ] || { echo "tls-interop: no binary at $VOXGATE_BIN" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxgate-tls-interop.XXXXXX")
NODE_PID=""
cleanup() {
  if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -KILL "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "tls-interop: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

timeout 60 openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 \
  || { echo "tls-interop: openssl could not make a certificate" >&2; exit 1; }

cat > "$TMP/node.toml" <<'TOML'
[node]
name = "tlsinterop"
drain_secs = 2

[[listen]]
proto = "tls"
addr = "127.0.0.1:0"
tls_cert = "cert.pem"
tls_key = "key.pem"

[sip]
aliases = ["127.0.0.1"]

[admin]
listen = "127.0.0.1:0"

[log]
level = "info"
TOML

timeout 30 "$VOXGATE_BIN" check --config "$TMP/node.toml" >/dev/null
"$VOXGATE_BIN" run --config "$TMP/node.toml" 2> "$TMP/node.log" &
NODE_PID=$!

for _ in $(seq 100); do
  grep -q "node tlsinterop up" "$TMP/node.log" 2>/dev/null && break
  kill -0 "$NODE_PID" 2>/dev/null || { cat "$TMP/node.log" >&2; echo "tls-interop: voxgate exited" >&2; exit 1; }
  sleep 0.1
done
grep -q "node tlsinterop up" "$TMP/node.log" \
  || { cat "$TMP/node.log" >&2; echo "tls-interop: voxgate not up in 10 s" >&2; exit 1; }
addr_of() { sed -n "s/.*$1 \([0-9.]*:[0-9]*\).*/\1/p" "$TMP/node.log" | head -n1; }
TLS_ADDR=$(addr_of "listening tls")
ADMIN_ADDR=$(addr_of "admin listening")
TLS_PORT=${TLS_ADDR##*:}
[ -n "$TLS_PORT" ] && [ -n "$ADMIN_ADDR" ] \
  || { cat "$TMP/node.log" >&2; echo "tls-interop: no tls/admin address in the log" >&2; exit 1; }

# GnuTLS override: TLS 1.2 for sipsak (see the header for why).
if [ "${INTEROP_TLS13:-0}" = 1 ]; then
  : > "$TMP/gnutls.cfg"
  TLS_LABEL="TLS 1.3 allowed"
else
  printf '[overrides]\ndisabled-version = tls1.3\n' > "$TMP/gnutls.cfg"
  TLS_LABEL="TLS 1.2"
fi
echo "tls-interop: voxgate up: tls $TLS_ADDR, admin $ADMIN_ADDR; client $(sipsak -V 2>&1 | head -n1 | tr -s ' ') ($TLS_LABEL)"

passed=0
failed=0
fail() { failed=$((failed + 1)); echo "tls-interop: FAIL: $*" >&2; }

# sipsak over TLS, certificate verified against our CA (the self-signed cert). The target
# host is the URI's; the port is given apart (-r) because sipsak compares the certificate
# with the URI's host[:port] string, so a port in the URI fails verification.
run_sipsak() {  # run_sipsak OUTFILE URI [extra args...] -> sipsak's exit code
  local out=$1 uri=$2 rc
  shift 2
  set +e
  GNUTLS_SYSTEM_PRIORITY_FILE="$TMP/gnutls.cfg" timeout "$STEP_TIMEOUT" \
    sipsak -vvv --transport=tls --tls-ca-cert="$TMP/cert.pem" -s "$uri" -r "$TLS_PORT" "$@" \
    > "$out" 2>&1
  rc=$?
  set -e
  return $rc
}

# (a) OPTIONS sip:127.0.0.1 -> 200.
for i in $(seq "$OPTIONS_N"); do
  out="$TMP/options-$i.out"
  rc=0; run_sipsak "$out" "sip:127.0.0.1" || rc=$?
  if [ "$rc" = 0 ] && grep -aq "^SIP/2.0 200 OK" "$out"; then
    passed=$((passed + 1))
  else
    fail "OPTIONS #$i: sipsak exit $rc (want 0 and 200 OK): $(grep -a -m1 -E '^SIP/2.0|nothing received|error' "$out" || true)"
  fi
done

# (b) INVITE for a number nobody routes -> 404, and sipsak's ACK for it.
for i in $(seq "$INVITES_N"); do
  out="$TMP/invite-$i.out"
  num="99900$(printf '%04d' "$i")"
  printf '%s\n' \
    "INVITE sip:$num@127.0.0.1 SIP/2.0" \
    "From: <sip:interop@127.0.0.1>;tag=interop$$-$i" \
    "To: <sip:$num@127.0.0.1>" \
    "Call-ID: interop-$$-$i@127.0.0.1" \
    "CSeq: 1 INVITE" \
    "Contact: <sip:interop@127.0.0.1>" \
    "Max-Forwards: 70" \
    "Content-Length: 0" \
    "" > "$TMP/invite-$i.sip"
  rc=0; run_sipsak "$out" "sip:$num@127.0.0.1" -f "$TMP/invite-$i.sip" || rc=$?
  if [ "$rc" = 1 ] && grep -aq "^SIP/2.0 404 Not Found" "$out" && grep -aq "^ACK sip:$num@127.0.0.1" "$out"; then
    passed=$((passed + 1))
  else
    fail "INVITE #$i: sipsak exit $rc (want 1, 404 and an ACK): $(grep -a -m1 -E '^SIP/2.0|nothing received|error' "$out" || true)"
  fi
done

# (c) TLS 1.3 with a second independent TLS stack: `openssl s_client` (OpenSSL, -tls1_3,
# certificate and IP verified) carries hand-written SIP: on one connection OPTIONS -> 200,
# INVITE -> 404, then the ACK built from the 404's To tag. sipsak cannot do TLS 1.3 (see
# the header); this keeps a non-rustls TLS 1.3 peer in the test.
crlf() { printf '%s\r\n' "$@"; }
read_reply() {  # read_reply FD -> sets REPLY_STATUS and REPLY_TO from one reply's head
  local fd=$1 line
  REPLY_STATUS=""; REPLY_TO=""
  while IFS= read -r -t 5 line 2>/dev/null <&"$fd"; do
    line=${line%$'\r'}
    [ -z "$REPLY_STATUS" ] && REPLY_STATUS=$line
    case $line in To:*|t:*) REPLY_TO=$line ;; esac
    [ -z "$line" ] && break
  done
}
for i in $(seq "$TLS13_N"); do
  num="99800$(printf '%04d' "$i")"
  via="Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-interop13-$$-$i;rport"
  coproc SCLIENT { exec timeout "$STEP_TIMEOUT" openssl s_client -quiet -no_ign_eof -tls1_3 \
    -verify_return_error -CAfile "$TMP/cert.pem" -verify_ip 127.0.0.1 \
    -connect "127.0.0.1:$TLS_PORT" 2>"$TMP/s_client-$i.err"; }
  in_fd=${SCLIENT[1]:-}; out_fd=${SCLIENT[0]:-}; sc_pid=${SCLIENT_PID:-}
  if [ -z "$in_fd" ] || [ -z "$out_fd" ] || [ -z "$sc_pid" ]; then
    [ -n "$sc_pid" ] && { wait "$sc_pid" 2>/dev/null || true; }
    fail "TLS 1.3 s_client #$i: exited at once: $(head -c 300 "$TMP/s_client-$i.err" 2>/dev/null || true)"
    continue
  fi
  crlf "OPTIONS sip:127.0.0.1 SIP/2.0" "${via}o" "From: <sip:interop@127.0.0.1>;tag=o$i" \
    "To: <sip:127.0.0.1>" "Call-ID: interop13-o-$$-$i@127.0.0.1" "CSeq: 1 OPTIONS" \
    "Max-Forwards: 70" "Content-Length: 0" "" 2>/dev/null >&"$in_fd" || true
  read_reply "$out_fd"; opt_status=$REPLY_STATUS
  crlf "INVITE sip:$num@127.0.0.1 SIP/2.0" "$via" "From: <sip:interop@127.0.0.1>;tag=i$i" \
    "To: <sip:$num@127.0.0.1>" "Call-ID: interop13-i-$$-$i@127.0.0.1" "CSeq: 1 INVITE" \
    "Contact: <sip:interop@127.0.0.1;transport=tls>" "Max-Forwards: 70" "Content-Length: 0" "" \
    2>/dev/null >&"$in_fd" || true
  read_reply "$out_fd"; inv_status=$REPLY_STATUS; inv_to=$REPLY_TO
  crlf "ACK sip:$num@127.0.0.1 SIP/2.0" "$via" "From: <sip:interop@127.0.0.1>;tag=i$i" \
    "${inv_to:-To: <sip:$num@127.0.0.1>}" "Call-ID: interop13-i-$$-$i@127.0.0.1" "CSeq: 1 ACK" \
    "Max-Forwards: 70" "Content-Length: 0" "" 2>/dev/null >&"$in_fd" || true
  { exec {in_fd}>&-; } 2>/dev/null || true
  sc_rc=0; wait "$sc_pid" || sc_rc=$?
  if [ "$sc_rc" = 0 ] && [ "$opt_status" = "SIP/2.0 200 OK" ] \
     && [ "$inv_status" = "SIP/2.0 404 Not Found" ] && [[ "$inv_to" == *";tag="* ]]; then
    passed=$((passed + 1))
  else
    fail "TLS 1.3 s_client #$i: exit $sc_rc, OPTIONS '${opt_status}', INVITE '${inv_status}' $(head -c 300 "$TMP/s_client-$i.err" 2>/dev/null || true)"
  fi
done

# What GnuTLS negotiated with rustls (sipsak -vvv prints it).
negotiated=$(cat "$TMP"/*.out 2>/dev/null | grep -a -o "Protocol: TLS[0-9.]*" | sort | uniq -c \
  | awk '{printf "%s%s x%s", (NR > 1 ? ", " : ""), $3, $1}' || true)
negotiated=${negotiated:-unknown}
echo "tls-interop: sipsak negotiated ${negotiated}"

# The node's view: every INVITE counted, every ACK absorbed (bash's /dev/tcp, no HTTP client).
metric() { printf '%s\n' "$metrics" | sed -n "s/^$1 \([0-9]*\).*/\1/p" | head -n1; }
metrics=""
for _ in $(seq 20); do  # the last ACK may still be in flight: retry briefly
  metrics=""
  if exec 3<>"/dev/tcp/${ADMIN_ADDR%:*}/${ADMIN_ADDR##*:}"; then
    printf 'GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$ADMIN_ADDR" >&3
    metrics=$(timeout 5 cat <&3 || true)
    exec 3<&-
  fi
  [ "$(metric 'voxgate_drops_total{reason="ack_absorbed"}')" = "$((INVITES_N + TLS13_N))" ] && break
  sleep 0.1
done
m_inv=$(metric 'voxgate_requests_total{method="INVITE"}')
m_opt=$(metric 'voxgate_requests_total{method="OPTIONS"}')
m_ack=$(metric 'voxgate_drops_total{reason="ack_absorbed"}')
m_tls=$(metric 'voxgate_connections_total{proto="tls",event="accepted"}')
echo "tls-interop: node counted INVITE=${m_inv:-missing} OPTIONS=${m_opt:-missing} ack_absorbed=${m_ack:-missing} tls_accepted=${m_tls:-missing}"
want_inv=$((INVITES_N + TLS13_N)); want_opt=$((OPTIONS_N + TLS13_N))
if [ "${m_inv:-x}" = "$want_inv" ] && [ "${m_opt:-x}" = "$want_opt" ] && [ "${m_ack:-x}" = "$want_inv" ]; then
  passed=$((passed + 1))
else
  fail "metrics: want INVITE=$want_inv OPTIONS=$want_opt ack_absorbed=$want_inv"
fi

# Stop: SIGTERM, exit 0 within 10 s.
kill -TERM "$NODE_PID"
for _ in $(seq 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$NODE_PID" 2>/dev/null; then
  fail "voxgate still running 10 s after SIGTERM"
else
  node_rc=0
  wait "$NODE_PID" || node_rc=$?
  NODE_PID=""
  echo "tls-interop: voxgate stopped on SIGTERM, exit $node_rc"
  if [ "$node_rc" = 0 ]; then passed=$((passed + 1)); else fail "voxgate exit $node_rc on SIGTERM"; fi
fi

echo "tls-interop: $passed passed, $failed failed (sipsak over $TLS_LABEL: $OPTIONS_N OPTIONS, $INVITES_N INVITEs; openssl s_client over TLS 1.3: $TLS13_N x OPTIONS+INVITE+ACK; metrics; shutdown)"
if [ "$failed" != 0 ]; then
  echo "tls-interop: FAILED (keep the files: KEEP_TMP=1 $0)" >&2
  [ "${KEEP_TMP:-0}" = 1 ] || tail -n 30 "$TMP/node.log" >&2
  exit 1
fi
exit 0
