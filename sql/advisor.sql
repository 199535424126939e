-- Index advisor: the SQL surface over src/advisor.

-- One set of indexes for the whole workload pg_stat_statements recorded in this database.
-- benefit is calls x planner cost saved; write_penalty the upkeep cost in the same units;
-- queries lists, per statement helped, its queryid, calls and generic-plan cost before/after.
CREATE FUNCTION @extschema@.recommend_indexes(
    min_calls bigint DEFAULT 10,
    max_indexes integer DEFAULT 10,
    max_total_bytes bigint DEFAULT NULL)
RETURNS TABLE (table_name regclass, index_definition text, columns text[],
               estimated_bytes bigint, benefit float8, write_penalty float8, queries jsonb)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.table_oid::regclass, r.index_definition, r.columns, r.estimated_bytes,
           r.benefit, r.write_penalty, r.queries
      FROM @extschema@.index_recommendations(min_calls, max_indexes, max_total_bytes) r
$$;

-- Statement shapes no index fixes: OFFSET pagination, count(*) over tables of at least
-- large_table_rows rows, SELECT * on tables of at least wide_table_columns columns (or 1 kB
-- rows). Each row says what was found, how costly it is, and what to do instead.
CREATE FUNCTION @extschema@.query_lints(
    min_calls bigint DEFAULT 10,
    large_table_rows bigint DEFAULT 1000000,
    wide_table_columns integer DEFAULT 15)
RETURNS TABLE (queryid bigint, calls bigint, lint text, severity text, table_name regclass,
               detail text, suggestion text, query text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT l.queryid, l.calls, l.lint, l.severity, l.table_oid::regclass, l.detail,
           l.suggestion, l.query
      FROM @extschema@.query_lint_rows(min_calls, large_table_rows, wide_table_columns) l
     ORDER BY l.severity = 'warning' DESC, l.calls DESC, l.queryid, l.lint
$$;

-- Index builds handed to pg_cron or to dbopt's background worker by dbopt.apply_index: CREATE
-- INDEX CONCURRENTLY must run at top level, which no function can. One row per build; its state
-- is kept by finish_index_builds (pg_cron) or by the worker's run (see job_log).
CREATE TABLE @extschema@.index_builds (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_oid oid NOT NULL,
    table_name text NOT NULL,
    index_schema text NOT NULL,
    index_name text NOT NULL,
    definition text NOT NULL,
    -- What the job runs: the definition with IF NOT EXISTS, so a repeated run does nothing.
    command text NOT NULL,
    runner text NOT NULL DEFAULT 'pg_cron' CHECK (runner IN ('pg_cron', 'worker')),
    cron_job bigint,
    requested_by name NOT NULL DEFAULT current_user,
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    -- queued -> scheduled (its job exists) -> running -> built or failed
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'scheduled', 'running', 'built', 'failed')),
    started_at timestamptz,
    finished_at timestamptz,
    message text,
    -- After a failed build: 'pending' while its invalid index awaits dropping, then 'dropped'.
    leftover text CHECK (leftover IN ('pending', 'dropped'))
);
COMMENT ON TABLE @extschema@.index_builds IS
    'CREATE INDEX CONCURRENTLY statements run for dbopt.apply_index, and their outcome';
ALTER TABLE @extschema@.index_builds ENABLE ROW LEVEL SECURITY;
-- A build is seen and changed only by its requester, whose role its jobs run as.
CREATE POLICY requesters_only ON @extschema@.index_builds
    USING (requested_by = current_user) WITH CHECK (requested_by = current_user);
GRANT SELECT, INSERT, UPDATE ON @extschema@.index_builds TO PUBLIC;

-- Schedules the caller's oldest queued pg_cron build when none of theirs is scheduled or running:
-- two concurrent builds on one table wait for each other's snapshots and can deadlock. (The
-- worker claims its builds under the same rule.)
CREATE FUNCTION @extschema@.start_next_index_build() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    next record;
BEGIN
    IF EXISTS (SELECT FROM @extschema@.index_builds
                WHERE requested_by = current_user AND state IN ('scheduled', 'running')) THEN
        RETURN;
    END IF;
    SELECT id, command INTO next FROM @extschema@.index_builds
     WHERE requested_by = current_user AND state = 'queued' AND runner = 'pg_cron'
     ORDER BY id LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- Every minute until finish_index_builds sees the first run end and removes it. pg_cron's
    -- functions live in schema cron whatever schema its extension was created in.
    UPDATE @extschema@.index_builds
       SET state = 'scheduled',
           cron_job = cron.schedule('dbopt_index_build_' || next.id, '* * * * *', next.command)
     WHERE id = next.id;
END
$$;

-- Queues index_definition (a CREATE INDEX CONCURRENTLY on a table the caller owns) to be run as
-- the caller by a pg_cron job (with the job that records outcomes) or by dbopt's background
-- worker, as dbopt.job_runner chooses. Returns the build's id in dbopt.index_builds. With
-- neither: run the statement yourself, outside a transaction.
CREATE FUNCTION @extschema@.apply_index(index_definition text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    plan record;
    build bigint;
BEGIN
    SELECT * INTO STRICT plan FROM @extschema@.index_build_plan(index_definition);
    INSERT INTO @extschema@.index_builds
           (table_oid, table_name, index_schema, index_name, definition, command, runner)
    VALUES (plan.table_oid, plan.table_oid::regclass::text, plan.index_schema, plan.index_name,
            index_definition, plan.command, plan.runner)
    RETURNING id INTO build;
    IF plan.runner = 'pg_cron' THEN
        PERFORM @extschema@.start_next_index_build();
        -- One finishing job per role (pg_cron names jobs per user); scheduling it again is a
        -- no-op.
        PERFORM cron.schedule('dbopt_index_builds', '* * * * *',
                              format('CALL %I.finish_index_builds()', '@extschema@'));
    END IF;
    RETURN build;
END
$$;

-- Records how build ended: built when its run succeeded and left a valid index; failed
-- otherwise, with an invalid index of its own left behind marked 'pending' for dropping.
CREATE FUNCTION @extschema@.record_index_build_outcome(
    build bigint, succeeded boolean, message text, started timestamptz, ended timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b record;
    valid boolean;
BEGIN
    SELECT * INTO b FROM @extschema@.index_builds WHERE id = build FOR UPDATE;
    SELECT i.indisvalid INTO valid
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = b.index_schema AND c.relname = b.index_name;
    UPDATE @extschema@.index_builds
       SET state = CASE WHEN succeeded AND valid THEN 'built' ELSE 'failed' END,
           started_at = started, finished_at = ended,
           message = CASE WHEN NOT succeeded OR valid THEN record_index_build_outcome.message
                          WHEN valid IS NULL
                          THEN 'the build succeeded but no index of that name exists now'
                          ELSE 'an invalid index of that name was there already: the build '
                               'did nothing' END,
           leftover = CASE WHEN valid IS FALSE THEN 'pending' END
     WHERE id = build;
END
$$;

-- Drops the invalid index a failed build left ('pending'), waiting at most dbopt.lock_timeout;
-- a busy table leaves it pending for the next try.
CREATE FUNCTION @extschema@.drop_index_build_leftover(build bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b record;
BEGIN
    SELECT * INTO b FROM @extschema@.index_builds WHERE id = build AND leftover = 'pending';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM @extschema@.drop_invalid_index(b.table_oid, b.index_name);
        UPDATE @extschema@.index_builds SET leftover = 'dropped' WHERE id = build;
    EXCEPTION WHEN lock_not_available THEN
        NULL;
    END;
END
$$;

-- Run by pg_cron every minute while the caller has builds under way: records each build's
-- outcome from its job's first run, removes the job, drops the invalid index a failed build
-- leaves (waiting at most dbopt.lock_timeout; retried next minute), starts the next queued
-- build, and removes itself when nothing is left to watch.
CREATE PROCEDURE @extschema@.finish_index_builds()
LANGUAGE plpgsql AS $$
DECLARE
    b record;
    run record;
BEGIN
    -- Pinned in the body, as in every dbopt procedure (a SET clause would forbid COMMIT).
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    FOR b IN SELECT * FROM @extschema@.index_builds
              WHERE requested_by = current_user AND runner = 'pg_cron'
                AND (state IN ('scheduled', 'running') OR leftover = 'pending')
              ORDER BY id LOOP
        IF b.state IN ('scheduled', 'running') THEN
            SELECT d.status, d.return_message, d.start_time, d.end_time INTO run
              FROM cron.job_run_details d WHERE d.jobid = b.cron_job
             ORDER BY d.runid LIMIT 1;
            CONTINUE WHEN run.status IS NULL;
            IF run.status NOT IN ('succeeded', 'failed') THEN
                UPDATE @extschema@.index_builds SET state = 'running', started_at = run.start_time
                 WHERE id = b.id;
                CONTINUE;
            END IF;
            PERFORM cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobid = b.cron_job;
            PERFORM @extschema@.record_index_build_outcome(
                b.id, run.status = 'succeeded', run.return_message, run.start_time, run.end_time);
        END IF;
        PERFORM @extschema@.drop_index_build_leftover(b.id);
    END LOOP;
    PERFORM @extschema@.start_next_index_build();
    IF NOT EXISTS (SELECT FROM @extschema@.index_builds
                    WHERE requested_by = current_user AND runner = 'pg_cron'
                      AND (state IN ('queued', 'scheduled', 'running')
                           OR leftover = 'pending')) THEN
        PERFORM cron.unschedule(j.jobid) FROM cron.job j
          WHERE j.jobname = 'dbopt_index_builds' AND j.username = current_user;
    END IF;
END
$$;
