#!/usr/bin/env bash
# Starts throwaway PostgreSQL and MariaDB servers on free loopback ports in a temp dir, for the
# tests gated on VOXGATE_TEST_PG_URL / VOXGATE_TEST_MYSQL_URL. Source it:
#     . scripts/test-dbs.sh      (sets the URLs and an EXIT trap that stops the servers)
# A server whose binaries are missing is skipped (its tests then skip too).
_vg_db_tmp=$(mktemp -d /tmp/voxgate-dbs.XXXXXX)
chmod 755 "$_vg_db_tmp"
_vg_free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
_vg_db_stop() {
  [ -n "${_vg_pg_bin:-}" ] && su -s /bin/sh nobody -c "$_vg_pg_bin/pg_ctl -D $_vg_db_tmp/pg -m immediate stop" >/dev/null 2>&1
  [ -n "${_vg_my_pid:-}" ] && kill "$_vg_my_pid" 2>/dev/null && wait "$_vg_my_pid" 2>/dev/null
  rm -rf "$_vg_db_tmp"
}
trap _vg_db_stop EXIT

_vg_pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -n "$_vg_pg_bin" ] && [ -x "$_vg_pg_bin/initdb" ] && [ "$(id -u)" = 0 ]; then
  port=$(_vg_free_port)
  mkdir -p "$_vg_db_tmp/pg" && chown nobody "$_vg_db_tmp/pg"
  if su -s /bin/sh nobody -c "$_vg_pg_bin/initdb -D $_vg_db_tmp/pg -U voxgate --auth=trust -E UTF8" >/dev/null 2>&1 &&
     su -s /bin/sh nobody -c "$_vg_pg_bin/pg_ctl -D $_vg_db_tmp/pg -w -t 30 -o '-c listen_addresses=127.0.0.1 -p $port -k $_vg_db_tmp/pg' -l $_vg_db_tmp/pg/server.log start" >/dev/null 2>&1 &&
     su -s /bin/sh nobody -c "$_vg_pg_bin/createdb -h 127.0.0.1 -p $port -U voxgate voxgate_test" >/dev/null 2>&1; then
    export VOXGATE_TEST_PG_URL="postgres://voxgate@127.0.0.1:$port/voxgate_test"
    echo "test-dbs: PostgreSQL on 127.0.0.1:$port"
  else
    echo "test-dbs: PostgreSQL did not start (see its server.log)"; _vg_pg_bin=""
  fi
else
  _vg_pg_bin=""
fi

_vg_mariadbd=$(command -v mariadbd || command -v mysqld || true)
[ -z "$_vg_mariadbd" ] && [ -x /usr/sbin/mariadbd ] && _vg_mariadbd=/usr/sbin/mariadbd
if [ -n "$_vg_mariadbd" ] && command -v mariadb-install-db >/dev/null 2>&1; then
  port=$(_vg_free_port)
  d="$_vg_db_tmp/my"; mkdir -p "$d"
  if mariadb-install-db --no-defaults --datadir="$d/data" --user=root --auth-root-authentication-method=normal >"$_vg_db_tmp/my-install.log" 2>&1; then
    "$_vg_mariadbd" --no-defaults --datadir="$d/data" --socket="$d/sock" --port="$port" \
      --bind-address=127.0.0.1 --user=root --skip-grant-tables=0 >"$_vg_db_tmp/my.log" 2>&1 &
    _vg_my_pid=$!
    for _ in $(seq 60); do mariadb --no-defaults -S "$d/sock" -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
    if mariadb --no-defaults -S "$d/sock" -uroot -e "CREATE DATABASE voxgate_test; CREATE USER 'voxgate'@'127.0.0.1' IDENTIFIED BY 'voxgate'; GRANT ALL ON voxgate_test.* TO 'voxgate'@'127.0.0.1';" >/dev/null 2>&1; then
      export VOXGATE_TEST_MYSQL_URL="mysql://voxgate:voxgate@127.0.0.1:$port/voxgate_test"
      echo "test-dbs: MariaDB on 127.0.0.1:$port"
    else
      echo "test-dbs: MariaDB did not start (see $_vg_db_tmp/my.log)"
    fi
  fi
fi
