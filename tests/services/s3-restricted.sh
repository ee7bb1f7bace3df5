#!/usr/bin/env bash
# A second S3 server over another one's objects, with credentials of its own that may not write one
# prefix: what an S3 bucket policy gives the submitters of a worker fleet (they add sources' blobs,
# they never write the action cache). The same s3s-fs, in a mount namespace of its own where the
# prefix's folder is bound read-only, so a write there fails whatever kiln asks.
#
#   s3-restricted.sh start DIR DATA ACCESS_KEY SECRET_KEY READ_ONLY
#                                  serves DATA (another s3.sh server's DIR/data) on a free
#                                  127.0.0.1 port, DATA/READ_ONLY (bucket/prefix/...) read-only;
#                                  prints the endpoint URL (also in DIR/endpoint); log in DIR/log
#   s3-restricted.sh stop DIR      stops it
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

case "${1:-}" in
start)
    dir=${2:?usage: s3-restricted.sh start DIR DATA ACCESS_KEY SECRET_KEY READ_ONLY}
    data=${3:?data folder}
    access=${4:?access key}
    secret=${5:?secret key}
    readonly=${6:?read-only folder below DATA}
    bin=$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")
    [ -x "$bin" ] || { echo "s3s-fs is not installed: run tests/services/s3.sh install" >&2; exit 1; }
    mkdir -p "$dir" "$data/$readonly"
    port=$(cat "$dir/port" 2>/dev/null || free_port)
    echo "$port" >"$dir/port"
    # Root makes a mount namespace directly; another user makes a user namespace for it too.
    ns=(unshare -m --propagation private)
    [ "$(id -u)" = 0 ] || ns=(unshare -Urm --propagation private)
    setsid "${ns[@]}" sh -c 'mount --bind -o ro "$1" "$1" && shift && exec "$@"' sh \
        "$data/$readonly" "$bin" --host 127.0.0.1 --port "$port" --access-key "$access" \
        --secret-key "$secret" "$data" >>"$dir/log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    wait_ready "$dir" "http://127.0.0.1:$port/"
    echo "http://127.0.0.1:$port" | tee "$dir/endpoint"
    ;;
stop)
    stop_server "${2:?usage: s3-restricted.sh stop DIR}"
    ;;
*)
    sed -n '2,11p' "$0" >&2
    exit 2
    ;;
esac
