#!/usr/bin/env bash
# Starts a throwaway redis-server on a free loopback port (no persistence, in a temp dir)
# for the tests gated on VOXGATE_TEST_REDIS_URL. Source it:
#     . scripts/test-redis.sh     (exports VOXGATE_TEST_REDIS_URL, chains an EXIT trap)
# If redis-server is missing nothing is exported (those tests then skip).
#
# The EXIT trap chains: the trap already set (e.g. by scripts/test-dbs.sh) is read with
# `trap -p EXIT` and kept, running after this one's stop function. Source this script
# AFTER any script that sets its EXIT trap with a plain `trap ... EXIT` (test-dbs.sh does),
# or that script replaces this trap.
_vg_redis_bin=$(command -v redis-server || true)
[ -z "$_vg_redis_bin" ] && [ -x /usr/bin/redis-server ] && _vg_redis_bin=/usr/bin/redis-server
if [ -n "$_vg_redis_bin" ]; then
  _vg_redis_tmp=$(mktemp -d /tmp/voxgate-redis.XXXXXX)
  _vg_redis_stop() {
    if [ -n "${_vg_redis_pid:-}" ]; then
      kill "$_vg_redis_pid" 2>/dev/null && wait "$_vg_redis_pid" 2>/dev/null
      _vg_redis_pid=""
    fi
    [ -n "${_vg_redis_tmp:-}" ] && rm -rf "$_vg_redis_tmp"
    return 0
  }
  # chain: keep whatever EXIT trap is already set, run it after ours
  _vg_prev_trap=$(trap -p EXIT)
  if [ -n "$_vg_prev_trap" ]; then
    eval "_vg_prev_trap_cmd=\$(set -- $_vg_prev_trap; printf '%s' \"\$3\")"
    trap "_vg_redis_stop; $_vg_prev_trap_cmd" EXIT
  else
    trap _vg_redis_stop EXIT
  fi
  _vg_redis_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$_vg_redis_bin" --port "$_vg_redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$_vg_redis_tmp" --daemonize no --logfile "$_vg_redis_tmp/redis.log" >/dev/null 2>&1 &
  _vg_redis_pid=$!
  _vg_redis_ok=""
  for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$_vg_redis_port" && printf 'PING\r\n' >&3 &&
        IFS= read -r -t 1 line <&3 && [ "${line%$'\r'}" = "+PONG" ]) 2>/dev/null; then
      _vg_redis_ok=1; break
    fi
    sleep 0.1
  done
  if [ -n "$_vg_redis_ok" ]; then
    export VOXGATE_TEST_REDIS_URL="redis://127.0.0.1:$_vg_redis_port/"
    echo "test-redis: redis-server on 127.0.0.1:$_vg_redis_port"
  else
    echo "test-redis: redis-server did not start (see $_vg_redis_tmp/redis.log)"
  fi
else
  echo "test-redis: redis-server not installed; Redis tests will skip"
fi
