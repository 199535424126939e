-- Scheduled upkeep (issue 8): one row per job dbopt.schedule() created. pg_cron runs it when
-- installed in this database (cron_job_id); otherwise dbopt's background worker will.
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

-- Runs of the caller's jobs: pg_cron's record of each (cron.job_run_details) when pg_cron ran
-- them. Read at call time, so dbopt installs without pg_cron.
CREATE FUNCTION @extschema@.job_run_history()
RETURNS TABLE (job_id bigint, task text, runner text, run_id bigint, started_at timestamptz,
               ended_at timestamptz, outcome text, message text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RETURN QUERY
            SELECT j.job_id, j.task, j.runner, d.runid, d.start_time, d.end_time,
                   CASE d.status WHEN 'succeeded' THEN 'ok' ELSE d.status END, d.return_message
              FROM @extschema@.jobs j
              JOIN cron.job_run_details d ON d.jobid = j.cron_job_id
             ORDER BY d.start_time DESC NULLS FIRST;
    END IF;
END
$$;

CREATE VIEW @extschema@.job_runs AS SELECT * FROM @extschema@.job_run_history();
COMMENT ON VIEW @extschema@.job_runs IS
    'Each run of the caller''s dbopt jobs: start, end, outcome (ok, failed, running) and message';
GRANT SELECT ON @extschema@.job_runs TO PUBLIC;
