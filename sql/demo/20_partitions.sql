-- Issue 3: partitions. Seed 001 (C1, C3) wants orders partitioned by created_at with a batched
-- backfill and a short cut-over. dbopt.partition_table does it online: rows are copied in
-- committed batches while writers carry on, then a swap waits at most dbopt.lock_timeout.
\echo '== Seed 001 C1: converting dbopt_demo.orders to monthly partitions, online'
SELECT count(*) AS orders_before, sum(total_amount) AS total_before FROM dbopt_demo.orders;
\timing on
CALL dbopt.partition_table('dbopt_demo.orders', 'created_at', '1 month', batch_size => 50000);
\timing off
SELECT count(*) AS orders_after, sum(total_amount) AS total_after FROM dbopt_demo.orders;
\echo '-- the original table is kept, renamed, until you drop it:'
DROP TABLE dbopt_demo.orders_dbopt_old;

\echo '== What maintenance would do next (a dry run; nothing to do right after the conversion)'
SELECT step, statement, lock_mode FROM dbopt.maintenance_plan('dbopt_demo.orders');

\echo '== A row that lands in the default partition, far ahead, and a run of maintenance'
INSERT INTO dbopt_demo.orders (user_id, total_amount, status, created_at)
VALUES (1, 9.99, 'pending', now() + interval '5 months');
CALL dbopt.run_maintenance('dbopt_demo.orders');
SELECT action, object, round(duration_ms::numeric, 2) AS ms, round(lock_wait_ms::numeric, 2) AS lock_wait_ms,
       outcome, detail
  FROM dbopt.partition_log WHERE parent = 'dbopt_demo.orders'::regclass AND action <> 'create'
 ORDER BY id;

\echo '== The next scheduled run: which parents it will check in full, and why'
SELECT parent, due, reason FROM dbopt.maintenance_due();

\echo '== dbopt.partition_health'
\x on
SELECT * FROM dbopt.partition_health WHERE parent = 'dbopt_demo.orders'::regclass;
\x off

\echo '== Seed 001 A1 again, now with partition pruning on created_at (timed)'
\timing on
\ir seed001_a1.sql
\timing off
