#!/usr/bin/env bash
# Backup and restore, as docs/production.md tells an operator to do them, on both
# databases: write through a running server, back up while it runs (SQLite: `tally
# backup`; PostgreSQL: pg_dump), restore into a fresh database (SQLite: the copy is the
# database; PostgreSQL: pg_restore into a new one), then compare the row count of every
# table and serve the restored copy. Run from the repository root:
#   bash .ci/backup-restore.sh [path/to/tally]    (default: target/release/tally)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TALLY="${1:-target/release/tally}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
work="$(mktemp -d)"
src_db="tally_bk_src_$$"
dst_db="tally_bk_dst_$$"
pid=""

psql_admin() { psql -X -w -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d test "$@"; }

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
    psql_admin -c "DROP DATABASE IF EXISTS $src_db WITH (FORCE)" >/dev/null 2>&1 || true
    psql_admin -c "DROP DATABASE IF EXISTS $dst_db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

export TALLY_JWT_SECRET="backup-check-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export TALLY_WRITE_RATE_PER_MIN=0 TALLY_LOG=warn

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Serves $1 in the background until `stop`; waits for /readyz.
start() {
    local port
    port="$(free_port)"
    base="http://127.0.0.1:$port"
    TALLY_DATABASE_URL="$1" TALLY_BIND="127.0.0.1:$port" "$TALLY" serve >>"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do
        "$TALLY" healthcheck --url "$base" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "!! the server did not become ready:" >&2
    cat "$work/server.log" >&2
    exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }

# Comments, replies, ratings, a flag and a moderation decision: rows in most tables.
write_some() {
    local reader mod
    reader="$("$TALLY" token --sub bk-reader --role reader)"
    mod="$("$TALLY" token --sub bk-mod --role moderator)"
    for a in first second; do
        for i in 1 2 3; do
            curl -fsS -o "$work/c.json" -H "Authorization: Bearer $reader" -H 'Content-Type: application/json' \
                -d "{\"body\": \"Comment $i on $a.\"}" "$base/api/v1/articles/$a/comments"
        done
        curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $reader" -H 'Content-Type: application/json' \
            -d '{"stars": 4}' "$base/api/v1/articles/$a/ratings/me"
    done
    local id
    id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/c.json")"
    curl -fsS -o /dev/null -H "Authorization: Bearer $mod" -H 'Content-Type: application/json' \
        -d '{"reason": "spam"}' "$base/api/v1/comments/$id/flags"
}

# "table count" lines for every table of a SQLite file.
sqlite_counts() {
    python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
    print(t, db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0])
PY
}

pg_counts() {
    local db=$1 t
    for t in $(psql -X -w -At -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$db" \
        -c "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"); do
        echo "$t $(psql -X -w -At -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$db" -c "SELECT COUNT(*) FROM \"$t\"")"
    done
}

compare() {
    if ! diff -u "$1" "$2"; then
        echo "!! $3: the restored database differs" >&2
        exit 1
    fi
    if ! grep -q '^comments 6$' "$1"; then
        echo "!! $3: expected 6 comments in the source:" >&2
        cat "$1" >&2
        exit 1
    fi
    echo "$3: every table has the same row count after restore ($(wc -l <"$1") tables)"
}

echo "--> SQLite: tally backup while serving, then serve the copy"
start "sqlite://$work/live.db?mode=rwc"
write_some
TALLY_DATABASE_URL="sqlite://$work/live.db" "$TALLY" backup "$work/backup.db" >/dev/null
sqlite_counts "$work/live.db" >"$work/sqlite-src.txt"
stop
sqlite_counts "$work/backup.db" >"$work/sqlite-dst.txt"
compare "$work/sqlite-src.txt" "$work/sqlite-dst.txt" SQLite
start "sqlite://$work/backup.db"
total="$(curl -fsS "$base/api/v1/articles/first/comments" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"
[ "$total" = 3 ] || { echo "!! SQLite: the restored copy serves $total comments on 'first', not 3" >&2; exit 1; }
stop

echo "--> PostgreSQL: pg_dump while serving, pg_restore into a fresh database"
psql_admin -c "CREATE DATABASE $src_db"
psql_admin -c "CREATE DATABASE $dst_db"
src_url="postgres://postgres@$PG_HOST:$PG_PORT/$src_db"
dst_url="postgres://postgres@$PG_HOST:$PG_PORT/$dst_db"
TALLY_DATABASE_URL="$src_url" "$TALLY" migrate >>"$work/server.log" 2>&1
start "$src_url"
write_some
pg_dump --format=custom --file="$work/tally.dump" "$src_url"
pg_counts "$src_db" >"$work/pg-src.txt"
stop
pg_restore --no-owner --exit-on-error --dbname="$dst_url" "$work/tally.dump"
pg_counts "$dst_db" >"$work/pg-dst.txt"
compare "$work/pg-src.txt" "$work/pg-dst.txt" PostgreSQL
TALLY_MIGRATE=false start "$dst_url"
total="$(curl -fsS "$base/api/v1/articles/second/comments" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"
[ "$total" = 3 ] || { echo "!! PostgreSQL: the restored database serves $total comments on 'second', not 3" >&2; exit 1; }
stop
echo "backup and restore: both databases round-trip"
