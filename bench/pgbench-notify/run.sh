#!/usr/bin/env bash
# Commits per second of one-row UPDATEs with and without a NOTIFY in the transaction
# (BENCHMARKS.md, "PostgreSQL commits"). Usage: bench/pgbench-notify/run.sh [DB]
set -euo pipefail
db=${1:-test}
dir=$(cd "$(dirname "$0")" && pwd)
psql -h 127.0.0.1 -U postgres -d "$db" -qc "DROP TABLE IF EXISTS nt; CREATE TABLE nt(id int primary key, v int); INSERT INTO nt SELECT g,0 FROM generate_series(1,10000) g;"
for s in commit notify-in-tx notify-after commit notify-in-tx notify-after; do
    printf '%s: ' "$s"
    pgbench -h 127.0.0.1 -U postgres -n -c 32 -j 2 -T 5 -f "$dir/$s.sql" "$db" 2>&1 | grep '^tps'
done
psql -h 127.0.0.1 -U postgres -d "$db" -qc "DROP TABLE nt"
