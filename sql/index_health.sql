-- Index health: existing indexes that are invalid, duplicate, prefix-redundant or unused, each
-- with the statement that drops it and the bytes that frees. Indexes that enforce something are
-- never proposed.

CREATE FUNCTION @extschema@.index_health()
RETURNS TABLE (index_name regclass, table_name regclass, problem text, detail text,
               kept_index regclass, idx_scan bigint, stats_since timestamptz,
               index_bytes bigint, drop_statement text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
WITH idx AS (
    SELECT i.indexrelid, i.indrelid, n.nspname, c.relname, c.relkind, c.relam,
           i.indisvalid, i.indisready, i.indisunique, i.indnkeyatts, i.indnatts,
           -- int2vector/oidvector cast to arrays with lower bound 0, and array equality compares
           -- bounds too; slicing renumbers from 1, so every array here is sliced.
           (i.indkey::int2[])[0:i.indnkeyatts - 1] AS keys,
           (i.indclass::oid[])[0:i.indnkeyatts - 1] AS classes,
           (i.indcollation::oid[])[0:i.indnkeyatts - 1] AS colls,
           (i.indoption::int2[])[0:i.indnkeyatts - 1] AS opts,
           (i.indkey::int2[])[0:i.indnatts - 1] AS all_cols,
           -- INCLUDE columns only add payload, so their order does not matter.
           ARRAY(SELECT k FROM unnest((i.indkey::int2[])[i.indnkeyatts:i.indnatts - 1]) k
                  ORDER BY k) AS incl,
           i.indexprs IS NOT NULL AS has_exprs,
           -- Deparsed, not the raw node trees: those hold parse locations, so the same expression
           -- written with different spacing would differ.
           pg_get_expr(i.indexprs, i.indrelid) AS exprs,
           pg_get_expr(i.indpred, i.indrelid) AS pred,
           pin.pinned,
           -- A unique index enforces uniqueness even without a constraint row.
           pin.pinned OR i.indisunique AS protected,
           -- A partitioned index has no statistics or storage of its own: sum its partitions'.
           CASE WHEN c.relkind = 'I' THEN
                (SELECT coalesce(sum(s.idx_scan), 0)::bigint
                   FROM pg_catalog.pg_partition_tree(i.indexrelid) t
                   JOIN pg_catalog.pg_stat_all_indexes s ON s.indexrelid = t.relid)
                ELSE coalesce((SELECT s.idx_scan FROM pg_catalog.pg_stat_all_indexes s
                                WHERE s.indexrelid = i.indexrelid), 0)
           END AS scans,
           CASE WHEN c.relkind = 'I' THEN
                (SELECT coalesce(sum(z.own_bytes), 0)::bigint
                   FROM pg_catalog.pg_partition_tree(i.indexrelid) t
                  CROSS JOIN LATERAL @extschema@.relation_sizes_nowait(t.relid) z)
                ELSE (SELECT z.own_bytes FROM @extschema@.relation_sizes_nowait(i.indexrelid) z)
           END AS bytes
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      -- Pinned: dropping it would drop or break a constraint (primary key, unique, exclusion,
      -- or a foreign key referencing it), the replica identity, or it is attached to a
      -- partitioned index and cannot be dropped alone (its parent is judged instead).
     CROSS JOIN LATERAL (
           SELECT i.indisprimary OR i.indisexclusion OR i.indisreplident
                  OR EXISTS (SELECT FROM pg_catalog.pg_constraint k
                              WHERE k.conindid = i.indexrelid)
                  OR EXISTS (SELECT FROM pg_catalog.pg_inherits h
                              WHERE h.inhrelid = i.indexrelid) AS pinned) pin
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\_toast%'          -- pg_toast and pg_toast_temp_N
       AND NOT pg_is_other_temp_schema(n.oid)
       -- Extensions' own tables (dbopt's, pg_cron's) are theirs to index.
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_class'::regclass
                          AND d.objid = i.indrelid AND d.deptype = 'e')
),
-- A unique index left invalid by a failed CREATE UNIQUE INDEX CONCURRENTLY backs no constraint
-- and enforces nothing reliably, so it may be reported; anything pinned may not.
invalid AS (
    SELECT x.indexrelid, 1 AS rank, 'invalid' AS problem, NULL::oid AS kept,
           CASE WHEN x.relkind = 'I' THEN
                'invalid partitioned index: not every partition has an index attached to it; '
                || 'dropping it also drops the partition indexes attached to it, while attaching '
                || 'the missing ones would make it valid'
                ELSE 'invalid (indisvalid = false), usually the leftover of a failed CREATE INDEX '
                || 'CONCURRENTLY or REINDEX CONCURRENTLY: the planner never uses it'
                || CASE WHEN x.indisready THEN ', yet it is still maintained on every write'
                        ELSE ' and it is not maintained either' END
                || CASE WHEN x.indisunique THEN '; it backs no constraint' ELSE '' END
           END AS detail
      FROM idx x
     WHERE NOT x.indisvalid AND NOT x.pinned
),
-- Identical definitions: keep protected ones first, then the most scanned, then the oldest.
dup_groups AS (
    SELECT x.indexrelid, x.protected,
           first_value(x.indexrelid) OVER (
               PARTITION BY x.indrelid, x.relam, x.indnkeyatts, x.indnatts, x.keys, x.classes,
                            x.colls, x.opts, x.exprs, x.pred, x.incl
               ORDER BY x.protected DESC, x.scans DESC, x.indexrelid) AS kept
      FROM idx x
     WHERE x.indisvalid
),
duplicate AS (
    SELECT g.indexrelid, 2 AS rank, 'duplicate' AS problem, g.kept,
           format('same keys, operator classes, collations, sort orders, predicate and INCLUDE '
                  || 'columns as %s', g.kept::regclass) AS detail
      FROM dup_groups g
     WHERE g.indexrelid <> g.kept AND NOT g.protected
),
-- btree only: a btree on (a, b) serves every search on (a). Both must be without expressions:
-- indkey holds 0 for each expression column, so which expression sits at which position
-- cannot be matched reliably. Candidates are paired within their table only: a join of idx with
-- itself was planned as a nested loop over the whole CTE, seconds on 6,000 indexes.
-- (The candidates' filter sits in the aggregate, not in a WHERE clause: filtered, the CTE is
-- expected to yield a few rows and the pairs are again looked up by scanning all of idx.)
prefix_groups AS (
    SELECT array_agg(x.indexrelid) FILTER (
               WHERE x.relam = (SELECT a.oid FROM pg_catalog.pg_am a WHERE a.amname = 'btree')
                 AND x.indisvalid AND NOT x.has_exprs) AS members
      FROM idx x
     GROUP BY x.indrelid, x.pred
),
prefix_pairs AS (
    SELECT c_id, o_id
      FROM prefix_groups g
     CROSS JOIN LATERAL unnest(g.members) c_id
     CROSS JOIN LATERAL unnest(g.members) o_id
     WHERE c_id <> o_id
),
prefix AS (
    SELECT DISTINCT ON (c.indexrelid)
           c.indexrelid, 3 AS rank, 'redundant_prefix' AS problem, o.indexrelid AS kept,
           format('its keys (%s) lead %s''s keys (%s)',
                  (SELECT string_agg(pg_get_indexdef(c.indexrelid, k, true), ', ' ORDER BY k)
                     FROM generate_series(1, c.indnkeyatts) k),
                  o.indexrelid::regclass,
                  (SELECT string_agg(pg_get_indexdef(o.indexrelid, k, true), ', ' ORDER BY k)
                     FROM generate_series(1, o.indnkeyatts) k)) AS detail
      FROM prefix_pairs p
      JOIN idx c ON c.indexrelid = p.c_id
      JOIN idx o ON o.indexrelid = p.o_id
     WHERE NOT c.protected
       AND c.indnkeyatts < o.indnkeyatts
       AND o.keys[1:c.indnkeyatts] = c.keys
       AND o.classes[1:c.indnkeyatts] = c.classes
       AND o.colls[1:c.indnkeyatts] = c.colls
       AND o.opts[1:c.indnkeyatts] = c.opts
       AND c.incl <@ o.all_cols
     -- Keep a protected index if one covers it; else the longest, most used, oldest: that one is
     -- never itself reported as duplicate or redundant_prefix (anything covering it covers this).
     ORDER BY c.indexrelid, o.protected DESC, o.indnkeyatts DESC, o.scans DESC, o.indexrelid
),
stats AS (
    SELECT (SELECT d.stats_reset FROM pg_catalog.pg_stat_database d
             WHERE d.datname = current_database()) AS stats_reset
),
-- Unused: idx_scan = 0 since the statistics were reset, or, where dbopt.snapshot_stats has
-- watched the index, no scan since a snapshot at least the unused_index warning's days ago.
unused AS (
    SELECT x.indexrelid, 4 AS rank, 'unused' AS problem, NULL::oid AS kept,
           CASE WHEN u.evidence = 'snapshots'
                THEN format('no scans since %s (%s ago), as dbopt.snapshot_stats measured',
                            date_trunc('second', u.unused_since),
                            date_trunc('second', now() - u.unused_since))
                WHEN s.stats_reset IS NULL
                THEN 'idx_scan = 0 since statistics began (never reset)'
                ELSE format('idx_scan = 0 since statistics were reset %s ago',
                            date_trunc('second', now() - s.stats_reset))
           END AS detail,
           u.unused_since
      FROM idx x CROSS JOIN stats s
      LEFT JOIN @extschema@.index_unused_since() u ON u.indexrelid = x.indexrelid
     WHERE x.indisvalid AND NOT x.protected
       AND (x.scans = 0
            OR (u.evidence = 'snapshots'
                AND u.unused_since <= now() - make_interval(secs => 86400 * (
                        SELECT l.warning FROM @extschema@.health_limits('unused_index') l
                         WHERE l.object_name IS NULL))))
),
-- One row per index, its most serious problem.
worst AS (
    SELECT DISTINCT ON (p.indexrelid) p.*
      FROM (SELECT * FROM invalid UNION ALL SELECT * FROM duplicate
            UNION ALL SELECT * FROM prefix
            UNION ALL SELECT indexrelid, rank, problem, kept, detail FROM unused) p
     ORDER BY p.indexrelid, p.rank
)
SELECT x.indexrelid::regclass, x.indrelid::regclass, w.problem,
       w.detail || CASE WHEN x.relkind = 'I'
                        THEN ' (partitioned index: DROP INDEX cannot run CONCURRENTLY on it, so '
                             || 'the drop takes an ACCESS EXCLUSIVE lock on the table and its '
                             || 'partitions)'
                        ELSE '' END,
       w.kept::regclass, x.scans, coalesce(un.unused_since, s.stats_reset), x.bytes,
       CASE WHEN x.relkind = 'I' THEN format('DROP INDEX %I.%I;', x.nspname, x.relname)
            ELSE format('DROP INDEX CONCURRENTLY %I.%I;', x.nspname, x.relname) END
  FROM worst w
  JOIN idx x ON x.indexrelid = w.indexrelid
  LEFT JOIN unused un ON un.indexrelid = w.indexrelid
 CROSS JOIN stats s
 ORDER BY w.rank, x.bytes DESC, x.nspname, x.relname
$$;
