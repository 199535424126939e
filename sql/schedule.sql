-- Scheduled upkeep (issue 8): one row per job dbopt.schedule() created. pg_cron runs it
-- (cron_job_id) or dbopt's background worker does (runner = 'worker'), as dbopt.job_runner chose.
CREATE TABLE @extschema@.jobs (
    job_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task text NOT NULL,
    cron text NOT NULL,
    args jsonb NOT NULL DEFAULT '{}',
    -- The one statement a run executes, as the owner.
    command text NOT NULL,
    owner regrole NOT NULL DEFAULT current_user::regrole,
    runner text NOT NULL CHECK (runner IN ('pg_cron', 'worker')),
    cron_job_id bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.jobs IS
    'Recurring dbopt tasks created by dbopt.schedule(), each run as the role that scheduled it';
-- Jobs run as their owner, so a role sees and changes only its own.
ALTER TABLE @extschema@.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY owners_only ON @extschema@.jobs USING (pg_catalog.pg_has_role(owner, 'USAGE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.jobs TO PUBLIC;

-- Runs by dbopt's background worker: of jobs (job_id) and of dbopt.apply_index builds
-- (index_build). The scheduler records each run before starting its process; the process,
-- connected as the owner, records the outcome.
CREATE TABLE @extschema@.job_log (
    run_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint,
    index_build bigint,
    task text NOT NULL,
    owner regrole NOT NULL,
    -- The statement the run executed, as it was then.
    command text NOT NULL,
    pid integer,
    started_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    ended_at timestamptz,
    outcome text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'failed')),
    sqlstate text,
    message text
);
CREATE INDEX job_log_running ON @extschema@.job_log (job_id) WHERE outcome = 'running';
CREATE INDEX job_log_ended_at ON @extschema@.job_log (ended_at);
COMMENT ON TABLE @extschema@.job_log IS
    'Runs by dbopt''s background worker, each with its outcome; kept dbopt.job_log_retention';
ALTER TABLE @extschema@.job_log ENABLE ROW LEVEL SECURITY;
-- A run's process, connected as the owner, records its own outcome and nobody else's.
CREATE POLICY owners_only ON @extschema@.job_log USING (pg_catalog.pg_has_role(owner, 'USAGE'));
GRANT SELECT, UPDATE ON @extschema@.job_log TO PUBLIC;

-- Runs of the caller's jobs: pg_cron's record of each (cron.job_run_details) when pg_cron ran
-- them, dbopt.job_log when the worker did. Read at call time, so dbopt installs without pg_cron.
CREATE FUNCTION @extschema@.job_run_history()
RETURNS TABLE (job_id bigint, task text, runner text, run_id bigint, started_at timestamptz,
               ended_at timestamptz, outcome text, message text, sqlstate text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
        SELECT l.job_id, l.task, 'worker'::text, l.run_id, l.started_at, l.ended_at, l.outcome,
               l.message, l.sqlstate
          FROM @extschema@.job_log l;
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RETURN QUERY
            SELECT j.job_id, j.task, j.runner, d.runid, d.start_time, d.end_time,
                   CASE d.status WHEN 'succeeded' THEN 'ok' ELSE d.status END, d.return_message,
                   NULL::text
              FROM @extschema@.jobs j
              JOIN cron.job_run_details d ON d.jobid = j.cron_job_id;
    END IF;
END
$$;

CREATE VIEW @extschema@.job_runs AS
    SELECT * FROM @extschema@.job_run_history() ORDER BY started_at DESC NULLS FIRST;
COMMENT ON VIEW @extschema@.job_runs IS
    'Each run of the caller''s dbopt jobs: start, end, outcome (ok, failed, running) and message';
GRANT SELECT ON @extschema@.job_runs TO PUBLIC;
