-- dbopt installed, what it can use on this server, and a first look at the data.
\echo
\echo '== dbopt is installed'
CREATE EXTENSION IF NOT EXISTS dbopt;
SELECT dbopt.version();

\echo '== What dbopt can use on this server (dbopt.environment())'
SELECT component, ready, status, used_for, hint FROM dbopt.environment();

\echo '== The tables'
SELECT c.relname AS "table",
       c.reltuples::bigint AS "rows (estimate)",
       pg_size_pretty(pg_table_size(c.oid)) AS heap,
       pg_size_pretty(pg_indexes_size(c.oid)) AS indexes
  FROM pg_class c
 WHERE c.relnamespace = 'dbopt_demo'::regnamespace AND c.relkind = 'r'
 ORDER BY pg_total_relation_size(c.oid) DESC;

\echo '== ml_jobs by status (seed 002: the pending queue is tiny)'
SELECT status, count(*) AS jobs, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
  FROM dbopt_demo.ml_jobs GROUP BY status ORDER BY jobs DESC;

\echo '== orders by age (seed 001 C2 archives orders older than 2 years)'
SELECT CASE WHEN created_at >= now() - interval '30 days' THEN '1. last 30 days'
            WHEN created_at >= now() - interval '1 year' THEN '2. 30 days to 1 year'
            WHEN created_at >= now() - interval '2 years' THEN '3. 1 to 2 years'
            ELSE '4. older than 2 years' END AS age,
       count(*) AS orders, pg_size_pretty(sum(pg_column_size(o.*))) AS data
  FROM dbopt_demo.orders AS o GROUP BY 1 ORDER BY 1;

\echo '== The 10 heaviest customers hold this share of all orders'
SELECT round(100.0 * sum(n) FILTER (WHERE rank <= 10) / sum(n), 1) AS pct_of_orders
  FROM (SELECT count(*) AS n, rank() OVER (ORDER BY count(*) DESC) AS rank
          FROM dbopt_demo.orders GROUP BY user_id) AS per_user;

\echo '== Seed 001 A1: top 10 users by completed spending in the last 30 days (timed)'
\timing on
\ir seed001_a1.sql
\timing off
