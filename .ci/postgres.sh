#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests, on loopback, in a temporary folder.
#   eval "$(bash .ci/postgres.sh start)"   # exports HPO_TEST_POSTGRES_URL and HPO_TEST_PGDATA
#   bash .ci/postgres.sh stop "$HPO_TEST_PGDATA"
# Installs Debian's PostgreSQL if it is missing. Runs the server as the `postgres` user (initdb
# refuses root); nothing listens beyond 127.0.0.1.
set -euo pipefail

bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

case "${1:-}" in
start)
    if [ -z "$(bin_dir)" ]; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
    bin=$(bin_dir)
    data=$(mktemp -d /tmp/hpo-pg.XXXXXX)
    chown postgres "$data"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    runuser -u postgres -- "$bin/initdb" -D "$data/db" -U hpo --auth=trust -E UTF8 >/dev/null
    runuser -u postgres -- "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$data -c max_connections=200" \
        start >/dev/null
    echo "export HPO_TEST_PGDATA=$data"
    echo "export HPO_TEST_POSTGRES_URL=postgresql+psycopg://hpo@127.0.0.1:$port/postgres"
    ;;
stop)
    data="${2:?usage: postgres.sh stop DATA_DIR}"
    runuser -u postgres -- "$(bin_dir)/pg_ctl" -D "$data/db" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$data"
    ;;
*)
    echo "usage: $0 start | stop DATA_DIR" >&2
    exit 2
    ;;
esac
