#!/usr/bin/env bash
# Fails if a sans-IO crate pulls in an I/O runtime or socket crate (design.md §2).
# The sans-IO crates hold protocol logic only: bytes, time and addresses come in as
# arguments, sends and timer changes go out as values.
set -euo pipefail
cd "$(dirname "$0")/.."
SANS_IO_CRATES=(sip-wire sip-sdp sip-txn sip-proxy sip-auth voxgate-policy voxgate-security voxgate-routing voxgate-engine)
FORBIDDEN='^(tokio|mio|socket2|async-std|smol|quinn-udp|nix)$'
status=0
for c in "${SANS_IO_CRATES[@]}"; do
  deps=$(cargo tree -p "$c" -e normal --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | sort -u)
  bad=$(echo "$deps" | grep -E "$FORBIDDEN" || true)
  if [ -n "$bad" ]; then
    echo "sans-IO violation: $c depends on: $bad" >&2
    status=1
  else
    echo "sans-IO ok: $c"
  fi
done
exit $status
