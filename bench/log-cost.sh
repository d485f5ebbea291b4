#!/usr/bin/env bash
# What the access log costs a cached aggregate GET: the same release binary twice on one
# throwaway SQLite file, one logging at the default level (an access line per request)
# and one at TALLY_LOG=warn (none), driven in turns with the same wrk load so that the
# machine's drift hits both alike. For finding where a request's cost goes; the targets
# are judged by bench/run.sh.
#
#   bench/log-cost.sh [ROUNDS] [TALLY_BIN]
#
# ROUNDS (default 3) pairs of `wrk -t2 -c64 -d5s` on GET /api/v1/articles/a-1/rating (a
# cache hit), after a rating on a-1 through the API and a 2 s warm-up of each. Prints
# req/s of each run and the ratio quiet ÷ logging per round. Needs wrk and curl.
set -euo pipefail

rounds="${1:-3}"
bin="${2:-target/release/tally}"
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "log-cost.sh: $tool is missing" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "log-cost.sh: no $bin (cargo build --release -p tally)" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_temp_dir tally-log-cost
secret="log-cost-secret-log-cost-secret-0123456789"
db="sqlite://$dir/tally.db?mode=rwc"

# Migrate once, so the two servers do not race to create the schema.
env -i PATH="$PATH" TALLY_DATABASE_URL="$db" TALLY_JWT_SECRET="$secret" "$bin" migrate \
    >"$dir/migrate.log" 2>&1

start() { # port log-level
    env -i PATH="$PATH" TALLY_DATABASE_URL="$db" TALLY_BIND="127.0.0.1:$1" \
        TALLY_JWT_SECRET="$secret" TALLY_LOG="$2" TALLY_WRITE_RATE_PER_MIN=0 \
        "$bin" serve >"$dir/server-$2.log" 2>&1 &
    pids+=("$!")
    wait_ready log-cost.sh "$1" /readyz "$dir/server-$2.log"
}
port_log=$((20000 + RANDOM % 20000))
port_quiet=$((port_log + 1))
start "$port_log" info
start "$port_quiet" warn

token="$(TALLY_JWT_SECRET="$secret" "$bin" token --sub log-cost-reader)"
curl -sf -o /dev/null -X PUT -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"stars": 4}' \
    "http://127.0.0.1:$port_log/api/v1/articles/a-1/ratings/me"

path="/api/v1/articles/a-1/rating"
run() { # port seconds → req/s (fails on any non-2xx answer or socket error)
    local out
    out="$(wrk -t2 -c64 -d"$2"s "http://127.0.0.1:$1$path")"
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "log-cost.sh: errors in a run on port $1:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}
run "$port_log" 2 >/dev/null
run "$port_quiet" 2 >/dev/null

echo "binary: $bin (checkout at $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
echo "round  access-log-on req/s  access-log-off req/s  off/on"
for i in $(seq 1 "$rounds"); do
    on="$(run "$port_log" 5)"
    off="$(run "$port_quiet" 5)"
    echo "$i  $on  $off  $(awk -v a="$off" -v b="$on" 'BEGIN {printf "%.2f", a / b}')"
done
