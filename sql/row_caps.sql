-- Per-key row caps (issue 7; seed 001 B3: the 50 most recently viewed products per user).
-- dbopt.cap_rows installs a statement-level AFTER INSERT trigger running this function with the
-- key column, order column and cap as arguments.
--
-- Correct under concurrent inserts for the same key: the keys the statement wrote are locked
-- first (a transaction-scoped advisory lock per (table, key), taken in one global order, so two
-- multi-row inserts never wait on each other crosswise), and the DELETE runs afterwards as a
-- statement of its own, with a fresh snapshot (READ COMMITTED): it sees every earlier trimmer's
-- rows and deletions. The last transaction to trim a key sees all its committed rows, so the
-- key ends with exactly `keep`, the newest ones. Under REPEATABLE READ the snapshot is older
-- than the locks, and a concurrent trim of the same key can fail with 40001 (retry it).
-- Two statements per INSERT whatever the number of keys, with keys compared in their own type.
CREATE FUNCTION @extschema@.cap_rows_trigger()
RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key_column text := TG_ARGV[0];
    order_column text := TG_ARGV[1];
    keep int := TG_ARGV[2]::int;
BEGIN
    -- The subquery's ORDER BY keeps it from being flattened: locks are taken in hash order.
    EXECUTE format(
        'SELECT count(pg_catalog.pg_advisory_xact_lock(h))
           FROM (SELECT DISTINCT pg_catalog.hashtextextended($1 || n.%1$I::text, 0) AS h
                   FROM dbopt_new_rows n WHERE n.%1$I IS NOT NULL ORDER BY h) keys',
        key_column)
        USING TG_RELID::text || ':';
    EXECUTE format(
        'WITH keys AS (SELECT DISTINCT n.%3$I AS k FROM dbopt_new_rows n
                        WHERE n.%3$I IS NOT NULL),
              beyond AS (SELECT keys.k, s.rel, s.tid
                           FROM keys CROSS JOIN LATERAL (
                                SELECT s.tableoid AS rel, s.ctid AS tid FROM %1$I.%2$I s
                                 WHERE s.%3$I = keys.k
                                 ORDER BY s.%4$I DESC NULLS LAST OFFSET $1) s)
         DELETE FROM %1$I.%2$I t USING beyond b
          WHERE t.%3$I = b.k AND t.tableoid = b.rel AND t.ctid = b.tid',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, key_column, order_column)
        USING keep;
    RETURN NULL;
END
$$;

-- The caps in force: one row per capped table, read from its trigger's arguments.
CREATE VIEW @extschema@.row_caps AS
SELECT t.tgrelid::regclass AS target, a.args[1] AS key_column, a.args[2] AS order_column,
       a.args[3]::int AS keep
  FROM pg_catalog.pg_trigger t
 CROSS JOIN LATERAL (SELECT pg_catalog.string_to_array(
                                pg_catalog.encode(t.tgargs, 'escape'), '\000') AS args) a
 WHERE t.tgname = 'dbopt_cap_rows'
   AND t.tgfoid = '@extschema@.cap_rows_trigger()'::regprocedure
   AND NOT t.tgisinternal;
COMMENT ON VIEW @extschema@.row_caps IS
    'Tables capped by dbopt.cap_rows: the key column, the order column and how many rows per key are kept';
GRANT SELECT ON @extschema@.row_caps TO PUBLIC;
