#!/usr/bin/env bash
# The PostgreSQL server kiln's queue tests talk to: Debian's PostgreSQL 15 (package postgresql-15).
#
#   postgres.sh install            apt-get install postgresql-15 (idempotent)
#   postgres.sh start DIR          initdb into DIR/data (first time), starts it on a free 127.0.0.1 port
#                                  with its unix socket in DIR/socket, waits until pg_isready says so,
#                                  creates the database `kiln`; prints the superuser's URL
#                                  postgres://kiln:PASSWORD@127.0.0.1:PORT/kiln (also in DIR/url); log
#                                  in DIR/log. As root, the server runs as the `postgres` system user
#                                  (else `nobody`): PostgreSQL refuses to run as root.
#   postgres.sh stop DIR           stops it (fast shutdown: clients are disconnected)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

# Debian's own binaries, always: other pg_ctl/initdb/postgres may come first on PATH.
bin=/usr/lib/postgresql/15/bin

case "${1:-}" in
install)
    [ -x "$bin/postgres" ] && [ -x "$bin/pg_dump" ] && exit 0
    if [ "$(id -u)" != 0 ]; then
        echo "PostgreSQL 15 is not installed: run 'sudo apt-get install postgresql-15'" >&2
        exit 1
    fi
    apt-get install -y --no-install-recommends postgresql-15 >/dev/null
    ;;
start)
    dir=${2:?usage: postgres.sh start DIR}
    [ -x "$bin/postgres" ] || { echo "PostgreSQL 15 is not installed: run tests/services/postgres.sh install" >&2; exit 1; }
    server_user=$(id -un)
    if [ "$(id -u)" = 0 ]; then
        server_user=postgres
        id postgres >/dev/null 2>&1 || server_user=nobody
    fi
    # What runs a program as that user (setpriv execs it: the pid is the server's own).
    as_server=()
    [ "$(id -u)" = 0 ] && as_server=(setpriv --reuid="$(id -u "$server_user")" \
        --regid="$(id -g "$server_user")" --init-groups --)
    mkdir -p "$dir/socket"
    # The server's user must reach DIR (a temp dir is 0700) and own its data and socket folders.
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown "$server_user" "$dir/socket"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
        echo "$password" >"$dir/password"
        mkdir -p "$dir/data"
        [ "$(id -u)" = 0 ] && chown "$server_user" "$dir/data" "$dir/password"
        "${as_server[@]}" "$bin/initdb" -D "$dir/data" -U kiln --pwfile="$dir/password" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >>"$dir/log" 2>&1 \
            || { echo "initdb failed; its log:" >&2; cat "$dir/log" >&2; exit 1; }
    fi
    password=$(cat "$dir/password")
    # A restart in the same DIR comes back on the same port, over the same data.
    port=$(cat "$dir/port" 2>/dev/null || free_port)
    echo "$port" >"$dir/port"
    touch "$dir/log"
    [ "$(id -u)" = 0 ] && chown "$server_user" "$dir/log"
    # Durability is not what these tests are about: no fsync keeps them fast on a small machine.
    setsid "${as_server[@]}" "$bin/postgres" -D "$dir/data" -h 127.0.0.1 -p "$port" -k "$dir/socket" \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB \
        -c max_connections=60 >>"$dir/log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    for i in $(seq 1 200); do
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "the server exited at start; its log:" >&2
            cat "$dir/log" >&2
            exit 1
        fi
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.05
    done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" \
        || { echo "the server was not ready within 10 s; its log:" >&2; cat "$dir/log" >&2; exit 1; }
    if ! "$bin/psql" -h "$dir/socket" -p "$port" -U kiln -d postgres -tAqc \
        "SELECT 1 FROM pg_database WHERE datname = 'kiln'" | grep -q 1; then
        "$bin/createdb" -h "$dir/socket" -p "$port" -U kiln kiln
    fi
    echo "postgres://kiln:$password@127.0.0.1:$port/kiln" | tee "$dir/url"
    ;;
stop)
    dir=${2:?usage: postgres.sh stop DIR}
    [ -f "$dir/pid" ] || exit 0
    pid=$(cat "$dir/pid")
    # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
    kill -INT "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; exit 0; }
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
    ;;
*)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
