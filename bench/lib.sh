# Shared by the bench scripts (sourced, not run): a temp dir for their servers, which are
# stopped and the dir removed when the script exits, and a wait for a server to answer.

# Sets `dir` (a new temp dir named after $1) and `pids` (add each server started), and
# stops them and removes the dir on exit.
bench_temp_dir() { # name
    dir="$(mktemp -d -t "$1-XXXXXX")"
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}

# Waits up to 30 s for http://127.0.0.1:PORT/PATH to answer 2xx; else says so (with the
# server's LOG, if given) and exits.
wait_ready() { # script port path [log]
    for _ in $(seq 1 300); do
        curl -sf -o /dev/null "http://127.0.0.1:$2$3" && return 0
        sleep 0.1
    done
    echo "$1: nothing answers on port $2" >&2
    [ -n "${4:-}" ] && cat "$4" >&2
    exit 1
}
