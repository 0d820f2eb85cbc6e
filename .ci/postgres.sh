#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests, on loopback, in a temporary folder.
#   eval "$(bash .ci/postgres.sh start)"   # exports HPO_TEST_POSTGRES_URL and HPO_TEST_PGDATA
#   bash .ci/postgres.sh stop "$HPO_TEST_PGDATA"
#   bash .ci/postgres.sh pause "$HPO_TEST_PGDATA"    # the server stops, its data and port kept
#   bash .ci/postgres.sh resume "$HPO_TEST_PGDATA"   # ... and starts again (a storage outage)
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
    # In the cluster's own configuration, so that `resume` starts it on the same port.
    printf '%s\n' "listen_addresses = '127.0.0.1'" "port = $port" \
        "unix_socket_directories = '$data'" "max_connections = 200" >>"$data/db/postgresql.conf"
    runuser -u postgres -- "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w start >/dev/null
    echo "export HPO_TEST_PGDATA=$data"
    echo "export HPO_TEST_POSTGRES_URL=postgresql+psycopg://hpo@127.0.0.1:$port/postgres"
    ;;
stop)
    data="${2:?usage: postgres.sh stop DATA_DIR}"
    runuser -u postgres -- "$(bin_dir)/pg_ctl" -D "$data/db" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$data"
    ;;
pause)
    data="${2:?usage: postgres.sh pause DATA_DIR}"
    # Fast shutdown: the server ends every client's connection, as a crash or restart would.
    runuser -u postgres -- "$(bin_dir)/pg_ctl" -D "$data/db" -m fast -w stop >/dev/null
    ;;
resume)
    data="${2:?usage: postgres.sh resume DATA_DIR}"
    runuser -u postgres -- "$(bin_dir)/pg_ctl" -D "$data/db" -l "$data/server.log" -w start >/dev/null
    ;;
*)
    echo "usage: $0 start | stop DATA_DIR | pause DATA_DIR | resume DATA_DIR" >&2
    exit 2
    ;;
esac
