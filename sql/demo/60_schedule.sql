-- Scheduling: every recurring piece of upkeep from the steps above, each one call, each run as
-- the role that scheduled it: by pg_cron here; without pg_cron, by dbopt's own background worker
-- (dbopt in shared_preload_libraries, the database in dbopt.worker_databases).
\echo
\echo '== dbopt.set_archive_policy(): what the nightly archive job moves (checked now, as a run would)'
SELECT dbopt.set_archive_policy('dbopt_demo.orders', 'created_at', '2 years', batch_size => 10000);
SELECT dbopt.set_archive_policy('dbopt_demo.ml_jobs', 'created_at', '30 days',
                                filter => $$status IN ('completed', 'failed')$$);

\echo '== dbopt.schedule(): all of dbopt''s upkeep'
SELECT dbopt.schedule('maintenance', '*/10 * * * *') AS partitions_job,
       dbopt.schedule('archive', '0 3 * * *') AS archive_job,
       dbopt.schedule('refresh_rolling', '*/5 * * * *') AS rolling_job,
       dbopt.schedule('refresh_matviews', '* * * * *') AS matviews_job,
       dbopt.schedule('snapshot_stats', '@hourly') AS snapshot_job;

\echo '== dbopt.jobs: one statement each, run as its owner (runner pg_cron: a pg_cron job named dbopt_job_<id>)'
SELECT job_id, task, cron, command, owner, runner, cron_job_id IS NOT NULL AS in_pg_cron
  FROM dbopt.jobs ORDER BY job_id;
