-- Runs first inside CREATE EXTENSION dbopt.
--
-- Every dbopt function is SECURITY INVOKER: calling one grants nothing the caller lacks, so the
-- schema is usable by everyone and each function's work is checked against the caller's own
-- privileges on the objects it touches.
COMMENT ON SCHEMA @extschema@ IS 'dbopt: partitions, archiving, index advice, rolling aggregates and health checks';
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

-- Row-level security of dbopt's registrations (a managed view, an archive policy): a row is
-- the business of whoever owns its relation, and of the role that registered it once the
-- relation is gone (so it can still be cleaned up).
CREATE FUNCTION @extschema@.may_manage(rel regclass, registered_by regrole) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(pg_catalog.pg_has_role(
               (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = rel), 'USAGE'),
           pg_catalog.pg_has_role(registered_by, 'USAGE'))
$$;
