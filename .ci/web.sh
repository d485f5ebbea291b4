#!/usr/bin/env bash
# The front ends (web/): rebuilds them and fails when the committed build in web/dist/
# differs from the sources, checks the size budgets, and runs the browser tests in
# Debian's Chromium (installed here when missing; nothing downloads a browser) against a
# debug build of tally on SQLite, and on PostgreSQL too when TALLY_WEB_TEST_PG_URL is set.
# Called by .ci/run; runs alone as `bash .ci/web.sh` from anywhere in the repository.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

WIDGET_BUDGET=$((20 * 1024))
CONSOLE_BUDGET=$((60 * 1024))

if [ ! -x /usr/bin/chromium ]; then
    echo "--> installing chromium (apt)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
/usr/bin/chromium --version || true

echo "--> npm ci (web/)"
(cd web && npm ci --no-audit --no-fund)

echo "--> rebuilding web/dist from the sources"
(cd web && node build.mjs)
if ! git diff --exit-code --stat -- web/dist || [ -n "$(git status --porcelain -- web/dist)" ]; then
    echo "!! web/dist differs from what web/src builds: run 'npm run build' in web/ and commit the result" >&2
    exit 1
fi
echo "web/dist matches the sources"

echo "--> size budgets (gzip -9)"
check_budget() {
    local file=$1 budget=$2 size
    size=$(gzip -9 -c "$file" | wc -c)
    echo "$file: $size bytes gzipped (budget $budget)"
    if [ "$size" -gt "$budget" ]; then
        echo "!! $file is over its budget" >&2
        exit 1
    fi
}
# The widget's budget covers both elements: tally.js and the thread it loads.
widget_all="$(mktemp)"
cat web/dist/tally.js web/dist/tally-comments.js >"$widget_all"
echo "(the widget: web/dist/tally.js + web/dist/tally-comments.js)"
check_budget "$widget_all" "$WIDGET_BUDGET"
rm -f "$widget_all"
check_budget web/dist/console.html "$CONSOLE_BUDGET"

echo "--> building tally (debug) for the browser tests"
cargo build -p tally --bin tally
TALLY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/tally"
export TALLY_BIN

echo "--> browser tests on SQLite"
(cd web && timeout --kill-after=10 300 node --test --test-concurrency=1 test/)

if [ -n "${TALLY_WEB_TEST_PG_URL:-}" ]; then
    echo "--> browser tests on PostgreSQL"
    (cd web && TALLY_WEB_TEST_DATABASE_URL="$TALLY_WEB_TEST_PG_URL" \
        timeout --kill-after=10 300 node --test --test-concurrency=1 test/)
fi
echo "web: build reproducible, budgets met, browser tests passed"
