#!/usr/bin/env bash
# A private PostgreSQL 15 cluster pinned to one core, and a benchmark pinned to another: a
# stand-in, on one small machine, for the database and the function on separate machines.
#
#   bench/pinned-postgres.sh start              # initdb (first time) and start, pinned to core 1
#   bench/pinned-postgres.sh run CMD [ARGS…]    # CMD pinned to core 0, DATABASE_URL at the cluster
#   bench/pinned-postgres.sh stop
#   bench/pinned-postgres.sh destroy            # stop and remove the cluster's directory
#
# e.g. the writer benchmark, built once beforehand:
#   CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 \
#     cargo bench -p sentinel-bench --bench writer --no-run
#   bench/pinned-postgres.sh start
#   BENCH_REPS=5 bench/pinned-postgres.sh run target/release/deps/writer-<hash> --bench
#   bench/pinned-postgres.sh destroy
#
# The cluster gets the settings of the machine's own cluster (Debian's 15/main) that matter
# for writing: fsync and synchronous_commit on, shared_buffers 128MB, autovacuum off, the
# same WAL sizes and locale. Its data sits on the same disk (under /tmp). Only the cores
# differ. Other processes on the machine are not pinned and still share both cores.
#
# Settings (environment): PINNED_PG_DIR (default /tmp/sentinel-pinned-pg), PINNED_PG_PORT
# (5433), PINNED_PG_CPU (1), PINNED_BENCH_CPU (0). Needs root (it runs PostgreSQL as the
# postgres user) and the postgresql-15 package.
set -euo pipefail

BIN=/usr/lib/postgresql/15/bin
DIR=${PINNED_PG_DIR:-/tmp/sentinel-pinned-pg}
PORT=${PINNED_PG_PORT:-5433}
PG_CPU=${PINNED_PG_CPU:-1}
BENCH_CPU=${PINNED_BENCH_CPU:-0}

as_postgres() { runuser -u postgres -- "$@"; }

start() {
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    mkdir -p "$DIR"
    chown postgres: "$DIR"
    as_postgres "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log"
    cat >>"$DIR/data/postgresql.conf" <<EOF
# bench/pinned-postgres.sh: as the machine's own cluster (15/main)
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
max_connections = 100
shared_buffers = 128MB
fsync = on
synchronous_commit = on
autovacuum = off
max_wal_size = 1GB
min_wal_size = 80MB
timezone = 'Etc/UTC'
log_timezone = 'Etc/UTC'
EOF
  fi
  # The postmaster inherits the affinity, and every backend inherits the postmaster's.
  taskset -c "$PG_CPU" runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" \
    -l "$DIR/server.log" -w start >/dev/null
  local pid
  pid=$(head -1 "$DIR/data/postmaster.pid")
  echo "PostgreSQL on 127.0.0.1:$PORT, postmaster $pid: $(taskset -cp "$pid")"
  psql -h 127.0.0.1 -p "$PORT" -U postgres -Atc \
    "SELECT name || ' = ' || current_setting(name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'autovacuum', 'wal_sync_method') ORDER BY 1"
}

stop() {
  if [ -f "$DIR/data/postmaster.pid" ]; then
    as_postgres "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  destroy) stop; rm -rf "$DIR" ;;
  run)
    shift
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
    exec taskset -c "$BENCH_CPU" "$@"
    ;;
  *)
    echo "usage: $0 start | run CMD [ARGS…] | stop | destroy" >&2
    exit 2
    ;;
esac
