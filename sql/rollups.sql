-- Rolling aggregates: their definitions, read by the triggers on every write to a source, and
-- the SQL surface. The work is done by the functions in src/rollups/; refresh_rolling is a
-- procedure so that it can commit after each aggregate, which Rust cannot.

CREATE TABLE @extschema@.rolling_aggregates (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate regclass NOT NULL UNIQUE,
    source regclass NOT NULL,
    -- Partial sums per group and time bucket, what the triggers append to them, and the number
    -- of the last refresh (see src/rollups/spec.rs).
    buckets regclass NOT NULL,
    log regclass NOT NULL,
    epoch regclass NOT NULL,
    maintain regprocedure,
    group_by name[] NOT NULL,
    time_column name NOT NULL,
    measures text NOT NULL,
    measure_names name[] NOT NULL,
    -- The column counting each group's rows: a count(*) measure, or dbopt_rows.
    rows_column name NOT NULL,
    filter text,
    window_size interval NOT NULL,
    bucket_size interval NOT NULL,
    -- How far past its last refresh the table counts rows: new rows show at once as long as
    -- refresh_rolling runs at least this often.
    lookahead interval NOT NULL,
    -- The creator's search_path and TimeZone: the measures and filter are evaluated in them.
    search_path text NOT NULL,
    time_zone text NOT NULL,
    -- The aggregate table holds the rows with window_start <= time <= window_end:
    -- [refreshed_at - window_size, refreshed_at + lookahead], computed in time_zone.
    refreshed_at timestamptz NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    refresh_epoch bigint NOT NULL,
    last_refresh_ms double precision,
    last_refresh_groups bigint,
    created timestamptz NOT NULL DEFAULT now(),
    created_by name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE @extschema@.rolling_aggregates IS
    'Rolling aggregates made by dbopt.create_rolling_aggregate and the window each holds';
ALTER TABLE @extschema@.rolling_aggregates ENABLE ROW LEVEL SECURITY;
-- Every writer to a source reads its aggregates' windows; only the aggregate table's owners
-- change a definition.
CREATE POLICY readable ON @extschema@.rolling_aggregates FOR SELECT USING (true);
CREATE POLICY owners ON @extschema@.rolling_aggregates
    USING (pg_catalog.pg_has_role(
               (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = aggregate), 'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role(
               (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = aggregate), 'USAGE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.rolling_aggregates TO PUBLIC;

-- The INSERT trigger's gate (src/rollups/insert_gate.rs) runs no SQL, but is pinned all the same.
ALTER FUNCTION @extschema@.rolling_insert_gate() SET search_path = pg_catalog, pg_temp;

-- The public functions pin their own search_path like every dbopt function, so the caller's
-- comes in as a parameter whose default is evaluated by the calling query, in the caller's
-- settings: names are resolved, and measures and filters read, where the caller wrote them.
CREATE FUNCTION @extschema@.create_rolling_aggregate(
    name text,
    source regclass,
    group_by text,
    time_column text,
    measures text,
    window_size interval DEFAULT '30 days',
    filter text DEFAULT NULL,
    bucket_size interval DEFAULT NULL,
    lookahead interval DEFAULT NULL,
    search_path text DEFAULT pg_catalog.current_setting('search_path'),
    time_zone text DEFAULT pg_catalog.current_setting('TimeZone')
) RETURNS regclass
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@.rolling_create($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
$$;

-- The relation a caller's name means in the caller's search_path.
CREATE FUNCTION @extschema@.rolling_resolve(name text, callers_path text) RETURNS regclass
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', callers_path, true);
    RETURN name::pg_catalog.regclass;
END
$$;

-- Exact answers and verification are read-only queries that Rust plans (src/rollups/), each
-- row one JSON object, and this runs, in the aggregate creator's search_path and TimeZone. The
-- SET clauses make the set_config calls last only until the function returns.
CREATE FUNCTION @extschema@.rolling_run_of(aggregate regclass, purpose text) RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' AS $$
DECLARE
    plan record;
BEGIN
    SELECT * INTO plan FROM @extschema@.rolling_query(aggregate, purpose);
    PERFORM pg_catalog.set_config('search_path', plan.search_path, true);
    PERFORM pg_catalog.set_config('TimeZone', plan.time_zone, true);
    RETURN QUERY EXECUTE plan.query USING plan.params;
END
$$;

-- The aggregate as of now(): the table's rows with what aged out since the last refresh
-- taken off and what came due added, each group as one JSON object.
CREATE FUNCTION @extschema@.rolling_exact(
    name text, search_path text DEFAULT pg_catalog.current_setting('search_path')
) RETURNS SETOF jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@.rolling_run_of(@extschema@.rolling_resolve($1, $2), 'exact')
$$;

-- The groups where the table (bucket NULL) or a bucket of partial sums differs from the
-- source recomputed: no rows when the aggregate is exact.
CREATE FUNCTION @extschema@.verify_rolling(
    name text, search_path text DEFAULT pg_catalog.current_setting('search_path')
) RETURNS TABLE (bucket timestamptz, group_key jsonb, stored jsonb, recomputed jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    -- stored or recomputed is absent (JSON null) where a group exists on one side only.
    SELECT (d->>'bucket')::timestamptz, d->'group_key',
           NULLIF(d->'stored', 'null'), NULLIF(d->'recomputed', 'null')
      FROM @extschema@.rolling_run_of(@extschema@.rolling_resolve($1, $2), 'verify') d
$$;

CREATE FUNCTION @extschema@.rebuild_rolling(
    name text, search_path text DEFAULT pg_catalog.current_setting('search_path')
) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@.rolling_rebuild_of(@extschema@.rolling_resolve($1, $2))
$$;

CREATE FUNCTION @extschema@.drop_rolling_aggregate(
    name text, search_path text DEFAULT pg_catalog.current_setting('search_path')
) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@.rolling_drop_of(@extschema@.rolling_resolve($1, $2))
$$;

-- Brings one aggregate, or every one the caller owns, to now (or as_of): each in its own
-- transaction, so a source locked by a long transaction delays only its own aggregates.
CREATE PROCEDURE @extschema@.refresh_rolling(name text DEFAULT NULL, as_of timestamptz DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    callers_path text := pg_catalog.current_setting('search_path');
    wanted regclass;
    aggregate regclass;
    summary text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF name IS NOT NULL THEN
        wanted := @extschema@.rolling_resolve(name, callers_path);
    END IF;
    FOR aggregate IN
        SELECT r.aggregate FROM @extschema@.rolling_aggregates r
         WHERE (wanted IS NULL
                AND pg_catalog.pg_has_role(
                        (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = r.aggregate),
                        'USAGE'))
            OR r.aggregate = wanted
         ORDER BY r.id
    LOOP
        summary := @extschema@.rolling_refresh_of(aggregate, as_of);
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        RAISE NOTICE 'dbopt.refresh_rolling: %', summary;
    END LOOP;
    -- Not a rolling aggregate: the same call outside the loop says so.
    IF wanted IS NOT NULL AND summary IS NULL THEN
        PERFORM @extschema@.rolling_refresh_of(wanted, as_of);
    END IF;
END
$$;
