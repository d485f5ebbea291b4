\set id random(1, 10000)
BEGIN;
UPDATE nt SET v = v + 1 WHERE id = :id;
COMMIT;
SELECT pg_notify('tally_bench_x', 'x');
