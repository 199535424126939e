-- Materialized views refreshed on a schedule (issue 7): register a view with how often it should
-- be refreshed; CALL dbopt.refresh_matviews() (from pg_cron, every minute) refreshes the due
-- ones, dependencies first, each in its own transaction, CONCURRENTLY when the view allows it.

-- One row per managed materialized view. Status columns are written by refresh_matviews.
CREATE TABLE @extschema@.matviews (
    view regclass PRIMARY KEY,
    refresh_every interval NOT NULL CHECK (refresh_every > interval '0'),
    -- Who registered it: sees the row even after the view is dropped, to clean it up.
    registered_by regrole NOT NULL DEFAULT current_user::regrole,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_refresh_at timestamptz,
    last_duration interval,
    last_method text CHECK (last_method IN ('concurrently', 'plain')),
    refreshes bigint NOT NULL DEFAULT 0,
    failures bigint NOT NULL DEFAULT 0,
    last_error text,
    last_error_sqlstate text,
    last_error_at timestamptz
);
COMMENT ON TABLE @extschema@.matviews IS
    'Materialized views dbopt.refresh_matviews() keeps fresh (register with dbopt.manage_matview)';
-- A role manages the views it could refresh itself: those it owns (REFRESH requires ownership).
ALTER TABLE @extschema@.matviews ENABLE ROW LEVEL SECURITY;
CREATE POLICY view_owners ON @extschema@.matviews
    USING (@extschema@.may_manage(view, registered_by));
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.matviews TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.matviews', '');

-- How the next refresh of `view` will run, and why. CONCURRENTLY needs the view populated and a
-- valid unique index on plain columns without a WHERE clause (PostgreSQL's own conditions);
-- readers are then never blocked. Otherwise a plain refresh, which locks readers out.
CREATE FUNCTION @extschema@.matview_refresh_method(view regclass, OUT method text, OUT reason text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN NOT c.relispopulated THEN 'plain'
                WHEN u.index_name IS NOT NULL THEN 'concurrently'
                ELSE 'plain' END,
           CASE WHEN NOT c.relispopulated
                THEN 'not populated yet (WITH NO DATA): the first refresh must be plain, and '
                     || 'locks readers out while it runs'
                WHEN u.index_name IS NOT NULL
                THEN format('unique index %s on plain columns: readers keep reading during the '
                            || 'refresh', u.index_name)
                ELSE 'no unique index on plain columns without WHERE: a plain refresh locks '
                     || 'readers out while it runs; create one to refresh CONCURRENTLY'
           END
      FROM pg_catalog.pg_class c
      LEFT JOIN LATERAL (
           SELECT i.indexrelid::regclass::text AS index_name
             FROM pg_catalog.pg_index i
            WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indimmediate
              AND i.indpred IS NULL AND i.indexprs IS NULL
            ORDER BY i.indexrelid LIMIT 1) u ON true
     WHERE c.oid = view
$$;

-- Registers `view` (or changes its interval) and says how it will be refreshed.
CREATE FUNCTION @extschema@.manage_matview(view regclass, refresh_every interval)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind "char";
    owned boolean;
    how record;
BEGIN
    IF view IS NULL THEN
        RAISE EXCEPTION 'view must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, pg_catalog.pg_has_role(c.relowner, 'USAGE') INTO kind, owned
      FROM pg_catalog.pg_class c WHERE c.oid = view;
    IF kind IS DISTINCT FROM 'm' THEN
        RAISE EXCEPTION '% is not a materialized view', view::text
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('It is %s.', CASE kind WHEN 'v' THEN 'a view'
                                                         WHEN 'r' THEN 'a table'
                                                         WHEN 'p' THEN 'a partitioned table'
                                                         WHEN 'f' THEN 'a foreign table'
                                                         ELSE 'not a relation that can be refreshed' END),
                  HINT = 'dbopt.manage_matview manages views created with CREATE MATERIALIZED VIEW.';
    END IF;
    IF refresh_every IS NULL OR refresh_every <= interval '0' THEN
        RAISE EXCEPTION 'refresh_every for % must be a positive interval, not %', view::text,
            coalesce(refresh_every::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example interval ''15 minutes''.';
    END IF;
    IF NOT owned THEN
        RAISE EXCEPTION 'must be owner of materialized view % to manage its refreshes', view::text
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'REFRESH MATERIALIZED VIEW needs ownership; ask its owner to register it.';
    END IF;
    INSERT INTO @extschema@.matviews AS m (view, refresh_every)
    VALUES (manage_matview.view, manage_matview.refresh_every)
    ON CONFLICT ON CONSTRAINT matviews_pkey
    DO UPDATE SET refresh_every = EXCLUDED.refresh_every;
    how := @extschema@.matview_refresh_method(view);
    RETURN format('%s is refreshed every %s, %s: %s', view::text, refresh_every, how.method,
                  how.reason);
END
$$;

-- Stops managing `view`; true when it was managed.
CREATE FUNCTION @extschema@.unmanage_matview(view regclass)
RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM @extschema@.matviews m WHERE m.view = unmanage_matview.view
                  RETURNING 1)
    SELECT count(*) > 0 FROM gone
$$;

-- The managed views in refresh order: depth 0 reads no other managed view; depth n reads one of
-- depth n - 1, directly or through plain views. Refreshing by depth refreshes what a view reads
-- before the view.
CREATE FUNCTION @extschema@.matview_refresh_order()
RETURNS TABLE (view regclass, depth int)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE
    reads(view, rel, hops) AS (
        SELECT m.view::oid, d.refobjid, 1
          FROM @extschema@.matviews m
          JOIN pg_catalog.pg_rewrite r ON r.ev_class = m.view
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
                                      AND d.objid = r.oid
                                      AND d.refclassid = 'pg_catalog.pg_class'::regclass
                                      AND d.refobjid <> m.view
        UNION
        -- Through plain views to what they read (a bound keeps a pathological graph finite).
        SELECT f.view, d.refobjid, f.hops + 1
          FROM reads f
          JOIN pg_catalog.pg_class c ON c.oid = f.rel AND c.relkind = 'v'
          JOIN pg_catalog.pg_rewrite r ON r.ev_class = c.oid
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
                                      AND d.objid = r.oid
                                      AND d.refclassid = 'pg_catalog.pg_class'::regclass
                                      AND d.refobjid <> c.oid
         WHERE f.hops < 32
    ),
    edges AS (
        SELECT DISTINCT f.view, f.rel AS reads_view
          FROM reads f JOIN @extschema@.matviews m ON m.view = f.rel
    ),
    levels(view, depth) AS (
        SELECT m.view::oid, 0 FROM @extschema@.matviews m
        UNION
        SELECT e.view, l.depth + 1
          FROM levels l JOIN edges e ON e.reads_view = l.view
         WHERE l.depth < 32
    )
    SELECT l.view::regclass, max(l.depth)::int
      FROM levels l
      JOIN pg_catalog.pg_class c ON c.oid = l.view
     GROUP BY l.view
$$;

-- Refreshes the managed views that are due (all of them with force => true), dependencies
-- first, each committed on its own. A view another run is refreshing is skipped, not waited
-- for. A failure (lock not had within dbopt.lock_timeout, an error in the view's query) is
-- recorded in dbopt.matviews, raised as a WARNING, and the run goes on.
CREATE PROCEDURE @extschema@.refresh_matviews(force boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    item record;
    started timestamptz;
    used text;
    failed_state text;
    failed_message text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- Registrations of views dropped since: nothing left to refresh.
    DELETE FROM @extschema@.matviews m
     WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = m.view AND c.relkind = 'm');
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    FOR item IN SELECT o.view FROM @extschema@.matview_refresh_order() o
                 ORDER BY o.depth, o.view::text LOOP
        PERFORM FROM @extschema@.matviews m
          WHERE m.view = item.view
            AND (force OR m.last_refresh_at IS NULL
                 OR m.last_refresh_at + m.refresh_every <= pg_catalog.now())
            FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            started := pg_catalog.clock_timestamp();
            BEGIN
                used := @extschema@.refresh_matview(item.view);
                UPDATE @extschema@.matviews m
                   SET last_refresh_at = pg_catalog.clock_timestamp(),
                       last_duration = pg_catalog.clock_timestamp() - started,
                       last_method = used, refreshes = m.refreshes + 1,
                       last_error = NULL, last_error_sqlstate = NULL
                 WHERE m.view = item.view;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE,
                                        failed_message = MESSAGE_TEXT;
                UPDATE @extschema@.matviews m
                   SET failures = m.failures + 1, last_error = failed_message,
                       last_error_sqlstate = failed_state,
                       last_error_at = pg_catalog.clock_timestamp()
                 WHERE m.view = item.view;
                RAISE WARNING 'refreshing % failed: %', item.view::text, failed_message
                    USING ERRCODE = failed_state;
            END;
        END IF;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END LOOP;
END
$$;

-- What each managed view looks like now: how fresh, how the next refresh will run, what went
-- wrong last. Rows follow dbopt.matviews' policy: the views the caller owns.
CREATE VIEW @extschema@.matview_status WITH (security_invoker = true) AS
SELECT m.view, m.refresh_every, c.relispopulated AS populated,
       m.last_refresh_at, m.last_duration, m.last_method,
       pg_catalog.now() - m.last_refresh_at AS staleness,
       coalesce(m.last_refresh_at + m.refresh_every, m.registered_at) AS next_due,
       m.last_refresh_at IS NULL OR m.last_refresh_at + m.refresh_every <= pg_catalog.now() AS due,
       how.method AS next_method, how.reason AS next_method_reason,
       m.refreshes, m.failures, m.last_error, m.last_error_sqlstate, m.last_error_at
  FROM @extschema@.matviews m
  JOIN pg_catalog.pg_class c ON c.oid = m.view
 CROSS JOIN LATERAL @extschema@.matview_refresh_method(m.view) how;
COMMENT ON VIEW @extschema@.matview_status IS
    'Managed materialized views: last refresh, duration, staleness, next due, next method, errors';
GRANT SELECT ON @extschema@.matview_status TO PUBLIC;
