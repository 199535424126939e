-- Batched archiving: the run log and the procedures that commit between batches. Each batch is
-- one statement run by dbopt.archive_batch (src/archive/), so a batch is either wholly moved or
-- not at all; committing between batches is what Rust cannot do, hence PL/pgSQL here.

-- One row per run of dbopt.archive or dbopt.unarchive, written in the same transaction as each
-- batch: after a crash, rows_moved is exactly what the committed batches moved.
CREATE TABLE @extschema@.archive_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    direction text NOT NULL CHECK (direction IN ('archive', 'unarchive')),
    source regclass NOT NULL,
    source_name text NOT NULL,
    archive regclass,
    archive_name text,
    time_column name,
    cutoff timestamptz,
    filter text,
    batch_size integer NOT NULL,
    -- The caller's search_path: the filter and the source's triggers are evaluated in it.
    search_path text,
    -- The plan: each table to move rows from, and how ('batch' or 'attach').
    targets regclass[],
    actions text[],
    started timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished timestamptz,
    last_batch_at timestamptz,
    rows_moved bigint NOT NULL DEFAULT 0,
    batches integer NOT NULL DEFAULT 0,
    partitions_moved integer NOT NULL DEFAULT 0,
    rows_per_second double precision,
    -- running, done, stopped (max_runtime reached), skipped (another run held the source),
    -- failed, cancelled, interrupted (its session died: found by the next run)
    status text NOT NULL DEFAULT 'running',
    error text,
    pid integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    run_by name NOT NULL DEFAULT current_user
);
CREATE INDEX archive_runs_source ON @extschema@.archive_runs (source, id);
COMMENT ON TABLE @extschema@.archive_runs IS
    'Runs of dbopt.archive and dbopt.unarchive, updated with every committed batch';
ALTER TABLE @extschema@.archive_runs ENABLE ROW LEVEL SECURITY;
-- A run is visible to whoever ran it and to the source's owners; written only by its runner.
CREATE POLICY runners_and_owners ON @extschema@.archive_runs
    USING (run_by = current_user
           OR pg_catalog.pg_has_role(
                  (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = source), 'USAGE'))
    WITH CHECK (run_by = current_user);
GRANT SELECT, INSERT, UPDATE ON @extschema@.archive_runs TO PUBLIC;

-- The key of the session-level advisory lock that lets one archive or unarchive run per source.
CREATE FUNCTION @extschema@.archive_lock_key(source regclass) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (x'64626f61'::bigint << 32) | source::oid::bigint
$$;

-- Takes the source's session-level advisory lock for a run, or says who holds it and records a
-- skipped run. A lock this session still holds from a cancelled run is reused, not stacked.
CREATE FUNCTION @extschema@.archive_lock(source regclass, direction text, batch_size integer)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key bigint := @extschema@.archive_lock_key(source);
    holder integer;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.classid = (key >> 32)::oid
                  AND l.objid = (key & 4294967295)::oid AND l.pid = pg_catalog.pg_backend_pid())
       OR pg_catalog.pg_try_advisory_lock(key) THEN
        RETURN true;
    END IF;
    SELECT l.pid INTO holder FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.classid = (key >> 32)::oid AND l.objid = (key & 4294967295)::oid
     LIMIT 1;
    INSERT INTO @extschema@.archive_runs
        (direction, source, source_name, batch_size, status, error, finished)
    VALUES (direction, source, source::text, batch_size, 'skipped',
            format('another run (pid %s) is moving rows of %s', holder, source), clock_timestamp());
    RAISE NOTICE 'dbopt.%: another run (pid %) is moving rows of %; nothing moved', direction, holder, source
        USING HINT = 'See dbopt.archive_runs; call again once it has finished.';
    RETURN false;
END
$$;

-- Refuses a batch whose rows other tables still reference, naming the foreign key and the
-- referencing table: an archive move must never cascade. VOLATILE, so its query sees
-- references committed after the batch's snapshot; the batch holds the rows' locks by then,
-- so no new reference can appear before it commits.
CREATE FUNCTION @extschema@.archive_unreferenced(moved_from regclass, row_ids tid[])
RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fk record;
    referenced text;
BEGIN
    FOR fk IN
        SELECT c.conname, c.conrelid::regclass AS referencing,
               (SELECT string_agg(format('r.%I', a.attname), ', ' ORDER BY k.i)
                  FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, i)
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum)
                   AS referencing_columns,
               (SELECT string_agg(format('s.%I', a.attname), ', ' ORDER BY k.i)
                  FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, i)
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum)
                   AS key_columns
          FROM pg_catalog.pg_constraint c
         WHERE c.contype = 'f' AND c.confrelid = moved_from
    LOOP
        EXECUTE format('SELECT ROW(%s)::text FROM %s r JOIN ONLY %s s ON (%s) = (%s)
                         WHERE s.ctid = ANY ($1) LIMIT 1',
                       fk.key_columns, fk.referencing, moved_from,
                       fk.referencing_columns, fk.key_columns)
           INTO referenced USING row_ids;
        IF referenced IS NOT NULL THEN
            RAISE EXCEPTION 'rows of % are referenced by foreign key % of table %',
                            moved_from, fk.conname, fk.referencing
                USING ERRCODE = 'foreign_key_violation',
                      DETAIL = format('Key %s is still referenced from %s.', referenced, fk.referencing),
                      HINT = 'dbopt never cascades an archive move: archive or delete the referencing rows first, or narrow the filter.';
        END IF;
    END LOOP;
    RETURN true;
END
$$;

-- A view of all rows, hot and archived (without archived_at), so full-history queries keep working.
CREATE FUNCTION @extschema@.create_history_view(
    source regclass, view_name text DEFAULT NULL, archive_table text DEFAULT NULL
) RETURNS regclass
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@.history_view_create(source, view_name, archive_table)::regclass
$$;

-- Ends a run: records how, and releases the source's session lock taken by archive_begin.
CREATE FUNCTION @extschema@.archive_end(run bigint, outcome text, message text)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    moved_from regclass;
BEGIN
    UPDATE @extschema@.archive_runs r
       SET status = outcome, error = message, finished = clock_timestamp(),
           rows_per_second = r.rows_moved
                             / greatest(extract(epoch FROM clock_timestamp() - r.started), 0.001)
     WHERE r.id = run
    RETURNING r.source INTO moved_from;
    PERFORM pg_catalog.pg_advisory_unlock(@extschema@.archive_lock_key(moved_from));
END
$$;

-- Runs a started run to its end, committing after every step: the loop shared by archive and
-- unarchive. archive_begin planned the tables: 'batch' moves a table's rows in batches; 'attach'
-- moves a partition lying wholly before the cutoff by DETACH and ATTACH, in three short
-- transactions ('fence', 'validate', 'swap'). Everything but COMMIT runs inside the exception
-- block, so an error or a cancel anywhere is recorded and releases the source.
CREATE PROCEDURE @extschema@.archive_move(run bigint, max_runtime interval, pause interval)
LANGUAGE plpgsql AS $$
DECLARE
    targets regclass[];
    actions text[];
    i integer;
    step text;
    position text;
    moved bigint;
    left_over bigint;
    passes integer;
    from_start boolean;
    lock_attempts integer;
    nap double precision := 0;
    began timestamptz := clock_timestamp();
    out_of_time boolean := false;
    state text;
    message text;
    detail text;
    hint text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SELECT r.targets, r.actions INTO targets, actions
      FROM @extschema@.archive_runs r WHERE r.id = run;
    FOR i IN 1 .. coalesce(array_length(targets, 1), 0) LOOP
        step := CASE actions[i] WHEN 'attach' THEN 'fence' ELSE 'batch' END;
        position := NULL;
        passes := 0;
        lock_attempts := 0;
        left_over := 0;
        LOOP
            state := NULL;
            from_start := position IS NULL;
            BEGIN
                IF nap > 0 THEN
                    PERFORM pg_sleep(nap);
                END IF;
                SELECT s.moved, s.next_position INTO moved, position
                  FROM @extschema@.archive_step(run, targets[i], step, position) s;
                IF step LIKE 'batch%' AND moved = 0 AND from_start THEN
                    left_over := @extschema@.archive_remaining(run, targets[i]);
                END IF;
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                                        detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
            END;
            nap := 0;
            IF state = '55P03' AND step = 'fence' THEN
                RAISE NOTICE 'dbopt.archive: % is busy; moving its rows in batches instead', targets[i];
                step := 'batch';
                CONTINUE;
            ELSIF state = '55P03' AND step = 'batch' THEN
                -- A row another session holds: this table's batches skip locked rows from now on.
                step := 'batch_skip_locked';
                CONTINUE;
            ELSIF state = '55P03' AND step IN ('swap', 'batch_skip_locked') AND lock_attempts < 3 THEN
                lock_attempts := lock_attempts + 1;
                nap := 0.2 * 2 ^ lock_attempts;
                CONTINUE;
            ELSIF state IS NOT NULL THEN
                PERFORM @extschema@.archive_end(run,
                    CASE WHEN state = '57014' THEN 'cancelled' ELSE 'failed' END, message);
                COMMIT;
                PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
                RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message,
                                      DETAIL = coalesce(detail, ''), HINT = coalesce(hint, '');
            END IF;
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            IF step = 'fence' THEN
                step := 'validate';
                CONTINUE;
            ELSIF step = 'validate' THEN
                step := 'swap';
                CONTINUE;
            END IF;
            EXIT WHEN step = 'swap';
            -- Passes over the table until one from its start finds nothing: a row updated
            -- behind the position, or locked when passed, is met by a later pass. Rows other
            -- sessions keep locked are retried a few times, then left for the next run.
            IF moved = 0 AND from_start THEN
                EXIT WHEN left_over = 0 OR passes >= 3;
                passes := passes + 1;
                nap := 0.1 * passes;
            ELSIF pause > interval '0' THEN
                nap := extract(epoch FROM pause);
            END IF;
            IF max_runtime IS NOT NULL AND clock_timestamp() - began >= max_runtime THEN
                out_of_time := true;
                EXIT;
            END IF;
        END LOOP;
        IF left_over > 0 THEN
            RAISE NOTICE 'dbopt.archive: % row(s) of % stayed locked by other sessions; the next run moves them',
                left_over, targets[i];
        END IF;
        EXIT WHEN out_of_time;
    END LOOP;
    PERFORM @extschema@.archive_end(run, CASE WHEN out_of_time THEN 'stopped' ELSE 'done' END,
        CASE WHEN out_of_time THEN format('max_runtime (%s) reached', max_runtime) END);
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
END
$$;

-- Starts a run once the source's lock is held (releasing it if the start fails), then runs it.
-- callers_path is the search_path of the CALL, taken before anything pinned it.
CREATE PROCEDURE @extschema@.archive_run(
    direction text, callers_path text, source regclass, archive_table text, filter text,
    batch_size integer, time_column text, older_than interval, max_runtime interval,
    pause interval
)
LANGUAGE plpgsql AS $$
DECLARE
    run bigint;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF NOT @extschema@.archive_lock(source, direction, batch_size) THEN
        RETURN;
    END IF;
    BEGIN
        run := @extschema@.archive_begin(direction, callers_path, source, archive_table, filter,
                                         batch_size, time_column, older_than, max_runtime, pause);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_catalog.pg_advisory_unlock(@extschema@.archive_lock_key(source));
        RAISE;
    END;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    CALL @extschema@.archive_move(run, max_runtime, pause);
END
$$;

-- Moves source's rows older than older_than (and matching filter) into archive_table, in
-- committed batches of batch_size rows, each one statement that deletes and inserts the same
-- rows. Safe to re-run at any time: it continues where a crashed or cancelled run stopped.
CREATE PROCEDURE @extschema@.archive(
    source regclass,
    time_column text,
    older_than interval,
    archive_table text DEFAULT NULL,
    filter text DEFAULT NULL,
    batch_size integer DEFAULT 10000,
    max_runtime interval DEFAULT NULL,
    pause interval DEFAULT '0'
)
LANGUAGE plpgsql AS $$
DECLARE
    callers_path text := pg_catalog.current_setting('search_path');
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    CALL @extschema@.archive_run('archive', callers_path, source,
                                 archive_table, filter, batch_size, time_column, older_than,
                                 max_runtime, pause);
END
$$;

-- Moves archived rows matching filter back into source, with the same guarantees.
CREATE PROCEDURE @extschema@.unarchive(
    source regclass,
    filter text,
    batch_size integer DEFAULT 10000,
    archive_table text DEFAULT NULL,
    max_runtime interval DEFAULT NULL,
    pause interval DEFAULT '0'
)
LANGUAGE plpgsql AS $$
DECLARE
    callers_path text := pg_catalog.current_setting('search_path');
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    CALL @extschema@.archive_run('unarchive', callers_path, source,
                                 archive_table, filter, batch_size, NULL, NULL, max_runtime,
                                 pause);
END
$$;

-- Archive policies (issue 8): what CALL dbopt.run_archive_policies() — the scheduled 'archive'
-- task — archives, one row per source. The caller's search_path is kept to read the filter and
-- the archive table's name as the caller meant them.
CREATE TABLE @extschema@.archive_policies (
    source regclass PRIMARY KEY,
    time_column text NOT NULL,
    older_than interval NOT NULL,
    archive_table text,
    filter text,
    batch_size integer NOT NULL,
    max_runtime interval,
    pause interval NOT NULL,
    search_path text NOT NULL,
    set_by regrole NOT NULL DEFAULT current_user::regrole,
    set_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.archive_policies IS
    'What the scheduled archive task moves: set with dbopt.set_archive_policy, run by CALL dbopt.run_archive_policies()';
-- A policy is its table owner's, like the rows it moves.
ALTER TABLE @extschema@.archive_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY table_owners ON @extschema@.archive_policies
    USING (@extschema@.may_manage(source, set_by));
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.archive_policies TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.archive_policies', '');

-- Sets (or replaces) source's archive policy, refusing now what a run would refuse.
CREATE FUNCTION @extschema@.set_archive_policy(
    source regclass,
    time_column text,
    older_than interval,
    archive_table text DEFAULT NULL,
    filter text DEFAULT NULL,
    batch_size integer DEFAULT 10000,
    max_runtime interval DEFAULT NULL,
    pause interval DEFAULT '0',
    search_path text DEFAULT pg_catalog.current_setting('search_path')
) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@.archive_policy_check(set_archive_policy.search_path, source, archive_table,
                                             filter, batch_size, time_column, older_than,
                                             max_runtime, pause);
    INSERT INTO @extschema@.archive_policies AS p
           (source, time_column, older_than, archive_table, filter, batch_size, max_runtime,
            pause, search_path)
    VALUES (set_archive_policy.source, set_archive_policy.time_column,
            set_archive_policy.older_than, set_archive_policy.archive_table,
            set_archive_policy.filter, set_archive_policy.batch_size,
            set_archive_policy.max_runtime, set_archive_policy.pause,
            set_archive_policy.search_path)
    ON CONFLICT ON CONSTRAINT archive_policies_pkey DO UPDATE
       SET time_column = EXCLUDED.time_column, older_than = EXCLUDED.older_than,
           archive_table = EXCLUDED.archive_table, filter = EXCLUDED.filter,
           batch_size = EXCLUDED.batch_size, max_runtime = EXCLUDED.max_runtime,
           pause = EXCLUDED.pause, search_path = EXCLUDED.search_path,
           set_by = current_user::regrole, set_at = now();
    RETURN format('%s: rows whose %I is older than %s are archived by each run of the archive task',
                  source::text, time_column, older_than);
END
$$;

-- Runs the caller's archive policies (one source's with source => ...), each as CALL
-- dbopt.archive would, committing batch by batch.
CREATE PROCEDURE @extschema@.run_archive_policies(source regclass DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    policy record;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- Policies of tables dropped since: nothing left to archive.
    DELETE FROM @extschema@.archive_policies p
     WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = p.source);
    FOR policy IN SELECT p.* FROM @extschema@.archive_policies p
                   WHERE run_archive_policies.source IS NULL
                      OR p.source = run_archive_policies.source
                   ORDER BY p.source::text LOOP
        CALL @extschema@.archive_run('archive', policy.search_path, policy.source,
                                     policy.archive_table, policy.filter, policy.batch_size,
                                     policy.time_column, policy.older_than, policy.max_runtime,
                                     policy.pause);
        -- archive_run committed, so the pinned search_path is gone; nothing below resolves a
        -- name (the loop's query is already open, and the CALL is schema-qualified).
    END LOOP;
END
$$;
