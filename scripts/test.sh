#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (when run as root:
# SIPp, sipsak, dnsmasq, Redis, PostgreSQL, MariaDB; their servers are started on free
# loopback ports and stopped at the end), then runs every Rust test (unit, property, conformance, wire tests that start the
# binary on loopback) and the SIPp smoke test against the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v sipsak >/dev/null 2>&1 || need_apt+=(sipsak)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v dnsmasq >/dev/null 2>&1 || need_apt+=(dnsmasq-base)
command -v memcached >/dev/null 2>&1 || need_apt+=(memcached)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v mariadb-install-db >/dev/null 2>&1 || need_apt+=(mariadb-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# optional tools (their scripts skip without them); never fatal: their packages start services
opt_apt=()
command -v svmap >/dev/null 2>&1 || opt_apt+=(sipvicious)
command -v fail2ban-regex >/dev/null 2>&1 || opt_apt+=(fail2ban)
if [ ${#opt_apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${opt_apt[@]}" >/dev/null 2>&1 ||
    echo "note: could not install ${opt_apt[*]}; the scripts that use them will skip" >&2
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "note: missing ${need_apt[*]}; tests that need them will skip" >&2
  fi
fi

# Real database servers for the SQL back ends (PostgreSQL, MariaDB), on free loopback ports,
# stopped on exit; tests gated on their URLs skip when a server is not installed.
if [ "$(id -u)" = 0 ]; then
  # shellcheck source=scripts/test-dbs.sh
  . ./scripts/test-dbs.sh
fi
# A throwaway Redis for the shared-state back ends (after test-dbs.sh: it chains onto that
# script's EXIT trap).
# shellcheck source=scripts/test-redis.sh
. ./scripts/test-redis.sh

./scripts/check-sans-io.sh
cargo build --workspace --all-targets
summary=$(mktemp /tmp/voxgate-test-summary.XXXXXX)
cargo test --workspace --no-fail-fast 2>&1 | tee "$summary"
# Wire-level runs against the built binary (each skips cleanly when what it needs is absent:
# SIPp, ../shared, permission for `unshare -n`, a TLS SIP client). Each prints a line with
# "N passed, M failed" and exits non-zero on a failure.
for s in smoke.sh replay-conformance.sh replay-protos.sh tls-interop.sh security-fail2ban.sh security-scan.sh; do
  if [ -x "scripts/$s" ]; then
    echo "== scripts/$s"
    "./scripts/$s" 2>&1 | tee -a "$summary"
  fi
done

# One closing line over everything above: cargo's "test result:" lines plus the scripts'.
awk '/^test result:/ { p += $4; f += $6; next }
     /[0-9]+ passed, [0-9]+ failed/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed,?$/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all: %d passed, %d failed\n", p, f; exit (f > 0) }' "$summary"
rm -f "$summary"
