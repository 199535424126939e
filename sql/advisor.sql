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
