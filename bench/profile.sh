#!/usr/bin/env bash
# Instructions per request of one scenario, counted by valgrind's callgrind: repeatable
# where wall-clock numbers are not (the same binary and load give the same count,
# whatever else the machine is doing). For finding where a request's cost goes; the
# targets are judged by bench/run.sh.
#
#   bench/profile.sh aggregate|batch|page|post|static [TALLY_BIN]
#
# Starts TALLY_BIN (default target/release/tally, build it first) under callgrind with
# one worker on a throwaway SQLite file, seeds through the API (a rating on each of
# a-1 … a-50), warms up for 2 s, then counts 8 s of `wrk -t1 -c4` on the scenario:
#   aggregate  GET /api/v1/articles/a-1/rating (a cache hit)
#   batch      GET /api/v1/ratings with a-1 … a-50
#   page       GET /api/v1/articles/a-1/comments as a signed-in reader (never cached),
#              after 60 comments on a-1 through the API
#   post       POST /api/v1/articles/a-1/comments, one reader, a new text each time
#   static     the harness's bare actix-web static JSON ceiling (`tally-bench
#              ceiling-static`, next to TALLY_BIN), with its default workers: what the
#              aggregate's count compares with
# and prints instructions ÷ requests answered, for the whole process and, for `post`,
# for the thread that runs the group-commit writer (the main thread). The callgrind
# file stays in the temp dir it names. Needs valgrind and wrk (apt-get install).
set -euo pipefail

scenario="${1:?usage: bench/profile.sh aggregate|batch|page|post|static [TALLY_BIN]}"
bin="${2:-target/release/tally}"
for tool in valgrind callgrind_control callgrind_annotate wrk curl; do
    command -v "$tool" >/dev/null || { echo "profile.sh: $tool is missing" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "profile.sh: no $bin (cargo build --release -p tally)" >&2; exit 2; }

dir="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
secret="profile-secret-profile-secret-0123456789"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

profiled=("$bin" serve)
ready=/readyz
if [ "$scenario" = static ]; then
    profiled=("$(dirname "$bin")/tally-bench" ceiling-static --bind "127.0.0.1:$port")
    ready=/
    [ -x "${profiled[0]}" ] || { echo "profile.sh: no ${profiled[0]} (cargo build --release -p tally-bench)" >&2; exit 2; }
fi
env -i PATH="$PATH" TALLY_DATABASE_URL="sqlite://$dir/tally.db?mode=rwc" \
    TALLY_BIND="127.0.0.1:$port" TALLY_JWT_SECRET="$secret" TALLY_WORKERS=1 \
    TALLY_WRITE_RATE_PER_MIN=0 \
    valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$dir/callgrind.out" "${profiled[@]}" >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port$ready" >/dev/null && break
    sleep 0.1
done
token="$(TALLY_JWT_SECRET="$secret" "$bin" token --sub profile-reader)"
send() { # method path json: one write as the profiled reader
    curl -sf -o /dev/null -X "$1" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d "$3" "http://127.0.0.1:$port$2"
}
if [ "$scenario" != static ]; then
    for i in $(seq 1 50); do
        send PUT "/api/v1/articles/a-$i/ratings/me" '{"stars": 4}'
    done
fi

url="http://127.0.0.1:$port"
script=()
case "$scenario" in
    aggregate) url="$url/api/v1/articles/a-1/rating" ;;
    batch) url="$url/api/v1/ratings?$(seq -s '&' -f 'article_id=a-%g' 1 50)" ;;
    page)
        for i in $(seq 1 60); do
            send POST /api/v1/articles/a-1/comments "{\"body\": \"seeded comment $i\"}"
        done
        url="$url/api/v1/articles/a-1/comments"
        script=(-H "Authorization: Bearer $token")
        ;;
    post)
        cat >"$dir/post.lua" <<EOF
counter = 0
function request()
  counter = counter + 1
  return wrk.format("POST", "/api/v1/articles/a-1/comments",
    { ["Authorization"] = "Bearer $token", ["Content-Type"] = "application/json" },
    '{"body":"profiled comment ' .. counter .. '-' .. math.random(1, 1000000000) .. '"}')
end
EOF
        script=(-s "$dir/post.lua")
        ;;
    static) ;;
    *) echo "profile.sh: unknown scenario $scenario" >&2; exit 2 ;;
esac

wrk -t1 -c4 -d2s "${script[@]}" "$url" >/dev/null
callgrind_control -z "$pid" >/dev/null
requests="$(wrk -t1 -c4 -d8s "${script[@]}" "$url" | awk '/requests in/ {print $1}')"
callgrind_control -d "$pid" >/dev/null
sleep 1

total=0
main=0
for f in "$dir"/callgrind.out.1-*; do
    n="$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print ($1 == "." ? 0 : $1)}')"
    total=$((total + n))
    # The main thread's file holds the runtime that runs the group-commit writer.
    if callgrind_annotate --inclusive=yes "$f" 2>/dev/null | grep -q 'tally::main'; then
        main=$((main + n))
    fi
done
echo "scenario: $scenario; binary: $bin (built when it was; checkout now at $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
echo "requests answered: $requests"
echo "instructions per request, whole process: $((total / requests))"
if [ "$scenario" = post ]; then
    echo "instructions per request, main thread (group-commit writer): $((main / requests))"
fi
echo "callgrind files: $dir/callgrind.out.1-*"
