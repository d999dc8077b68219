# bench/lib.sh -- shared set-up for bench/run.sh and bench/maxrate.sh (sourced, not run).
#
# Provides: paths (ROOT, SHARED, DRIVER, OUT), ensure_tools, build_voxgate, build_floor,
# write_voxgate_config, and run_one SERVER RATE COUNT (prints the driver's summary line).
# Environment understood by both scripts:
#   SHARED_DIR      the shared material (default: <repo>/../shared)
#   OUT_DIR         build/output dir (default: bench/out, gitignored)
#   VOXGATE_BIN     use this binary instead of building release
#   SKIP_BUILD=1    do not run cargo; use the release binary already built
#   VOXGATE_CONFIG  use this config instead of the generated one (must listen on UDP 127.0.0.1:5060)
#   KAMAILIO_ARGS   passed to kamailio (default "-x tlsf", the strongest peer measured)
#   SCENARIO        404 (default: stateless INVITE -> 404) or proxy (INVITE/180/200/ACK/
#                   pause/BYE relayed statefully to a SIPp UAS on 127.0.0.1:5080; voxgate
#                   runs with a [proxy] section like examples/proxy.toml, Kamailio with the
#                   shared kamailio-proxy.cfg)

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
SHARED=${SHARED_DIR:-$ROOT/../shared}
DRIVER=$SHARED/bench/run-peer-bench.sh
OUT=${OUT_DIR:-$BENCH_DIR/out}
: "${KAMAILIO_ARGS=-x tlsf}"
SCENARIO=${SCENARIO:-404}
case "$SCENARIO" in 404|proxy) ;; *) echo "bench: SCENARIO must be 404 or proxy" >&2; exit 2 ;; esac

blog() { echo "[bench $(date +%T)] $*" >&2; }

# exit 0 with a clear message when the shared material is absent
require_shared() {
  if [ ! -x "$DRIVER" ] && [ ! -f "$DRIVER" ]; then
    blog "SKIP: shared driver not found at $DRIVER (set SHARED_DIR); nothing measured"
    exit 0
  fi
}

ensure_tools() {
  local missing=()
  command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
  command -v kamailio >/dev/null 2>&1 || missing+=(kamailio)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      blog "installing ${missing[*]} with apt-get"
      DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2; } ||
        { blog "apt-get install ${missing[*]} failed"; exit 2; }
    else
      blog "missing: ${missing[*]} (apt-get install -y ${missing[*]} as root)"; exit 2
    fi
  fi
  # kamailio's package starts a system service on install; it would hold 5060
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet kamailio 2>/dev/null; then
    blog "note: the kamailio system service is running and may hold 127.0.0.1:5060"
  fi
}

build_voxgate() {
  if [ -n "${VOXGATE_BIN:-}" ]; then
    [ -x "$VOXGATE_BIN" ] || { blog "VOXGATE_BIN=$VOXGATE_BIN is not executable"; exit 2; }
    return
  fi
  local tdir=${CARGO_TARGET_DIR:-$ROOT/target}
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    blog "cargo build --release -p voxgate (target dir $tdir)"
    (cd "$ROOT" && cargo build --release -p voxgate >&2) || { blog "release build failed"; exit 2; }
  fi
  VOXGATE_BIN=$tdir/release/voxgate
  [ -x "$VOXGATE_BIN" ] || { blog "no binary at $VOXGATE_BIN"; exit 2; }
}

build_floor() {
  mkdir -p "$OUT"
  local src=$SHARED/bench/floor404.c
  FLOOR_BIN=$OUT/floor404
  # SCENARIO=proxy: our minimal stateless relay (bench/floor-relay.c) is the floor
  if [ "$SCENARIO" = proxy ]; then src=$BENCH_DIR/floor-relay.c; FLOOR_BIN=$OUT/floor-relay; fi
  if [ ! -x "$FLOOR_BIN" ] || [ "$src" -nt "$FLOOR_BIN" ]; then
    gcc -O2 -Wall -o "$FLOOR_BIN" "$src" || { blog "floor build failed ($src)"; exit 2; }
  fi
}

write_voxgate_config() {
  mkdir -p "$OUT"
  if [ -n "${VOXGATE_CONFIG:-}" ]; then VOX_CFG=$VOXGATE_CONFIG; return; fi
  VOX_CFG=$OUT/voxgate-bench.toml
  cat > "$VOX_CFG" <<'CFG'
# voxgate bench config, written by bench/lib.sh: one UDP listener on the port the shared
# driver uses, the empty routing table (every INVITE -> 404), management API off so that
# nothing but the SIP path spends CPU.
[[listen]]
proto = "udp"
addr = "127.0.0.1:5060"

[admin]
enabled = false

[log]
level = "warn"
CFG
  if [ "$SCENARIO" = proxy ]; then
    cat >> "$VOX_CFG" <<'CFG'

# SCENARIO=proxy: relay every call to the SIPp UAS of the shared driver, record-routing and
# tracking dialogs (as examples/proxy.toml).
[proxy]
record_route = true

[[proxy.upstreams]]
addr = "127.0.0.1:5080"
CFG
  fi
  if "$VOXGATE_BIN" check --config "$VOX_CFG" >/dev/null 2>"$OUT/voxgate-check.err"; then :; else
    blog "voxgate check --config $VOX_CFG failed:"; cat "$OUT/voxgate-check.err" >&2; exit 2
  fi
}

VOX_VERSION=NA
# run_one SERVER RATE COUNT -> the driver's summary line on stdout (or an error line)
run_one() {
  local server=$1 rate=$2 count=$3 line
  case "$server" in
    floor)
      line=$(SERVER_CMD="$FLOOR_BIN" SERVER_NAME=floor bash "$DRIVER" custom "$SCENARIO" "$rate" "$count") ;;
    kamailio)
      line=$(KAMAILIO_ARGS="$KAMAILIO_ARGS" bash "$DRIVER" kamailio "$SCENARIO" "$rate" "$count") ;;
    voxgate)
      [ "$VOX_VERSION" = NA ] && VOX_VERSION=$("$VOXGATE_BIN" --version 2>/dev/null | awk '{print $NF; exit}')
      line=$(SERVER_CMD="$VOXGATE_BIN run --config $VOX_CFG" SERVER_NAME=voxgate \
             SERVER_VERSION="${VOX_VERSION:-NA}" bash "$DRIVER" custom "$SCENARIO" "$rate" "$count") ;;
    *) blog "unknown server $server"; return 2 ;;
  esac
  if [ -z "$line" ]; then
    line="server=$server scenario=$SCENARIO rate=$rate calls=0 failed=NA retrans=NA error=driver_failed"
  fi
  echo "$line"
}

# field NAME LINE -> value of NAME=value in a summary line
field() { echo "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k{print $2; exit}'; }
