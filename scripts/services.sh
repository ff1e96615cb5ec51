#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis servers on loopback for the test suite.
#   eval "$(bash scripts/services.sh start DIR)"   starts both under DIR, prints the export lines
#   bash scripts/services.sh stop DIR              stops both and removes DIR
#   bash scripts/services.sh pg-stop|pg-start DIR  stops / restarts PostgreSQL alone, data and port
#                                                   kept (the outage tests)
# Installs the servers (and the browser tests' chromium, the README test's curl) with apt-get when they are missing. Ports are free ones picked at start;
# durability is switched off (fsync, snapshots): these servers hold test data only.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_run() {  # pg_run BIN DIR PORT: start the server on its port, wait until it accepts connections
  as_postgres "$1/pg_ctl" -D "$2/pg/data" -l "$2/pg/log" -w -s start \
    -o "-p $3 -k $2/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >&2
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

install_missing() {
  local need=()
  [ -n "$(pg_bin)" ] || need+=(postgresql)
  command -v redis-server >/dev/null || need+=(redis-server)
  # The browser tests drive Debian's chromium through Playwright (its own download cannot work here).
  [ -x /usr/bin/chromium ] || need+=(chromium)
  # The README test runs the README's curl examples as written.
  command -v curl >/dev/null || need+=(curl)
  [ ${#need[@]} -eq 0 ] && return 0
  echo "installing ${need[*]} with apt-get" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
}

case "$cmd" in
start)
  install_missing
  bin=$(pg_bin)
  mkdir -p "$dir/pg" "$dir/redis"
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/pg"
  pg_port=$(free_port)
  as_postgres "$bin/initdb" -D "$dir/pg/data" -A trust -U grace --no-sync >/dev/null
  pg_run "$bin" "$dir" "$pg_port"
  as_postgres "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U grace grace_test
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --daemonize yes \
    --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/log" --save "" --appendonly no >&2
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "$pg_port" > "$dir/pg/port"
  echo "export GRACE_TEST_DATABASE_URL=postgresql+psycopg://grace@127.0.0.1:$pg_port/grace_test"
  echo "export GRACE_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
  echo "export GRACE_TEST_PG_ADMIN=postgresql+psycopg://grace@127.0.0.1:$pg_port/postgres"
  ;;
stop)
  bin=$(pg_bin)
  if [ -n "$bin" ] && [ -d "$dir/pg/data" ]; then
    as_postgres "$bin/pg_ctl" -D "$dir/pg/data" -m immediate -s stop >/dev/null 2>&1 || true
  fi
  if [ -f "$dir/redis/redis.pid" ]; then
    pid=$(cat "$dir/redis/redis.pid")
    kill "$pid" 2>/dev/null || true
    # Redis writes its log while it shuts down; removing the directory under it fails.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$dir"
  ;;
pg-stop)
  as_postgres "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m fast -w -s stop >&2
  ;;
pg-start)
  pg_run "$(pg_bin)" "$dir" "$(cat "$dir/pg/port")"
  ;;
*) echo "usage: $0 start|stop|pg-stop|pg-start DIR" >&2; exit 2 ;;
esac
