-- Runs first inside CREATE EXTENSION dbopt.
--
-- Every dbopt function is SECURITY INVOKER: calling one grants nothing the caller lacks, so the
-- schema is usable by everyone and each function's work is checked against the caller's own
-- privileges on the objects it touches.
COMMENT ON SCHEMA @extschema@ IS 'dbopt: partitions, archiving, index advice, rolling aggregates and health checks';
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;
