#!/usr/bin/env bash
# POST comment throughput of two tally builds, alone (no webhooks), in turns: for
# checking that a change did not slow the plain write path. The webhooks harness runs a
# plain and a hooked server side by side, so its plain rate is not this.
#
#   bench/post-pair.sh [ROUNDS] BIN_A BIN_B
#
# Starts both builds (`serve`, a fresh SQLite file each in a temp dir, write limit
# off, one reader token), then ROUNDS rounds (default 5) of `wrk -t1 -c16 -d4s` POSTing
# comments (a new text each time, over 50 articles) to A then B, and prints each
# round's req/s and B ÷ A. Needs wrk. Both servers stop at the end; nothing is written
# outside the temp dir.
set -euo pipefail

rounds=5
if [[ $# -eq 3 ]]; then rounds="$1"; shift; fi
bin_a="${1:?usage: bench/post-pair.sh [ROUNDS] BIN_A BIN_B}"
bin_b="${2:?usage: bench/post-pair.sh [ROUNDS] BIN_A BIN_B}"
command -v wrk >/dev/null || { echo "post-pair.sh: wrk is missing (apt-get install wrk)" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_temp_dir tally-post-pair

secret="post-pair-secret-$(date +%s)-0123456789abcdef"
token="$(TALLY_JWT_SECRET="$secret" "$bin_a" token --sub u-1 --name Bench --role reader --ttl 3600)"
cat > "$dir/post.lua" <<'LUA'
local n = 0
local auth = "Bearer " .. os.getenv("TOKEN")
request = function()
  n = n + 1
  local body = '{"body":"Plain POST bench comment ' .. math.random(1, 1e9) .. ' ' .. n .. '"}'
  return wrk.format("POST", "/api/v1/articles/bench-" .. (n % 50) .. "/comments",
    {["Content-Type"] = "application/json", ["Authorization"] = auth}, body)
end
LUA

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # name bin port
    mkdir -p "$dir/$1"
    env -i PATH="$PATH" TALLY_DATABASE_URL="sqlite://$dir/$1/t.db?mode=rwc" \
        TALLY_BIND="127.0.0.1:$3" TALLY_JWT_SECRET="$secret" TALLY_WRITE_RATE_PER_MIN=0 \
        TALLY_LOG=warn "$2" serve >"$dir/$1/log" 2>&1 &
    pids+=("$!")
    wait_ready post-pair.sh "$3" /readyz "$dir/$1/log"
}
port_a="$(free_port)"; start a "$bin_a" "$port_a"
port_b="$(free_port)"; start b "$bin_b" "$port_b"

rate() { TOKEN="$token" wrk -t1 -c16 -d4s -s "$dir/post.lua" "http://127.0.0.1:$1" \
    | awk '/Requests\/sec/ {print $2}'; }
echo "| round | A req/s | B req/s | B ÷ A |"
echo "|---:|---:|---:|---:|"
for r in $(seq 1 "$rounds"); do
    a="$(rate "$port_a")"
    b="$(rate "$port_b")"
    echo "| $r | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b / a}') |"
done
