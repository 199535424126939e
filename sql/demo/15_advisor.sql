-- Issue 6: the index advisor. Seed 002 lists four problem queries on ml_jobs and picks indexes
-- by hand. dbopt reads the workload from pg_stat_statements, costs candidate indexes with
-- hypothetical ones inside the planner, and builds the one chosen through pg_cron.
\echo '== Seed 002: its four problem queries on ml_jobs, 10 times each'
-- Statements run by the function below are nested; recording them needs track = all.
SET pg_stat_statements.track = 'all';
SELECT pg_stat_statements_reset();
CREATE FUNCTION pg_temp.seed002_workload(times int) RETURNS interval
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    FOR i IN 1..times LOOP
        PERFORM * FROM dbopt_demo.ml_jobs WHERE status = 'pending' ORDER BY created_at LIMIT 100;
        PERFORM * FROM dbopt_demo.ml_jobs ORDER BY created_at DESC LIMIT 50 OFFSET 1000;
        PERFORM * FROM dbopt_demo.ml_jobs
          WHERE created_at BETWEEN now() - interval '40 days' AND now() - interval '39 days'
            AND status = 'completed';
        PERFORM status, count(*) FROM dbopt_demo.ml_jobs GROUP BY status;
    END LOOP;
    RETURN clock_timestamp() - started;
END
$$;
CREATE VIEW pg_temp.statement_times AS
SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 70) AS statement, calls,
       round((total_exec_time / calls)::numeric, 2) AS mean_ms
  FROM pg_stat_statements
 WHERE query LIKE '%dbopt_demo.ml_jobs%' AND query NOT LIKE '%seed002_workload%'
 ORDER BY query;
SELECT pg_temp.seed002_workload(10) AS "workload time, no index but the primary key's";
SELECT * FROM pg_temp.statement_times;

\echo '== dbopt.recommend_indexes(): one set of indexes for the whole workload'
SELECT table_name, index_definition, pg_size_pretty(estimated_bytes) AS size,
       round(benefit) AS benefit, round(write_penalty) AS write_penalty,
       (SELECT string_agg(format('%s calls: cost %s -> %s', q->>'calls',
                                 round((q->>'cost_before')::numeric),
                                 round((q->>'cost_after')::numeric)), '; ')
          FROM jsonb_array_elements(queries) q) AS "statements helped"
  FROM dbopt.recommend_indexes(min_calls => 5);

\echo '== dbopt.query_lints(): what no index fixes'
SELECT lint, severity, table_name, detail, suggestion FROM dbopt.query_lints(min_calls => 5);

\echo '== dbopt.index_health(): indexes worth dropping in dbopt_demo'
SELECT problem, index_name, pg_size_pretty(index_bytes) AS size, drop_statement
  FROM dbopt.index_health() WHERE index_name::text LIKE 'dbopt_demo.%';

SELECT ready AS cron_ready FROM dbopt.environment() WHERE component = 'pg_cron' \gset
\if :cron_ready
\echo '== dbopt.apply_index(): the top recommendation built CONCURRENTLY by a pg_cron job'
SELECT dbopt.apply_index(index_definition) AS build
  FROM dbopt.recommend_indexes(min_calls => 5) ORDER BY benefit DESC LIMIT 1 \gset
-- Waits with a COMMIT between looks: an open snapshot would hold up the concurrent build.
CREATE PROCEDURE pg_temp.wait_for_build(build bigint)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..60 LOOP
        EXIT WHEN (SELECT state IN ('built', 'failed') FROM dbopt.index_builds WHERE id = build);
        COMMIT;
        PERFORM pg_sleep(5);
    END LOOP;
END
$$;
\echo '   (pg_cron starts jobs on the minute: this takes up to two)'
CALL pg_temp.wait_for_build(:build);
SELECT index_name, state, finished_at - started_at AS build_time, message
  FROM dbopt.index_builds WHERE id = :build;
\else
\echo '== pg_cron is not ready here: apply_index would say so (55000); skipping to the manual path'
\endif

\echo '== The manual path for the rest: each index_definition run at top level'
SELECT index_definition FROM dbopt.recommend_indexes(min_calls => 5) \gexec
ANALYZE dbopt_demo.ml_jobs;
SELECT indexrelid::regclass AS "ml_jobs indexes now" FROM pg_index
 WHERE indrelid = 'dbopt_demo.ml_jobs'::regclass;

\echo '== The same workload with the recommended indexes'
SELECT pg_stat_statements_reset();
SELECT pg_temp.seed002_workload(10) AS "workload time, with the recommended indexes";
SELECT * FROM pg_temp.statement_times;
RESET pg_stat_statements.track;
