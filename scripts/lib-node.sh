# Helpers shared by the scripts that start a voxgate node and drive it with SIPp
# (smoke.sh, proxy-calls.sh). Source it after setting TMP (the temp dir holding node.log).

# addr_of "listening udp" -> the ADDR:PORT the node logged for that listener.
addr_of() { sed -n "s/.*$1 \([0-9.]*:[0-9]*\).*/\1/p" "$TMP/node.log" | head -n1; }

# csv_last FILE COLUMN -> the column's value in the last row of a SIPp -trace_stat file.
csv_last() {
  awk -F';' -v col="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i; next}
                         {v=$c} END{print (c ? v : "NA")}' "$1"
}

# fetch_metrics ADMIN_ADDR -> the node's /metrics text (bash's /dev/tcp: no HTTP client needed).
fetch_metrics() {
  local addr=$1 text=""
  if exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}"; then
    printf 'GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$addr" >&3
    text=$(timeout 5 cat <&3 || true)
    exec 3<&-
  fi
  printf '%s\n' "$text"
}

# stop_node PREFIX: SIGTERM to $NODE_PID, which must exit 0 within 10 s. Clears NODE_PID;
# returns 1 (after saying why, prefixed by PREFIX) otherwise.
stop_node() {
  local prefix=$1 node_rc=0
  kill -TERM "$NODE_PID"
  for _ in $(seq 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$NODE_PID" 2>/dev/null; then
    echo "$prefix: voxgate still running 10 s after SIGTERM" >&2
    return 1
  fi
  wait "$NODE_PID" || node_rc=$?
  NODE_PID=""
  echo "$prefix: voxgate stopped on SIGTERM, exit $node_rc"
  [ "$node_rc" = 0 ]
}
