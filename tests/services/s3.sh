#!/usr/bin/env bash
# The S3 server kiln's tests talk to: s3s-fs, a real S3 server over a folder that checks SigV4.
#
#   s3.sh install                  cargo install s3s-fs@0.14.1 --features binary --locked (idempotent;
#                                  0.14.1 is the last release that builds with kiln's toolchain)
#   s3.sh start DIR ACCESS_KEY SECRET_KEY [BUCKET...]
#                                  starts it on a free 127.0.0.1 port with its objects in DIR/data and
#                                  the buckets made; waits until it answers; prints the endpoint URL
#                                  (also in DIR/endpoint); log in DIR/log
#   s3.sh stop DIR                 stops it
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

find_s3s() {
    command -v s3s-fs || { [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ] && echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"; }
}

case "${1:-}" in
install)
    find_s3s >/dev/null && exit 0
    cargo install s3s-fs@0.14.1 --features binary --locked
    ;;
start)
    dir=${2:?usage: s3.sh start DIR ACCESS_KEY SECRET_KEY [BUCKET...]}
    access=${3:?access key}
    secret=${4:?secret key}
    shift 4
    bin=$(find_s3s) || { echo "s3s-fs is not installed: run tests/services/s3.sh install" >&2; exit 1; }
    mkdir -p "$dir/data"
    for bucket in "$@"; do mkdir -p "$dir/data/$bucket"; done
    # A restart in the same DIR comes back on the same port, over the same data.
    port=$(cat "$dir/port" 2>/dev/null || free_port)
    echo "$port" >"$dir/port"
    setsid "$bin" --host 127.0.0.1 --port "$port" --access-key "$access" --secret-key "$secret" \
        "$dir/data" >>"$dir/log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    wait_ready "$dir" "http://127.0.0.1:$port/"
    echo "http://127.0.0.1:$port" | tee "$dir/endpoint"
    ;;
stop)
    stop_server "${2:?usage: s3.sh stop DIR}"
    ;;
*)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac
