#!/usr/bin/env bash
# The OCI registry kiln's tests push to: Debian's docker-registry (the CNCF distribution registry 2.8).
#
#   registry.sh install            apt-get install docker-registry apache2-utils (idempotent)
#   registry.sh start DIR [USER:PASSWORD]
#                                  starts it on a free 127.0.0.1 port with its storage in DIR/data,
#                                  with htpasswd (bcrypt) basic auth when a user is given; waits until
#                                  it answers; prints host:port (also in DIR/address); log in DIR/log
#   registry.sh stop DIR           stops it
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

case "${1:-}" in
install)
    if command -v docker-registry >/dev/null && command -v htpasswd >/dev/null; then
        exit 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "docker-registry is not installed: run 'sudo apt-get install docker-registry apache2-utils'" >&2
        exit 1
    fi
    apt-get install -y --no-install-recommends docker-registry apache2-utils >/dev/null
    ;;
start)
    dir=${2:?usage: registry.sh start DIR [USER:PASSWORD]}
    mkdir -p "$dir/data"
    # A restart in the same DIR comes back on the same port, over the same data.
    port=$(cat "$dir/port" 2>/dev/null || free_port)
    echo "$port" >"$dir/port"
    auth=""
    if [ -n "${3:-}" ]; then
        htpasswd -Bbn "${3%%:*}" "${3#*:}" >"$dir/htpasswd"
        auth="auth:
  htpasswd:
    realm: kiln-test
    path: $dir/htpasswd"
    fi
    cat >"$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
CONFIG
    # setsid: the registry outlives this script, in a session of its own.
    setsid docker-registry serve "$dir/config.yml" >>"$dir/log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    wait_ready "$dir" "http://127.0.0.1:$port/v2/"
    echo "127.0.0.1:$port" | tee "$dir/address"
    ;;
stop)
    stop_server "${2:?usage: registry.sh stop DIR}"
    ;;
*)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac
