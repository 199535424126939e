-- Database health: one report, its sections on their own, thresholds as data, and statistics
-- snapshots that turn "unused" into a measurement.
\echo
\echo '== dbopt.snapshot_stats(): the first statistics snapshot (schedule it hourly with pg_cron)'
SELECT dbopt.snapshot_stats() AS snapshot_id;

\echo '== dbopt.db_health(): overall status and findings per section'
SELECT h->>'status' AS status, h->'findings' AS findings, h->>'note' AS note
  FROM dbopt.db_health() h;
SELECT s.key AS section, s.value->>'critical' AS critical, s.value->>'warning' AS warning,
       jsonb_array_length(s.value->'rows') AS rows_shown, s.value->>'rows_left_out' AS left_out
  FROM dbopt.db_health() h, jsonb_each(h->'sections') s
 ORDER BY 1;

\echo '== dbopt.health_sizes(): the demo tables (exact = false would mean measured from relpages, because another session held a lock)'
SELECT table_name, rows_estimate, pg_size_pretty(heap_bytes) AS heap,
       pg_size_pretty(index_bytes) AS indexes, pg_size_pretty(toast_bytes) AS toast, exact
  FROM dbopt.health_sizes()
 WHERE table_name::text LIKE 'dbopt_demo.%'
 LIMIT 8;

\echo '== dbopt.health_hit_ratios() against the seed 003 KPIs (cache > 95%, index > 99%)'
SELECT * FROM dbopt.health_hit_ratios();

\echo '== dbopt.health_vacuum(): autovacuum''s own trigger points, reloptions included'
SELECT table_name, dead_tuples, vacuum_trigger, changed_since_analyze, analyze_trigger,
       vacuum_ratio, analyze_ratio, severity
  FROM dbopt.health_vacuum()
 WHERE table_name::text LIKE 'dbopt_demo.%'
 LIMIT 5;

\echo '== dbopt.health_bloat(): estimates with how far to trust them'
SELECT table_name, pg_size_pretty(table_bytes) AS size, bloat_ratio, confidence, reasons, severity
  FROM dbopt.health_bloat()
 WHERE table_name::text LIKE 'dbopt_demo.%'
 LIMIT 5;

\echo '== dbopt.health_sequences() and dbopt.health_wraparound(): room left'
SELECT sequence_name, column_name, column_type, last_value, share_used, severity
  FROM dbopt.health_sequences() WHERE sequence_name::text LIKE 'dbopt_demo.%';
SELECT scope, object_name, kind, age, runway, severity
  FROM dbopt.health_wraparound(3) WHERE scope = 'table' OR object_name = current_database();

\echo '== Thresholds are data: a stricter bloat limit for one table, then back to the default'
INSERT INTO dbopt.health_thresholds (check_name, object_name, warning, critical)
SELECT 'table_bloat', table_name, 0.0, 0.5 FROM dbopt.health_bloat()
 WHERE table_name::text LIKE 'dbopt_demo.%' AND confidence <> 'low' LIMIT 1;
SELECT b.table_name, b.bloat_ratio, t.warning AS override_warning, b.severity
  FROM dbopt.health_bloat() b JOIN dbopt.health_thresholds t ON t.object_name = b.table_name;
DELETE FROM dbopt.health_thresholds WHERE check_name = 'table_bloat';

\echo '== Seed 003 §4.1: materialized views refreshed on a schedule, dependencies first'
CREATE MATERIALIZED VIEW dbopt_demo.order_status_counts AS
  SELECT status, count(*) AS orders, sum(total_amount) AS amount
    FROM dbopt_demo.orders GROUP BY status;
CREATE UNIQUE INDEX ON dbopt_demo.order_status_counts (status);
-- Reads the view above, has no unique index: refreshed after it, and plainly.
CREATE MATERIALIZED VIEW dbopt_demo.order_status_share AS
  SELECT status, round(orders * 100.0 / sum(orders) OVER (), 1) AS pct
    FROM dbopt_demo.order_status_counts;
SELECT dbopt.manage_matview('dbopt_demo.order_status_share', '5 minutes');
SELECT dbopt.manage_matview('dbopt_demo.order_status_counts', '5 minutes');
CALL dbopt.refresh_matviews();
SELECT view, refresh_every, last_method, last_duration, due,
       next_method_reason
  FROM dbopt.matview_status ORDER BY last_refresh_at;

\echo '== Seed 001 B3: only the 50 most recently viewed products per user'
CREATE TABLE dbopt_demo.recently_viewed (
    user_id    bigint NOT NULL,
    product_id int NOT NULL,
    viewed_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON dbopt_demo.recently_viewed (user_id, viewed_at);
SELECT dbopt.cap_rows('dbopt_demo.recently_viewed', 'user_id', 'viewed_at', 50);
INSERT INTO dbopt_demo.recently_viewed (user_id, product_id)
SELECT 1 + g % 3, g FROM generate_series(1, 600) g;
SELECT user_id, count(*) AS kept, min(product_id) AS oldest_kept, max(product_id) AS newest
  FROM dbopt_demo.recently_viewed GROUP BY user_id ORDER BY user_id;
SELECT * FROM dbopt.row_caps;
