-- Database health (issue 7): one function per section, each finding graded against thresholds
-- users can change per object, and dbopt.db_health() putting the sections together as jsonb.
-- Statistics snapshots (dbopt.snapshot_stats) turn "unused" and "growing" into measurements.
-- Every catalog-reading function here runs with jit = off: default row estimates for the size
-- functions push plan costs past jit_above_cost, and compiling cost more than a second on a
-- database of 2,000 tables while saving nothing on catalog scans.

-- The checks and their built-in thresholds (the seed 003 KPIs where it names one).
CREATE TABLE @extschema@.health_checks (
    check_name text PRIMARY KEY,
    unit text NOT NULL,
    worse_when text NOT NULL CHECK (worse_when IN ('above', 'below')),
    warning float8 NOT NULL,
    critical float8 NOT NULL,
    description text NOT NULL
);
COMMENT ON TABLE @extschema@.health_checks IS
    'The checks dbopt.db_health() grades and their built-in thresholds; override them in dbopt.health_thresholds';
INSERT INTO @extschema@.health_checks VALUES
    ('cache_hit_ratio', 'ratio', 'below', 0.95, 0.90,
     'Share of table block reads served from shared_buffers (seed 003 KPI: above 95%)'),
    ('index_hit_ratio', 'ratio', 'below', 0.99, 0.95,
     'Share of index block reads served from shared_buffers (seed 003 KPI: above 99%)'),
    ('connection_use', 'ratio', 'above', 0.60, 0.85,
     'Connections in use against max_connections less the reserved ones (seed 003 KPI: under 60%)'),
    ('long_running_query', 'seconds', 'above', 300, 3600,
     'Time an active statement has been running'),
    ('idle_in_transaction', 'seconds', 'above', 60, 600,
     'Time a session has sat idle inside an open transaction, holding its locks and snapshot'),
    ('blocked_session', 'seconds', 'above', 10, 60,
     'Time a session has waited for a lock another session holds'),
    ('vacuum_overdue', 'ratio', 'above', 2, 10,
     'Dead (or, for inserts, new) tuples against the count at which autovacuum should vacuum the table, its reloptions included'),
    ('analyze_overdue', 'ratio', 'above', 2, 10,
     'Rows changed since the last analyze against the count at which autovacuum should analyze the table'),
    ('xid_wraparound', 'ratio', 'above', 0.50, 0.75,
     'Transaction-id (or multixact) age against the 2^31 at which PostgreSQL stops taking writes'),
    ('sequence_exhaustion', 'ratio', 'above', 0.75, 0.90,
     'Values a sequence has used of what it, and the column it feeds, can hold'),
    ('slow_statement', 'ms', 'above', 500, 1000,
     'Mean execution time of a statement in pg_stat_statements (seed 003: under 500 ms)'),
    ('table_bloat', 'ratio', 'above', 0.20, 0.50,
     'Estimated share of a table''s pages that hold no live data (seed 003 KPI: under 20%)'),
    ('unused_index', 'days', 'above', 7, 30,
     'Days an index that enforces nothing has gone without a scan');
GRANT SELECT ON @extschema@.health_checks TO PUBLIC;

-- Overrides: a row with object_name NULL changes a check for every object; one naming a table,
-- index or sequence changes it for that object only.
CREATE TABLE @extschema@.health_thresholds (
    check_name text NOT NULL REFERENCES @extschema@.health_checks,
    object_name regclass,
    warning float8 NOT NULL,
    critical float8 NOT NULL,
    UNIQUE NULLS NOT DISTINCT (check_name, object_name)
);
COMMENT ON TABLE @extschema@.health_thresholds IS
    'Thresholds overriding dbopt.health_checks: for every object (object_name NULL) or for one';
ALTER TABLE @extschema@.health_thresholds ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON @extschema@.health_thresholds FOR SELECT USING (true);
-- An object's owners judge it; the extension's owner sets the defaults everyone is judged by.
CREATE POLICY owners ON @extschema@.health_thresholds
    USING (pg_catalog.pg_has_role(coalesce(
               (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = object_name),
               (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'dbopt')),
           'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role(coalesce(
               (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = object_name),
               (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'dbopt')),
           'USAGE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.health_thresholds TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.health_thresholds', '');

-- A check's thresholds: the default row (object_name NULL) and one row per overridden object.
CREATE FUNCTION @extschema@.health_limits(check_name text)
RETURNS TABLE (object_name regclass, warning float8, critical float8, above boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT NULL::regclass, coalesce(t.warning, c.warning), coalesce(t.critical, c.critical),
           c.worse_when = 'above'
      FROM @extschema@.health_checks c
      LEFT JOIN @extschema@.health_thresholds t
        ON t.check_name = c.check_name AND t.object_name IS NULL
     WHERE c.check_name = health_limits.check_name
    UNION ALL
    SELECT t.object_name, t.warning, t.critical, c.worse_when = 'above'
      FROM @extschema@.health_thresholds t
      JOIN @extschema@.health_checks c ON c.check_name = t.check_name
     WHERE t.check_name = health_limits.check_name AND t.object_name IS NOT NULL
$$;

-- 'critical', 'warning' or 'ok' for a value; 'unknown' when there is no value.
CREATE FUNCTION @extschema@.health_grade(value float8, warning float8, critical float8,
                                         above boolean)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN value IS NULL THEN 'unknown'
        WHEN CASE WHEN above THEN value >= critical ELSE value <= critical END THEN 'critical'
        WHEN CASE WHEN above THEN value >= warning ELSE value <= warning END THEN 'warning'
        ELSE 'ok' END
$$;

-- The most serious of several grades: critical, warning, ok, unknown, in that order.
CREATE FUNCTION @extschema@.health_worst(grades text[])
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN 'critical' = ANY (grades) THEN 'critical'
                WHEN 'warning' = ANY (grades) THEN 'warning'
                WHEN 'ok' = ANY (grades) THEN 'ok'
                ELSE 'unknown' END
$$;

-- Statistics over time ----------------------------------------------------------------------

CREATE TABLE @extschema@.stat_snapshots (
    snapshot_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at timestamptz NOT NULL DEFAULT now(),
    stats_reset timestamptz
);
-- Per table and snapshot: sizes and activity counters, for growth and rates.
CREATE TABLE @extschema@.table_stat_history (
    snapshot_id bigint NOT NULL REFERENCES @extschema@.stat_snapshots ON DELETE CASCADE,
    relid oid NOT NULL,
    table_name text NOT NULL,
    total_bytes bigint NOT NULL,
    live_tuples bigint,
    inserted bigint, updated bigint, deleted bigint,
    seq_scans bigint, idx_scans bigint,
    PRIMARY KEY (relid, snapshot_id)
);
-- Per statement and snapshot: pg_stat_statements' counters, when it is installed.
CREATE TABLE @extschema@.statement_stat_history (
    snapshot_id bigint NOT NULL REFERENCES @extschema@.stat_snapshots ON DELETE CASCADE,
    userid oid NOT NULL,
    queryid bigint NOT NULL,
    calls bigint NOT NULL,
    total_exec_ms float8 NOT NULL,
    rows bigint NOT NULL,
    PRIMARY KEY (queryid, userid, snapshot_id)
);
-- Per index, one row however many snapshots: its scan count when last seen to change. That is
-- all "unused since" needs, and it stays as small as the catalog.
CREATE TABLE @extschema@.index_usage (
    indexrelid oid PRIMARY KEY,
    index_name text NOT NULL,
    idx_scan bigint NOT NULL,
    first_seen timestamptz NOT NULL,
    changed_at timestamptz NOT NULL
);
COMMENT ON TABLE @extschema@.index_usage IS
    'Each index''s scan count as dbopt.snapshot_stats last saw it change: first seen, last changed';
GRANT SELECT ON @extschema@.stat_snapshots, @extschema@.table_stat_history,
                @extschema@.statement_stat_history, @extschema@.index_usage TO PUBLIC;

-- Records the statistics of the current database; keeps snapshots for `keep`. Returns the
-- snapshot's id. Run it from pg_cron (hourly or daily): the longer it has run, the more
-- index_health and health_index_usage can say.
CREATE FUNCTION @extschema@.snapshot_stats(keep interval DEFAULT '90 days')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    snapshot bigint;
    pgss regnamespace;
BEGIN
    IF keep IS NULL OR keep <= interval '0' THEN
        RAISE EXCEPTION 'keep must be a positive interval, not %', coalesce(keep::text, 'NULL')
            USING ERRCODE = '22023', HINT = 'For example keep => ''90 days''.';
    END IF;
    INSERT INTO @extschema@.stat_snapshots (stats_reset)
    SELECT d.stats_reset FROM pg_stat_database d WHERE d.datname = current_database()
    RETURNING snapshot_id INTO snapshot;

    INSERT INTO @extschema@.table_stat_history
    SELECT snapshot, s.relid, format('%I.%I', s.schemaname, s.relname),
           (SELECT z.own_bytes + z.index_bytes + z.toast_bytes
              FROM @extschema@.relation_sizes_nowait(s.relid) z), s.n_live_tup, s.n_tup_ins, s.n_tup_upd,
           s.n_tup_del, s.seq_scan, s.idx_scan
      FROM pg_stat_user_tables s;

    -- An index seen for the first time counts as changed now: nothing is known of it before.
    INSERT INTO @extschema@.index_usage AS u
    SELECT s.indexrelid, format('%I.%I', s.schemaname, s.indexrelname), s.idx_scan, now(), now()
      FROM pg_stat_user_indexes s
        ON CONFLICT (indexrelid) DO UPDATE
       SET idx_scan = excluded.idx_scan, index_name = excluded.index_name,
           changed_at = CASE WHEN u.idx_scan = excluded.idx_scan THEN u.changed_at ELSE now() END,
           -- The same OID under another name is another index.
           first_seen = CASE WHEN u.index_name = excluded.index_name THEN u.first_seen
                             ELSE now() END;
    DELETE FROM @extschema@.index_usage u
     WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = u.indexrelid);

    SELECT e.extnamespace INTO pgss FROM pg_extension e WHERE e.extname = 'pg_stat_statements';
    IF pgss IS NOT NULL THEN
        EXECUTE format(
            'INSERT INTO @extschema@.statement_stat_history
             SELECT $1, s.userid, s.queryid, sum(s.calls), sum(s.total_exec_time), sum(s.rows)
               FROM %I.pg_stat_statements s
              WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND s.queryid IS NOT NULL
              GROUP BY s.userid, s.queryid', pgss)
        USING snapshot;
    END IF;

    DELETE FROM @extschema@.stat_snapshots WHERE taken_at < now() - keep;
    RETURN snapshot;
END
$$;

-- Since when each index has gone without a scan, and how that is known:
-- 'snapshots' (its scan count has not changed since dbopt.snapshot_stats saw it change),
-- 'stats_reset' (idx_scan = 0 since the statistics were reset; how old the index is, is not
-- known) or 'never_reset' (idx_scan = 0 since statistics began). No row for an index scanned
-- since the last snapshot.
CREATE FUNCTION @extschema@.index_unused_since()
RETURNS TABLE (indexrelid oid, idx_scan bigint, unused_since timestamptz, evidence text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH reset AS (
        SELECT (SELECT d.stats_reset FROM pg_stat_database d
                 WHERE d.datname = current_database()) AS at
    )
    SELECT s.indexrelid, s.idx_scan,
           CASE WHEN u.idx_scan = s.idx_scan THEN u.changed_at ELSE r.at END,
           CASE WHEN u.idx_scan = s.idx_scan THEN 'snapshots'
                WHEN r.at IS NULL THEN 'never_reset'
                ELSE 'stats_reset' END
      FROM pg_stat_all_indexes s
      CROSS JOIN reset r
      LEFT JOIN @extschema@.index_usage u
        ON u.indexrelid = s.indexrelid AND u.index_name = format('%I.%I', s.schemaname, s.indexrelname)
     WHERE u.idx_scan = s.idx_scan OR s.idx_scan = 0
$$;

-- Sections ----------------------------------------------------------------------------------

-- Sizes of the database's tables and materialized views (a partitioned table summed over its
-- partitions), largest first, with growth per day measured between snapshots. exact is false
-- where another session held a lock that measuring would have waited for: the sizes are then
-- pg_class's relpages as of the last VACUUM or ANALYZE.
CREATE FUNCTION @extschema@.health_sizes()
RETURNS TABLE (table_name regclass, kind text, partitions int, rows_estimate bigint,
               heap_bytes bigint, index_bytes bigint, toast_bytes bigint, total_bytes bigint,
               exact boolean, growth_bytes_per_day bigint, growth_since timestamptz,
               severity text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH tables AS (
        SELECT c.oid, c.relkind, n.nspname, c.relname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'm', 'p') AND NOT c.relispartition
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_toast' AND NOT pg_is_other_temp_schema(n.oid)
    ),
    leaves AS (
        SELECT t.oid AS top, l.oid, l.reltuples
          FROM tables t
          JOIN pg_class l ON l.oid = t.oid AND t.relkind <> 'p'
        UNION ALL
        SELECT t.oid, l.oid, l.reltuples
          FROM tables t
          CROSS JOIN LATERAL pg_partition_tree(t.oid) p
          JOIN pg_class l ON l.oid = p.relid AND l.relkind IN ('r', 'm')
         WHERE t.relkind = 'p'
    ),
    -- Measured without waiting on locks: a table someone holds ACCESS EXCLUSIVE on is
    -- estimated from relpages and flagged.
    sized AS (
        SELECT l.top, count(*) AS leaves, sum(greatest(l.reltuples, 0))::bigint AS rows_estimate,
               sum(z.own_bytes)::bigint AS heap_bytes, sum(z.index_bytes)::bigint AS index_bytes,
               sum(z.toast_bytes)::bigint AS toast_bytes, bool_and(z.exact) AS exact
          FROM leaves l CROSS JOIN LATERAL @extschema@.relation_sizes_nowait(l.oid) z
         GROUP BY l.top
    ),
    -- The oldest snapshot of the last 30 days holding the table.
    earlier AS (
        SELECT DISTINCT ON (h.relid) h.relid, h.total_bytes, s.taken_at
          FROM @extschema@.table_stat_history h
          JOIN @extschema@.stat_snapshots s USING (snapshot_id)
         WHERE s.taken_at >= now() - interval '30 days' AND s.taken_at < now() - interval '1 hour'
         ORDER BY h.relid, s.taken_at
    )
    SELECT t.oid::regclass,
           CASE t.relkind WHEN 'r' THEN 'table' WHEN 'm' THEN 'materialized view'
                          ELSE 'partitioned table' END,
           CASE WHEN t.relkind = 'p' THEN coalesce(z.leaves, 0)::int END,
           coalesce(z.rows_estimate, 0), coalesce(z.heap_bytes, 0), coalesce(z.index_bytes, 0),
           coalesce(z.toast_bytes, 0),
           coalesce(z.heap_bytes + z.index_bytes + z.toast_bytes, 0), coalesce(z.exact, true),
           ((coalesce(z.heap_bytes + z.index_bytes + z.toast_bytes, 0) - e.total_bytes)
             / (extract(epoch FROM now() - e.taken_at) / 86400))::bigint,
           e.taken_at, 'info'
      FROM tables t
      LEFT JOIN sized z ON z.top = t.oid
      LEFT JOIN earlier e ON e.relid = t.oid
     ORDER BY 8 DESC, 1::text
$$;

-- Every index (extensions' excepted) with its scans, size, and since when it has gone unused;
-- only indexes that enforce nothing (no primary key, unique or exclusion constraint, not
-- unique) are graded.
CREATE FUNCTION @extschema@.health_index_usage()
RETURNS TABLE (index_name regclass, table_name regclass, idx_scan bigint, index_bytes bigint,
               enforces_constraint boolean, unused_since timestamptz, unused_days float8,
               evidence text, severity text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH lim AS (SELECT * FROM @extschema@.health_limits('unused_index')),
    usage AS (
        SELECT s.indexrelid, s.relid, s.idx_scan,
               (SELECT z.own_bytes FROM @extschema@.relation_sizes_nowait(s.indexrelid) z)
                 AS bytes,
               i.indisunique OR i.indisprimary OR i.indisexclusion
                 OR EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = s.indexrelid)
                 AS enforces,
               u.unused_since, u.evidence
          FROM pg_stat_user_indexes s
          JOIN pg_index i ON i.indexrelid = s.indexrelid
          LEFT JOIN @extschema@.index_unused_since() u ON u.indexrelid = s.indexrelid
         -- An extension's indexes are its to look after.
         WHERE NOT EXISTS (SELECT FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = s.relid
                              AND d.deptype = 'e')
    )
    SELECT x.indexrelid::regclass, x.relid::regclass, x.idx_scan, x.bytes, x.enforces,
           x.unused_since,
           round((extract(epoch FROM now() - x.unused_since) / 86400)::numeric, 2)::float8,
           coalesce(x.evidence, 'scanned'),
           CASE WHEN x.enforces THEN 'ok'
                WHEN x.evidence IS NULL THEN 'ok'
                -- idx_scan = 0 since statistics began: how long is not known.
                WHEN x.evidence = 'never_reset' THEN 'info'
                ELSE @extschema@.health_grade(
                         extract(epoch FROM now() - x.unused_since) / 86400,
                         coalesce(o.warning, d.warning), coalesce(o.critical, d.critical),
                         d.above) END
      FROM usage x
      CROSS JOIN (SELECT * FROM lim WHERE lim.object_name IS NULL) d
      LEFT JOIN lim o ON o.object_name = x.indexrelid
     ORDER BY x.enforces, x.unused_since NULLS LAST, x.bytes DESC
$$;

-- Cache and index hit ratios over the database's tables since the statistics were reset.
-- Only shared_buffers hits count: a read the OS cache served is a read here.
CREATE FUNCTION @extschema@.health_hit_ratios()
RETURNS TABLE (check_name text, ratio float8, blocks_hit bigint, blocks_read bigint,
               severity text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH totals AS (
        SELECT 'cache_hit_ratio' AS check_name,
               sum(heap_blks_hit)::bigint AS hit, sum(heap_blks_read)::bigint AS read
          FROM pg_statio_user_tables
        UNION ALL
        SELECT 'index_hit_ratio', sum(idx_blks_hit)::bigint, sum(idx_blks_read)::bigint
          FROM pg_statio_user_indexes
    )
    SELECT t.check_name, round(t.hit::numeric / nullif(t.hit + t.read, 0), 4)::float8,
           coalesce(t.hit, 0), coalesce(t.read, 0),
           @extschema@.health_grade(t.hit::float8 / nullif(t.hit + t.read, 0),
                                    l.warning, l.critical, l.above)
      FROM totals t
      CROSS JOIN LATERAL @extschema@.health_limits(t.check_name) l
     WHERE l.object_name IS NULL
$$;

-- Client connections by state, against max_connections less the superuser-reserved ones. A
-- role without pg_read_all_stats sees other roles' sessions with no state ('hidden').
CREATE FUNCTION @extschema@.health_connections()
RETURNS TABLE (state text, connections bigint, usable_connections int, share float8,
               severity text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH usable AS (
        SELECT current_setting('max_connections')::int
               - current_setting('superuser_reserved_connections')::int AS n
    ),
    states AS (
        SELECT coalesce(a.state, 'hidden') AS state, count(*) AS connections
          FROM pg_stat_activity a WHERE a.backend_type = 'client backend'
         GROUP BY 1
    ),
    rows AS (
        SELECT s.state, s.connections FROM states s
        UNION ALL
        SELECT 'total', coalesce(sum(s.connections), 0)::bigint FROM states s
    )
    SELECT r.state, r.connections, u.n, round(r.connections::numeric / u.n, 4)::float8,
           CASE WHEN r.state = 'total'
                THEN @extschema@.health_grade(r.connections::float8 / u.n,
                                              l.warning, l.critical, l.above)
                ELSE 'info' END
      FROM rows r CROSS JOIN usable u
      CROSS JOIN @extschema@.health_limits('connection_use') l
     WHERE l.object_name IS NULL
     ORDER BY r.state = 'total' DESC, r.connections DESC
$$;

-- Sessions running a statement, or idle inside a transaction, longest first (this session
-- excluded). A role without pg_read_all_stats does not see other roles' statements.
CREATE FUNCTION @extschema@.health_long_sessions()
RETURNS TABLE (pid int, usename name, datname name, state text, check_name text,
               seconds float8, xact_seconds float8, wait_event text, query text,
               severity text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH sessions AS (
        SELECT a.*,
               CASE WHEN a.state = 'active' THEN 'long_running_query'
                    ELSE 'idle_in_transaction' END AS check_name,
               extract(epoch FROM now() - CASE WHEN a.state = 'active' THEN a.query_start
                                               ELSE a.state_change END)::float8 AS seconds
          FROM pg_stat_activity a
         WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
           AND a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
    )
    SELECT s.pid, s.usename, s.datname, s.state, s.check_name, round(s.seconds::numeric, 1)::float8,
           round(extract(epoch FROM now() - s.xact_start)::numeric, 1)::float8,
           nullif(concat_ws(': ', s.wait_event_type, s.wait_event), ''), s.query,
           @extschema@.health_grade(s.seconds, l.warning, l.critical, l.above)
      FROM sessions s
      CROSS JOIN LATERAL @extschema@.health_limits(s.check_name) l
     WHERE l.object_name IS NULL
     ORDER BY s.seconds DESC
$$;

-- Blocking chains from pg_blocking_pids: each root blocker (blocking others, waiting on no
-- one) first, then the sessions waiting behind it, level by level. A waiter's seconds count
-- from pg_locks.waitstart.
CREATE FUNCTION @extschema@.health_blocking()
RETURNS TABLE (root_pid int, pid int, depth int, blocked_by int[], state text,
               wait_seconds float8, wait_event text, query text, severity text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH RECURSIVE waiting AS (
        SELECT a.pid, pg_blocking_pids(a.pid) AS blockers
          FROM pg_stat_activity a
         WHERE a.wait_event_type = 'Lock'
    ),
    edges AS (
        SELECT w.pid, b.blocker FROM waiting w CROSS JOIN LATERAL unnest(w.blockers) b(blocker)
    ),
    chain AS (
        SELECT DISTINCT e.blocker AS root, e.blocker AS pid, 0 AS depth, ARRAY[e.blocker] AS path
          FROM edges e
         WHERE NOT EXISTS (SELECT FROM waiting w WHERE w.pid = e.blocker
                                                   AND cardinality(w.blockers) > 0)
        UNION ALL
        SELECT c.root, e.pid, c.depth + 1, c.path || e.pid
          FROM chain c JOIN edges e ON e.blocker = c.pid
         WHERE e.pid <> ALL (c.path)
    ),
    placed AS (
        -- A session waiting behind two roots (or two paths) is shown once, where it is deepest.
        SELECT DISTINCT ON (c.pid) c.root, c.pid, c.depth FROM chain c
         ORDER BY c.pid, c.depth DESC, c.root
    ),
    waits AS (
        SELECT l.pid, extract(epoch FROM now() - min(l.waitstart))::float8 AS seconds
          FROM pg_locks l WHERE NOT l.granted GROUP BY l.pid
    ),
    graded AS (
        SELECT p.root, p.pid, p.depth, w.blockers, a.state, ws.seconds,
               nullif(concat_ws(': ', a.wait_event_type, a.wait_event), '') AS wait_event,
               a.query,
               CASE WHEN p.depth = 0 THEN NULL
                    ELSE @extschema@.health_grade(ws.seconds, l.warning, l.critical, l.above)
               END AS severity
          FROM placed p
          LEFT JOIN pg_stat_activity a ON a.pid = p.pid
          LEFT JOIN waiting w ON w.pid = p.pid
          LEFT JOIN waits ws ON ws.pid = p.pid
          CROSS JOIN @extschema@.health_limits('blocked_session') l
         WHERE l.object_name IS NULL
    )
    -- A root blocker takes the worst severity among those waiting behind it.
    SELECT g.root, g.pid, g.depth, g.blockers, g.state, round(g.seconds::numeric, 1)::float8,
           g.wait_event, g.query,
           coalesce(g.severity,
                    (SELECT @extschema@.health_worst(array_agg(x.severity))
                       FROM graded x WHERE x.root = g.root AND x.depth > 0))
      FROM graded g
     ORDER BY g.root, g.depth, g.pid
$$;

-- Vacuum and analyze staleness, judged with autovacuum's own trigger points: the server's
-- settings, overridden by each table's reloptions.
CREATE FUNCTION @extschema@.health_vacuum()
RETURNS TABLE (table_name regclass, dead_tuples bigint, vacuum_trigger bigint,
               inserted_since_vacuum bigint, insert_trigger bigint,
               changed_since_analyze bigint, analyze_trigger bigint,
               vacuum_ratio float8, analyze_ratio float8, last_vacuum timestamptz,
               last_analyze timestamptz, autovacuum_enabled boolean, severity text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH opts AS (
        SELECT s.relid, s.n_dead_tup, s.n_ins_since_vacuum, s.n_mod_since_analyze,
               greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum,
               greatest(s.last_analyze, s.last_autoanalyze) AS last_analyze,
               greatest(c.reltuples, 0) AS tuples,
               coalesce((SELECT jsonb_object_agg(o.option_name, o.option_value)
                           FROM pg_options_to_table(c.reloptions) o), '{}') AS opt
          FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE c.relkind IN ('r', 'm')
    ),
    -- Each autovacuum setting: the table's reloption, else the server's.
    setting AS (
        SELECT o.*,
               coalesce((o.opt->>'autovacuum_enabled')::boolean,
                        current_setting('autovacuum')::boolean) AS enabled,
               coalesce((o.opt->>'autovacuum_vacuum_threshold')::float8,
                        current_setting('autovacuum_vacuum_threshold')::float8)
               + coalesce((o.opt->>'autovacuum_vacuum_scale_factor')::float8,
                          current_setting('autovacuum_vacuum_scale_factor')::float8)
                 * o.tuples AS vacuum_at,
               -- -1 turns insert-driven vacuums off.
               nullif(coalesce((o.opt->>'autovacuum_vacuum_insert_threshold')::float8,
                               current_setting('autovacuum_vacuum_insert_threshold')::float8), -1)
               + coalesce((o.opt->>'autovacuum_vacuum_insert_scale_factor')::float8,
                          current_setting('autovacuum_vacuum_insert_scale_factor')::float8)
                 * o.tuples AS insert_at,
               coalesce((o.opt->>'autovacuum_analyze_threshold')::float8,
                        current_setting('autovacuum_analyze_threshold')::float8)
               + coalesce((o.opt->>'autovacuum_analyze_scale_factor')::float8,
                          current_setting('autovacuum_analyze_scale_factor')::float8)
                 * o.tuples AS analyze_at
          FROM opts o
    ),
    ratios AS (
        SELECT s.*,
               greatest(s.n_dead_tup / nullif(s.vacuum_at, 0),
                        coalesce(s.n_ins_since_vacuum / nullif(s.insert_at, 0), 0)) AS vacuum_ratio,
               s.n_mod_since_analyze / nullif(s.analyze_at, 0) AS analyze_ratio
          FROM setting s
    ),
    vl AS (SELECT * FROM @extschema@.health_limits('vacuum_overdue')),
    al AS (SELECT * FROM @extschema@.health_limits('analyze_overdue'))
    SELECT r.relid::regclass, r.n_dead_tup, r.vacuum_at::bigint, r.n_ins_since_vacuum,
           r.insert_at::bigint, r.n_mod_since_analyze, r.analyze_at::bigint,
           round(r.vacuum_ratio::numeric, 3)::float8, round(r.analyze_ratio::numeric, 3)::float8,
           r.last_vacuum, r.last_analyze, r.enabled,
           @extschema@.health_worst(ARRAY[
               @extschema@.health_grade(r.vacuum_ratio, coalesce(vo.warning, vd.warning),
                                        coalesce(vo.critical, vd.critical), vd.above),
               @extschema@.health_grade(r.analyze_ratio, coalesce(ao.warning, ad.warning),
                                        coalesce(ao.critical, ad.critical), ad.above)])
      FROM ratios r
      CROSS JOIN (SELECT * FROM vl WHERE vl.object_name IS NULL) vd
      CROSS JOIN (SELECT * FROM al WHERE al.object_name IS NULL) ad
      LEFT JOIN vl vo ON vo.object_name = r.relid
      LEFT JOIN al ao ON ao.object_name = r.relid
     ORDER BY greatest(r.vacuum_ratio, r.analyze_ratio) DESC NULLS LAST, 1::text
$$;

-- Transaction-id and multixact age: every database, then the current database's oldest
-- tables. runway is how many more can be used before PostgreSQL refuses writes (2^31 less
-- its 3 million safety margin).
CREATE FUNCTION @extschema@.health_wraparound(tables int DEFAULT 10)
RETURNS TABLE (scope text, object_name text, kind text, age bigint, runway bigint,
               freeze_max_age bigint, share_used float8, severity text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH lim AS (SELECT * FROM @extschema@.health_limits('xid_wraparound')),
    ages AS (
        SELECT 'database' AS scope, d.datname::text AS object_name, 'xid' AS kind,
               age(d.datfrozenxid)::bigint AS age,
               current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age,
               NULL::oid AS relid
          FROM pg_database d WHERE d.datallowconn
        UNION ALL
        SELECT 'database', d.datname::text, 'multixact', mxid_age(d.datminmxid)::bigint,
               current_setting('autovacuum_multixact_freeze_max_age')::bigint, NULL
          FROM pg_database d WHERE d.datallowconn
        UNION ALL
        (SELECT 'table', c.oid::regclass::text, 'xid', age(c.relfrozenxid)::bigint,
                coalesce((SELECT o.option_value::bigint FROM pg_options_to_table(c.reloptions) o
                           WHERE o.option_name = 'autovacuum_freeze_max_age'),
                         current_setting('autovacuum_freeze_max_age')::bigint),
                c.oid
           FROM pg_class c
          WHERE c.relkind IN ('r', 'm', 't') AND c.relfrozenxid <> '0'::xid
          ORDER BY age(c.relfrozenxid) DESC, c.oid
          LIMIT greatest(tables, 0))
    )
    SELECT a.scope, a.object_name, a.kind, a.age, 2147483647 - 3000000 - a.age,
           a.freeze_max_age, round(a.age / 2147483648.0, 6)::float8,
           @extschema@.health_grade(a.age / 2147483648.0, coalesce(o.warning, d.warning),
                                    coalesce(o.critical, d.critical), d.above)
      FROM ages a
      CROSS JOIN (SELECT * FROM lim WHERE lim.object_name IS NULL) d
      LEFT JOIN lim o ON o.object_name = a.relid
     ORDER BY a.scope, a.age DESC
$$;

-- Sequences against what they, and the column they feed (owned-by or identity), can hold.
-- last_value is NULL before the first nextval, and for a role without USAGE or SELECT on it.
CREATE FUNCTION @extschema@.health_sequences()
RETURNS TABLE (sequence_name regclass, column_name text, column_type regtype,
               last_value bigint, max_value numeric, share_used float8, severity text,
               note text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH seqs AS (
        SELECT c.oid, s.seqincrement > 0 AS ascending, s.seqmin, s.seqmax, q.last_value,
               col.attrelid, col.attname, col.atttypid
          FROM pg_sequence s
          JOIN pg_class c ON c.oid = s.seqrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_sequences q ON q.schemaname = n.nspname AND q.sequencename = c.relname
          LEFT JOIN LATERAL (
              SELECT a.attrelid, a.attname, a.atttypid
                FROM pg_depend d
                JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
               WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                 AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
               LIMIT 1) col ON true
    ),
    bounds AS (
        SELECT s.*,
               -- The column's type caps what the sequence may usefully reach.
               CASE WHEN s.ascending
                    THEN least(s.seqmax::numeric, CASE s.atttypid WHEN 'int2'::regtype THEN 32767
                                                           WHEN 'int4'::regtype THEN 2147483647
                                                           ELSE s.seqmax END)
                    ELSE greatest(s.seqmin::numeric, CASE s.atttypid WHEN 'int2'::regtype THEN -32768
                                                             WHEN 'int4'::regtype THEN -2147483648
                                                             ELSE s.seqmin END)
               END AS limit_value,
               CASE WHEN s.ascending THEN s.seqmin ELSE s.seqmax END AS start_value
          FROM seqs s
    ),
    lim AS (SELECT * FROM @extschema@.health_limits('sequence_exhaustion'))
    SELECT b.oid::regclass,
           CASE WHEN b.attrelid IS NOT NULL THEN format('%s.%I', b.attrelid::regclass, b.attname) END,
           b.atttypid::regtype, b.last_value, b.limit_value,
           round(((b.last_value - b.start_value) / nullif(b.limit_value - b.start_value, 0))::numeric, 6)::float8,
           CASE WHEN b.last_value IS NULL THEN 'ok'
                ELSE @extschema@.health_grade(
                         ((b.last_value - b.start_value) / nullif(b.limit_value - b.start_value, 0))::float8,
                         coalesce(o.warning, d.warning), coalesce(o.critical, d.critical), d.above)
           END,
           CASE WHEN b.last_value IS NULL
                     AND NOT has_sequence_privilege(b.oid, 'SELECT, USAGE')
                THEN 'no SELECT or USAGE privilege on the sequence: its value is hidden'
                WHEN b.last_value IS NULL THEN 'never used'
                WHEN b.attrelid IS NOT NULL AND b.limit_value <> CASE WHEN b.ascending THEN b.seqmax ELSE b.seqmin END
                THEN format('the %s column fills before the sequence does', b.atttypid::regtype)
           END
      FROM bounds b
      CROSS JOIN (SELECT * FROM lim WHERE lim.object_name IS NULL) d
      LEFT JOIN lim o ON o.object_name = b.oid
     ORDER BY 6 DESC NULLS LAST, 1::text
$$;

-- The current database's statements from pg_stat_statements, slowest on average first among
-- those over the warning threshold, then by total time. None when it is not installed.
CREATE FUNCTION @extschema@.health_slow_queries(top int DEFAULT 20)
RETURNS TABLE (queryid bigint, calls bigint, mean_ms float8, total_ms float8, rows bigint,
               hit_ratio float8, share_of_total_time float8, query text, severity text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    pgss regnamespace;
BEGIN
    IF top IS NULL OR top < 1 THEN
        RAISE EXCEPTION 'top must be at least 1, not %', coalesce(top::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    SELECT e.extnamespace INTO pgss FROM pg_extension e WHERE e.extname = 'pg_stat_statements';
    IF pgss IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        $q$
        WITH s AS (
            SELECT s.queryid, sum(s.calls)::bigint AS calls,
                   sum(s.total_exec_time) AS total, sum(s.rows)::bigint AS rows,
                   sum(s.shared_blks_hit) AS hit, sum(s.shared_blks_read) AS read,
                   min(s.query) AS query
              FROM %I.pg_stat_statements s
             WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND s.calls > 0
             GROUP BY s.queryid
        )
        SELECT s.queryid, s.calls, round((s.total / s.calls)::numeric, 3)::float8,
               round(s.total::numeric, 3)::float8, s.rows,
               round((s.hit / nullif(s.hit + s.read, 0))::numeric, 4)::float8,
               round((s.total / nullif(sum(s.total) OVER (), 0))::numeric, 4)::float8,
               s.query,
               @extschema@.health_grade(s.total / s.calls, l.warning, l.critical, l.above)
          FROM s CROSS JOIN @extschema@.health_limits('slow_statement') l
         WHERE l.object_name IS NULL
         ORDER BY s.total / s.calls >= l.warning DESC,
                  CASE WHEN s.total / s.calls >= l.warning THEN s.total / s.calls END DESC,
                  s.total DESC
         LIMIT $1
        $q$, pgss)
    USING top;
END
$$;

-- Estimated table bloat, with how far the estimate can be trusted (src/health/bloat.rs).
CREATE FUNCTION @extschema@.health_bloat()
RETURNS TABLE (table_name regclass, table_bytes bigint, expected_bytes bigint,
               bloat_bytes bigint, bloat_ratio float8, confidence text, reasons text[],
               severity text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH lim AS (SELECT * FROM @extschema@.health_limits('table_bloat'))
    SELECT b.table_oid::regclass, b.table_bytes, b.expected_bytes, b.bloat_bytes,
           round(b.bloat_ratio::numeric, 4)::float8, b.confidence, b.reasons,
           -- A low-confidence estimate is shown, never raised as a problem.
           CASE WHEN b.confidence = 'low' THEN 'info'
                ELSE @extschema@.health_grade(b.bloat_ratio, coalesce(o.warning, d.warning),
                                              coalesce(o.critical, d.critical), d.above) END
      FROM @extschema@.table_bloat_estimates() b
      CROSS JOIN (SELECT * FROM lim WHERE lim.object_name IS NULL) d
      LEFT JOIN lim o ON o.object_name = b.table_oid
     ORDER BY b.confidence = 'low', b.bloat_bytes DESC, 1::text
$$;

-- Everything at once ------------------------------------------------------------------------

-- One report: per section its count of critical and warning findings and its first
-- rows_per_section rows (the findings; for sizes, hit ratios, connections and blocking, every
-- row), an overall status, and a note when this role cannot see everything.
CREATE FUNCTION @extschema@.db_health(rows_per_section int DEFAULT 20)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    report jsonb := '{}';
    section record;
    found jsonb;
    critical int;
    warning int;
    total_critical int := 0;
    total_warning int := 0;
    sees_all boolean := pg_has_role('pg_read_all_stats', 'USAGE');
BEGIN
    IF rows_per_section IS NULL OR rows_per_section < 1 THEN
        RAISE EXCEPTION 'rows_per_section must be at least 1, not %',
            coalesce(rows_per_section::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    FOR section IN
        SELECT * FROM (VALUES
            ('sizes', 'SELECT * FROM @extschema@.health_sizes()', true),
            ('hit_ratios', 'SELECT * FROM @extschema@.health_hit_ratios()', true),
            ('connections', 'SELECT * FROM @extschema@.health_connections()', true),
            ('index_usage', 'SELECT * FROM @extschema@.health_index_usage()', false),
            -- Unused indexes are graded by index_usage, with how long they have been unused.
            ('index_problems', 'SELECT h.*, CASE h.problem WHEN ''invalid'' THEN ''critical''
                                                  ELSE ''warning'' END AS severity
                                  FROM @extschema@.index_health() h
                                 WHERE h.problem <> ''unused''', false),
            ('long_sessions', 'SELECT * FROM @extschema@.health_long_sessions()', false),
            ('blocking', 'SELECT * FROM @extschema@.health_blocking()', true),
            ('vacuum', 'SELECT * FROM @extschema@.health_vacuum()', false),
            ('wraparound', 'SELECT * FROM @extschema@.health_wraparound()', false),
            ('sequences', 'SELECT * FROM @extschema@.health_sequences()', false),
            ('slow_queries', 'SELECT * FROM @extschema@.health_slow_queries()', false),
            ('bloat', 'SELECT * FROM @extschema@.health_bloat()', false)
        ) AS s(name, query, show_all)
    LOOP
        -- show_all: every row is worth showing (the largest tables, a whole blocking chain);
        -- otherwise only the findings.
        EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(x)), ''[]'') FROM (%s) x WHERE %s',
                       section.query,
                       CASE WHEN section.show_all THEN 'true'
                            ELSE 'x.severity IN (''warning'', ''critical'')' END)
        INTO found;
        SELECT count(*) FILTER (WHERE f->>'severity' = 'critical'),
               count(*) FILTER (WHERE f->>'severity' = 'warning')
          INTO critical, warning
          FROM jsonb_array_elements(found) f;
        total_critical := total_critical + critical;
        total_warning := total_warning + warning;
        report := report || jsonb_build_object(section.name, jsonb_build_object(
            'critical', critical, 'warning', warning,
            'rows', jsonb_path_query_array(found, '$[0 to $last]',
                                           jsonb_build_object('last', rows_per_section - 1)),
            'rows_left_out', greatest(jsonb_array_length(found) - rows_per_section, 0)));
    END LOOP;
    RETURN jsonb_build_object(
        'database', current_database(),
        'checked_at', now(),
        'status', CASE WHEN total_critical > 0 THEN 'critical'
                       WHEN total_warning > 0 THEN 'warning' ELSE 'ok' END,
        'findings', jsonb_build_object('critical', total_critical, 'warning', total_warning),
        'snapshots', (SELECT jsonb_build_object('count', count(*), 'first', min(taken_at),
                                                'last', max(taken_at))
                        FROM @extschema@.stat_snapshots),
        'note', CASE WHEN NOT sees_all THEN
            'this role is not a member of pg_read_all_stats (or pg_monitor): other roles'' '
            || 'sessions show no state or query, and sequences and statistics it may not read '
            || 'are left out' END,
        'sections', report);
END
$$;
