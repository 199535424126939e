-- Partition management: configuration, log, the maintenance procedure and the health view.
-- The Rust functions beside src/partitions/ do one parent's work in one transaction; the
-- procedure here commits between parents, which Rust cannot.

-- One row per partition set. Rows are visible and writable only to members of the parent's
-- owning role (superusers see all), so registering a table is no more than its owner could do.
CREATE TABLE @extschema@.partition_config (
    parent regclass PRIMARY KEY,
    control name NOT NULL,
    partition_interval text NOT NULL,
    premake integer NOT NULL CHECK (premake >= 1),
    with_default boolean NOT NULL,
    future_limit integer NOT NULL CHECK (future_limit >= premake),
    max_per_run integer NOT NULL CHECK (max_per_run >= 1),
    retention_keep text,
    retention_action text CHECK (retention_action IN ('drop', 'detach', 'archive')),
    retention_schema name,
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by name NOT NULL DEFAULT current_user,
    -- When maintenance next has work, recorded by each full check (see maintenance_due):
    -- '-infinity' when it has work now, 'infinity' when only rows or changes can make work.
    checked_at timestamptz,
    checked_zone text,
    due_at timestamptz,
    watch regclass[],
    fingerprint bigint
);
COMMENT ON TABLE @extschema@.partition_config IS
    'Partition sets dbopt maintains: written by dbopt.create_partitions and dbopt.set_retention';
ALTER TABLE @extschema@.partition_config ENABLE ROW LEVEL SECURITY;
CREATE POLICY owners_only ON @extschema@.partition_config
    USING (pg_catalog.pg_has_role(
        (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = parent), 'USAGE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.partition_config TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.partition_config', '');

-- A change to a set's settings makes its next maintenance a full check.
CREATE FUNCTION @extschema@.partition_config_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.due_at := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER settings_changed BEFORE UPDATE ON @extschema@.partition_config
    FOR EACH ROW WHEN (
        (OLD.control, OLD.partition_interval, OLD.premake, OLD.with_default, OLD.future_limit,
         OLD.max_per_run, OLD.retention_keep, OLD.retention_action, OLD.retention_schema)
        IS DISTINCT FROM
        (NEW.control, NEW.partition_interval, NEW.premake, NEW.with_default, NEW.future_limit,
         NEW.max_per_run, NEW.retention_keep, NEW.retention_action, NEW.retention_schema))
    EXECUTE FUNCTION @extschema@.partition_config_changed();

-- Changes when a partition is attached, detached, dropped or replaced.
CREATE FUNCTION @extschema@.partition_fingerprint(parent regclass) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*) * 4294967296 + coalesce(sum(i.inhrelid::int8), 0)
      FROM pg_catalog.pg_inherits i WHERE i.inhparent = parent
$$;

-- Whether each registered parent has maintenance to do, and why, judged from what its last
-- full check recorded: the clock reaching due_at, partitions changed by hand, a changed
-- dbopt.partition_timezone, or a row in a watched partition (the default partition, and for
-- integer controls the partitions the runway waits for). Takes no lock it has to wait for.
CREATE FUNCTION @extschema@.maintenance_due(parent regclass DEFAULT NULL)
RETURNS TABLE (parent regclass, due boolean, reason text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.parent, r.reason IS NOT NULL,
           coalesce(r.reason, CASE WHEN c.due_at = 'infinity' THEN 'nothing to do until rows arrive'
                                   ELSE format('nothing to do before %s', c.due_at) END)
      FROM @extschema@.partition_config c
     CROSS JOIN LATERAL (
            SELECT string_agg(w::text, ', ') AS holding
              FROM unnest(c.watch) w WHERE @extschema@.may_have_rows(w::oid)) b
     CROSS JOIN LATERAL (SELECT CASE
            WHEN c.due_at IS NULL THEN 'not checked since it was registered or reconfigured'
            WHEN c.due_at <= now() THEN 'runway or retention due'
            WHEN c.checked_zone IS DISTINCT FROM current_setting('dbopt.partition_timezone')
                THEN 'dbopt.partition_timezone changed'
            WHEN c.fingerprint IS DISTINCT FROM @extschema@.partition_fingerprint(c.parent)
                THEN 'partitions changed since the last check'
            WHEN b.holding IS NOT NULL THEN 'rows to act on in ' || b.holding
            END AS reason) r
     WHERE maintenance_due.parent IS NULL OR c.parent = maintenance_due.parent
     ORDER BY c.parent::oid
$$;

-- Every action maintenance takes or declines, one row each.
CREATE TABLE @extschema@.partition_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    parent regclass,
    parent_name text NOT NULL,
    action text NOT NULL,
    object text,
    statement text,
    duration_ms double precision,
    lock_wait_ms double precision,
    outcome text NOT NULL CHECK (outcome IN ('ok', 'reported', 'lock_timeout', 'error', 'skipped')),
    sqlstate text,
    detail text
);
CREATE INDEX partition_log_parent_at ON @extschema@.partition_log (parent, at);
COMMENT ON TABLE @extschema@.partition_log IS
    'What dbopt partition maintenance did: action, object, duration, lock wait, outcome, SQLSTATE';
ALTER TABLE @extschema@.partition_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY owners_only ON @extschema@.partition_log
    USING (pg_catalog.pg_has_role(
        (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = parent), 'USAGE'));
GRANT SELECT, INSERT ON @extschema@.partition_log TO PUBLIC;

-- Keeps partition_config free of dropped tables, so an OID PostgreSQL reuses later can never
-- inherit another table's retention. Runs as whoever drops the table.
CREATE FUNCTION @extschema@.forget_dropped_parents() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM @extschema@.partition_config c
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0
       AND c.parent::oid = d.objid;
END
$$;
-- The policy hides a dropped parent's row (its owner is gone), so deleting it needs the row
-- visible to the dropper: rows of tables that no longer exist are visible to all.
CREATE POLICY dropped_parents ON @extschema@.partition_config FOR DELETE
    USING (NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = parent));
CREATE EVENT TRIGGER dbopt_forget_dropped_parents ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION @extschema@.forget_dropped_parents();

-- Maintains every registered parent (or the one given), each in its own transaction committed
-- before the next. A parent whose locks cannot be had within dbopt.lock_timeout is retried
-- with backoff, then logged with the sessions holding them and skipped: one blocked table
-- never stalls the run or queues writers behind it.
-- PostgreSQL forbids SET clauses on procedures that COMMIT, so the procedure pins search_path
-- itself at the start of each of its transactions.
-- The lock_retries argument of the procedures that retry a lock: 0 or more.
CREATE FUNCTION @extschema@.require_lock_retries(lock_retries integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF lock_retries IS NULL OR lock_retries < 0 THEN
        RAISE EXCEPTION 'lock_retries must be 0 or more, not %', lock_retries
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE PROCEDURE @extschema@.run_maintenance(
    parent regclass DEFAULT NULL,
    lock_retries integer DEFAULT 3
)
LANGUAGE plpgsql AS $$
DECLARE
    target regclass;
    is_due boolean;
    idle regclass[] := '{}';
    attempt integer;
    started timestamptz;
    waited double precision;
    holders text;
    state text;
    message text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    PERFORM @extschema@.require_lock_retries(lock_retries);
    IF parent IS NOT NULL AND NOT EXISTS (
        SELECT FROM @extschema@.partition_config c WHERE c.parent = run_maintenance.parent) THEN
        RAISE EXCEPTION 'table % is not managed by dbopt', parent
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Register it first with dbopt.create_partitions(parent, control, partition_interval).';
    END IF;
    -- Parents with nothing to do are passed over after a cheap probe (maintenance_due); one
    -- named in the call is always checked in full.
    FOR target, is_due IN
        SELECT d.parent, d.due FROM @extschema@.maintenance_due(run_maintenance.parent) d
    LOOP
        IF run_maintenance.parent IS NULL AND NOT is_due THEN
            idle := idle || target;
            CONTINUE;
        END IF;
        attempt := 0;
        waited := 0;
        LOOP
            started := clock_timestamp();
            BEGIN
                -- Two runs never work on one parent at once; the second skips it.
                IF NOT pg_try_advisory_xact_lock(hashtext('dbopt.run_maintenance'), target::oid::integer) THEN
                    INSERT INTO @extschema@.partition_log (parent, parent_name, action, outcome, detail)
                    VALUES (target, target::text, 'maintain', 'skipped', 'another run_maintenance is working on it');
                    EXIT;
                END IF;
                PERFORM @extschema@.maintain_partitions(target);
                EXIT;
            EXCEPTION
                WHEN lock_not_available THEN
                    waited := waited + extract(epoch FROM clock_timestamp() - started) * 1000;
                    attempt := attempt + 1;
                    IF attempt > lock_retries THEN
                        SELECT string_agg(DISTINCT format('pid %s (%s on %s)', l.pid, l.mode, l.relation::regclass), ', ')
                          INTO holders
                          FROM pg_locks l
                         WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation'
                           AND (l.relation IN (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = target)
                                OR (l.relation = target
                                    AND l.mode NOT IN ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock')));
                        INSERT INTO @extschema@.partition_log
                            (parent, parent_name, action, lock_wait_ms, outcome, sqlstate, detail)
                        VALUES (target, target::text, 'maintain', waited, 'lock_timeout', '55P03',
                                format('gave up after %s attempt(s); blocked by: %s', attempt,
                                       coalesce(holders, 'sessions that have since finished')));
                        EXIT;
                    END IF;
                    PERFORM pg_sleep(0.1 * 2 ^ (attempt - 1));
                WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
                    INSERT INTO @extschema@.partition_log
                        (parent, parent_name, action, duration_ms, outcome, sqlstate, detail)
                    VALUES (target, target::text, 'maintain',
                            extract(epoch FROM clock_timestamp() - started) * 1000, 'error', state, message);
                    EXIT;
            END;
        END LOOP;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END LOOP;
    UPDATE @extschema@.partition_config c SET checked_at = clock_timestamp()
     WHERE c.parent = ANY (idle);
END
$$;

-- A dry run of run_maintenance: each statement it would execute and the lock it takes.
CREATE FUNCTION @extschema@.maintenance_plan(parent regclass DEFAULT NULL)
RETURNS TABLE (parent regclass, step text, statement text, lock_mode text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.parent::regclass, s.step, s.statement, s.lock_mode
      FROM @extschema@.maintenance_steps(maintenance_plan.parent) s
$$;

-- One row per registered parent: partitions, bounds, runway, default rows, gaps, last run.
CREATE VIEW @extschema@.partition_health AS
SELECT h.parent::regclass AS parent,
       h.control,
       h.partition_interval,
       h.partitions,
       h.first_bound,
       h.last_bound,
       h.runway,
       h.default_rows,
       h.gaps,
       last.at AS last_maintenance,
       last.outcome AS last_outcome,
       last.detail AS last_detail,
       c.checked_at AS last_checked,
       c.due_at AS next_due
  FROM @extschema@.partition_health_report() h
  JOIN @extschema@.partition_config c ON c.parent = h.parent::regclass
  LEFT JOIN LATERAL (
        SELECT l.at, l.outcome, l.detail
          FROM @extschema@.partition_log l
         WHERE l.parent = h.parent::regclass AND l.action <> 'report'
         ORDER BY l.at DESC LIMIT 1) last ON true;
COMMENT ON VIEW @extschema@.partition_health IS
    'Registered partition sets: partition count, first and last bound, runway, rows in the default partition, gaps, last maintenance and check, when work is next due';

-- Online conversions under way (CALL dbopt.partition_table), one row each: enough to resume
-- after a crash or a cancelled call by calling it again.
CREATE TABLE @extschema@.partition_conversion (
    source regclass PRIMARY KEY,
    target regclass NOT NULL,
    changes text NOT NULL,
    capture text NOT NULL,
    control name NOT NULL,
    partition_interval text NOT NULL,
    key_columns text[] NOT NULL,
    last_key text[],
    rows_copied bigint NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE @extschema@.partition_conversion ENABLE ROW LEVEL SECURITY;
CREATE POLICY owners_only ON @extschema@.partition_conversion
    USING (pg_catalog.pg_has_role(
        (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = source), 'USAGE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.partition_conversion TO PUBLIC;

-- One lock-taking step of a conversion ('start' or 'swap'), retried with backoff when its locks
-- cannot be had within dbopt.lock_timeout. Returns the step's notes for the caller.
CREATE FUNCTION @extschema@.conversion_step(
    source regclass, step text, control text, partition_interval text,
    premake integer, lock_retries integer
) RETURNS text[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    attempt integer := 0;
BEGIN
    LOOP
        BEGIN
            IF step = 'start' THEN
                RETURN @extschema@.conversion_start(source, control, partition_interval, premake);
            END IF;
            RETURN @extschema@.conversion_swap(source);
        EXCEPTION WHEN lock_not_available THEN
            attempt := attempt + 1;
            IF attempt > lock_retries THEN RAISE; END IF;
            PERFORM pg_sleep(0.1 * 2 ^ (attempt - 1));
        END;
    END LOOP;
END
$$;

-- Converts a populated plain table into a range-partitioned table of the same name while
-- writers keep working: copy in committed batches, replay the rows written meanwhile, then a
-- swap that waits for the table's lock at most dbopt.lock_timeout per attempt.
CREATE PROCEDURE @extschema@.partition_table(
    source regclass,
    control text,
    partition_interval text,
    batch_size integer DEFAULT 10000,
    premake integer DEFAULT 4,
    lock_retries integer DEFAULT 5
)
LANGUAGE plpgsql AS $$
DECLARE
    done bigint;
    previous bigint;
    new_table regclass;
    note text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@.require_lock_retries(lock_retries);
    FOREACH note IN ARRAY @extschema@.conversion_step(source, 'start', control, partition_interval,
                                                      premake, lock_retries) LOOP
        RAISE NOTICE '%', note;
    END LOOP;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    LOOP
        done := @extschema@.conversion_copy(source, batch_size);
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXIT WHEN done = 0;
    END LOOP;
    -- Statistics for the new table before it goes live, and for the replays' plans: without
    -- them a replay of a few keys hashes every partition, under the swap's lock.
    SELECT c.target INTO new_table FROM @extschema@.partition_conversion c
     WHERE c.source = partition_table.source;
    EXECUTE format('ANALYZE %s', new_table);
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- Catch up with writes made during the copy until few are left or they stop shrinking, so
    -- the swap has little to replay under its lock.
    LOOP
        done := @extschema@.conversion_replay(source, batch_size);
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXIT WHEN done <= 10 OR (done < batch_size AND done >= previous);
        previous := done;
    END LOOP;
    FOREACH note IN ARRAY @extschema@.conversion_step(source, 'swap', control, partition_interval,
                                                      premake, lock_retries) LOOP
        RAISE NOTICE '%', note;
    END LOOP;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
END
$$;
