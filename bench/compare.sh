#!/usr/bin/env bash
# Compares tally builds on the cached aggregate GET, against the static ceiling, in one
# run: for deciding whether a change helps, where the full harness (bench/run.sh)
# judges the targets.
#
#   bench/compare.sh [ROUNDS] TALLY_BIN...
#
# Starts the harness's bare actix-web static JSON ceiling (`tally-bench ceiling-static`:
# $TALLY_BENCH, default target/release/tally-bench) and every TALLY_BIN (`serve`, SQLite in a temp dir, write
# limit off, one rating on a-1), then runs ROUNDS rounds (default 8) of a 2 s
# `wrk -t2 -c64` on each in turn: `/` on the ceiling, `/api/v1/articles/a-1/rating` (a
# cache hit) on each build. It prints, per build, the median over rounds of
#   - req/s ÷ the ceiling's req/s in the same round,
#   - req/s ÷ the first build's req/s in the same round (1.00 for the first),
#   - req/s ÷ the previous build's req/s in the same round, with its spread over the
#     rounds (lowest–highest): what each change did, for builds one change apart;
#   - context switches per request, machine-wide (/proc/stat `ctxt` before and after
#     the run, divided by the requests answered), for the ceiling too;
#   - CPU time per request, in microseconds: the server's in user space and in the
#     kernel (its /proc/<pid>/stat `utime` and `stime`, in clock ticks, before and
#     after the run) and wrk's (user + system, by bash's `time`), for the ceiling too.
# Builds to compare must be kept as separate files (cp target/release/tally /tmp/a).
# Needs wrk and curl. Everything stops at the end; nothing is written outside a temp dir.
set -euo pipefail

rounds=8
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    rounds=$1
    shift
fi
[ $# -ge 1 ] || { echo "usage: bench/compare.sh [ROUNDS] TALLY_BIN..." >&2; exit 2; }
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing" >&2; exit 2; }
done
for bin in "$@"; do
    [ -x "$bin" ] || { echo "compare.sh: no $bin" >&2; exit 2; }
done
ceiling_bin="${TALLY_BENCH:-$(dirname "$0")/../target/release/tally-bench}"
[ -x "$ceiling_bin" ] || { echo "compare.sh: no $ceiling_bin (cargo build --release -p tally-bench)" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_temp_dir tally-compare
secret="compare-secret-compare-secret-0123456789"
ports=()
names=()

port=$((20000 + RANDOM % 20000))
"$ceiling_bin" ceiling-static --bind "127.0.0.1:$port" >/dev/null 2>&1 &
pids+=($!); ports+=("$port"); names+=("static ceiling")
wait_ready compare.sh "$port" /

for i in $(seq 1 $#); do
    bin="${!i}"
    port=$((port + 1))
    mkdir -p "$dir/$i"
    env -i PATH="$PATH" TALLY_DATABASE_URL="sqlite://$dir/$i/tally.db?mode=rwc" \
        TALLY_BIND="127.0.0.1:$port" TALLY_JWT_SECRET="$secret" TALLY_WRITE_RATE_PER_MIN=0 \
        "$bin" serve >"$dir/$i/server.log" 2>&1 &
    pids+=($!); ports+=("$port"); names+=("$bin")
    wait_ready compare.sh "$port" /readyz "$dir/$i/server.log"
    token="$(TALLY_JWT_SECRET="$secret" "$bin" token --sub compare-reader)"
    curl -sf -o /dev/null -X PUT -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d '{"stars": 4}' \
        "http://127.0.0.1:$port/api/v1/articles/a-1/ratings/me"
done

ctxt() { awk '/^ctxt/ {print $2}' /proc/stat; }
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # utime stime (after the comm field)
TIMEFORMAT='%U %S'
tck=$(getconf CLK_TCK)
results="$dir/results"
: >"$results"
for round in $(seq 1 "$rounds"); do
    for i in "${!ports[@]}"; do
        path=/api/v1/articles/a-1/rating
        [ "$i" -eq 0 ] && path=/
        before=$(ctxt)
        read -r u0 s0 < <(cpu_ticks "${pids[$i]}")
        { time wrk -t2 -c64 -d2s "http://127.0.0.1:${ports[$i]}$path" >"$dir/wrk.out"; } 2>"$dir/wrk.time"
        read -r u1 s1 < <(cpu_ticks "${pids[$i]}")
        after=$(ctxt)
        out="$(cat "$dir/wrk.out")"
        read -r wu ws <"$dir/wrk.time"
        if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
            echo "compare.sh: errors in round $round on ${names[$i]}:" >&2
            echo "$out" >&2
            exit 1
        fi
        rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
        total=$(echo "$out" | awk '/requests in/ {print $1}')
        echo "$round $i $rps $(( after - before )) $total $(( u1 - u0 )) $(( s1 - s0 )) $wu $ws" >>"$results"
    done
    echo "  round $round/$rounds done" >&2
done

python3 - "$results" "$tck" "${names[@]}" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
tck = int(sys.argv[2])
names = sys.argv[3:]
by = {}
for rnd, i, rps, switches, total, utime, stime, wuser, wsys in rows:
    n = max(int(total), 1)
    by[(int(rnd), int(i))] = (
        float(rps),
        int(switches) / n,
        int(utime) * 1e6 / tck / n,
        int(stime) * 1e6 / tck / n,
        (float(wuser) + float(wsys)) * 1e6 / n,
    )
rounds = sorted({r for r, _ in by})
med = lambda i, k: statistics.median(by[(r, i)][k] for r in rounds)
print(f"{'build':<40} {'÷ ceiling':>10} {'÷ first build':>14} {'÷ previous (low–high)':>22}"
      f" {'switches/req':>13} {'server user µs':>15} {'server sys µs':>14} {'wrk µs':>7}")
for i, name in enumerate(names):
    cpu = f"{med(i, 2):>15.2f} {med(i, 3):>14.2f} {med(i, 4):>7.2f}"
    if i == 0:
        print(f"{name:<40} {'':>10} {'':>14} {'':>22} {med(i, 1):>13.3f} {cpu}   ({med(0, 0):.0f} req/s)")
        continue
    to_ceiling = statistics.median(by[(r, i)][0] / by[(r, 0)][0] for r in rounds)
    to_first = statistics.median(by[(r, i)][0] / by[(r, 1)][0] for r in rounds)
    prev = ""
    if i > 1:
        ratios = [by[(r, i)][0] / by[(r, i - 1)][0] for r in rounds]
        prev = f"{statistics.median(ratios):.3f} ({min(ratios):.2f}–{max(ratios):.2f})"
    print(f"{name:<40} {to_ceiling:>10.3f} {to_first:>14.3f} {prev:>22} {med(i, 1):>13.3f} {cpu}")
EOF
