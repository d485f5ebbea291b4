#!/usr/bin/env bash
# The one benchmark command (see BENCHMARKS.md): installs wrk if missing, starts the
# local PostgreSQL cluster if it is down, builds the release binaries and runs the
# harness. Arguments go to tally-bench, e.g.
#   bench/run.sh --duration 3 --big-comments 100000 --backends sqlite
set -euo pipefail

cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "bench/run.sh: cargo is not installed; install Rust with https://rustup.rs first" >&2
    exit 1
fi

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench/run.sh: installing wrk (apt-get)" >&2
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk
fi

# PostgreSQL: start the local cluster when it is installed and down. Without it the
# harness reports the postgres backend as skipped (or pass --backends sqlite).
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; then
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
        echo "bench/run.sh: starting PostgreSQL $version" >&2
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
else
    echo "bench/run.sh: PostgreSQL is not installed here; the postgres backend will be skipped" >&2
    echo "             (install postgresql, or run with --backends sqlite)" >&2
fi

cargo build --release -p tally -p tally-bench
# Where cargo put them: CARGO_TARGET_DIR when it is set (relative to the repository root,
# as cargo takes it), else target/.
exec "${CARGO_TARGET_DIR:-target}/release/tally-bench" "$@"
