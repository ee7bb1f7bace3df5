# Shared by the service scripts: a free port on 127.0.0.1, waiting for readiness, stopping.
# Sourced, not run.

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready DIR URL: polls URL until it answers (any HTTP status) or the server died; 10 s at most.
wait_ready() {
    local dir=$1 url=$2 i
    for i in $(seq 1 200); do
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "the server exited at start; its log:" >&2
            cat "$dir/log" >&2
            return 1
        fi
        if curl -s -o /dev/null "$url"; then
            return 0
        fi
        sleep 0.05
    done
    echo "the server did not answer $url within 10 s; its log:" >&2
    cat "$dir/log" >&2
    return 1
}

# stop DIR: stops the server started in DIR (TERM, then KILL after 5 s).
stop_server() {
    local dir=$1 pid i
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; return 0; }
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}
