-- Issue 4: archiving. Seed 001 (C2) moves orders older than 2 years to orders_archive and keeps
-- them reachable through a UNION; seed 002 archives completed and failed ml_jobs older than 30
-- days. dbopt.archive moves rows in committed batches, each one statement that deletes and
-- inserts the same rows; partitions lying wholly before the cutoff move by DETACH and ATTACH.
\echo '== Seed 001 C2: orders older than 2 years to dbopt_demo.orders_archive'
SELECT count(*) AS orders, sum(total_amount) AS total FROM dbopt_demo.orders;
\timing on
CALL dbopt.archive('dbopt_demo.orders', 'created_at', '2 years', batch_size => 10000);
\timing off
SELECT direction, rows_moved, partitions_moved, batches, round(rows_per_second) AS rows_per_s,
       status, finished - started AS took
  FROM dbopt.archive_runs WHERE source = 'dbopt_demo.orders'::regclass ORDER BY id;

\echo '== Hot and archived orders: nothing lost, nothing twice'
SELECT (SELECT count(*) FROM dbopt_demo.orders) AS hot,
       (SELECT count(*) FROM dbopt_demo.orders_archive) AS archived,
       (SELECT count(*) FROM dbopt_demo.orders) + (SELECT count(*) FROM dbopt_demo.orders_archive) AS together,
       (SELECT sum(total_amount) FROM dbopt_demo.orders)
         + (SELECT sum(total_amount) FROM dbopt_demo.orders_archive) AS total,
       (SELECT count(*) FROM dbopt_demo.orders o JOIN dbopt_demo.orders_archive a USING (id)) AS in_both;

\echo '== The full history stays queryable (seed 001 C2: a UNION of hot and archive)'
SELECT dbopt.create_history_view('dbopt_demo.orders');
SELECT extract(year FROM created_at)::int AS year, count(*) AS orders, sum(total_amount) AS total
  FROM dbopt_demo.orders_history GROUP BY 1 ORDER BY 1;

\echo '== Seed 002: completed and failed ml_jobs older than 30 days to ml_jobs_archive'
CALL dbopt.archive('dbopt_demo.ml_jobs', 'created_at', '30 days',
                   filter => $$status IN ('completed', 'failed')$$, batch_size => 10000);
SELECT status, count(*) FILTER (WHERE created_at < now() - interval '30 days') AS older_than_30_days,
       count(*) AS still_hot
  FROM dbopt_demo.ml_jobs GROUP BY status ORDER BY status;
SELECT rows_moved, batches, round(rows_per_second) AS rows_per_s, status
  FROM dbopt.archive_runs WHERE source = 'dbopt_demo.ml_jobs'::regclass;

\echo '== A job needed again: dbopt.unarchive brings it back, with its id'
-- The filter is evaluated for every batch, so it names the job rather than computing it from
-- the archive the rows are leaving.
SELECT format('id = %s', min(id)) AS job FROM dbopt_demo.ml_jobs_archive \gset
CALL dbopt.unarchive('dbopt_demo.ml_jobs', :'job');
SELECT direction, rows_moved, status FROM dbopt.archive_runs
 WHERE source = 'dbopt_demo.ml_jobs'::regclass ORDER BY id;
