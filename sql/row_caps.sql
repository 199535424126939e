-- Per-key row caps (issue 7; seed 001 B3: the 50 most recently viewed products per user).
-- dbopt.cap_rows installs a statement-level AFTER INSERT trigger running this function with the
-- key column, order column and cap as arguments.
--
-- Correct under concurrent inserts for the same key: each key's rows are trimmed under a
-- transaction-scoped advisory lock for (table, key), taken in one global order, and the DELETE
-- runs after the lock with a fresh snapshot (READ COMMITTED), so it sees every earlier
-- trimmer's rows and deletions. The last transaction to trim a key sees all its committed rows:
-- the key ends with exactly `keep`, the newest ones. Under REPEATABLE READ the snapshot is older
-- than the lock, and a concurrent trim of the same key can fail with 40001 (retry it).
CREATE FUNCTION @extschema@.cap_rows_trigger()
RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key_column text := TG_ARGV[0];
    order_column text := TG_ARGV[1];
    keep int := TG_ARGV[2]::int;
    key_type text;
    key_value text;
BEGIN
    SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) INTO key_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attname = key_column AND NOT a.attisdropped;
    FOR key_value IN EXECUTE format(
        'SELECT k FROM (SELECT DISTINCT n.%1$I::text AS k FROM dbopt_new_rows n
                         WHERE n.%1$I IS NOT NULL) keys
          ORDER BY pg_catalog.hashtextextended($1 || k, 0), k', key_column)
        USING TG_RELID::text || ':'
    LOOP
        PERFORM pg_catalog.pg_advisory_xact_lock(
            pg_catalog.hashtextextended(TG_RELID::text || ':' || key_value, 0));
        EXECUTE format(
            'DELETE FROM %1$I.%2$I t
              WHERE t.%3$I = $1::%4$s
                AND (t.tableoid, t.ctid) IN (
                    SELECT s.tableoid, s.ctid FROM %1$I.%2$I s
                     WHERE s.%3$I = $1::%4$s
                     ORDER BY s.%5$I DESC NULLS LAST OFFSET $2)',
            TG_TABLE_SCHEMA, TG_TABLE_NAME, key_column, key_type, order_column)
        USING key_value, keep;
    END LOOP;
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
