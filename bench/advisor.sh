#!/usr/bin/env bash
# dbopt.recommend_indexes over 500 distinct statements on 20 tables (target: under 5 s), and
# for reference HypoPG (Debian's postgresql-15-hypopg) advising one statement at a time the way
# dexter and Supabase's index_advisor do: every one- and two-column btree on the statement's
# columns, each created hypothetically and EXPLAINed. Both run in this run on one server.
#
#   BENCH_ROWS=20000   rows per table
#   DBOPT_RELEASE=1    benchmark a release build (recommended)
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO"

ROWS="${BENCH_ROWS:-20000}"
start_bench_server /tmp/dbopt-bench-advisor 54333 bench
run() { psql "$URL" -X -q -v ON_ERROR_STOP=1 "$@"; }
run -c "CREATE EXTENSION dbopt; CREATE EXTENSION pg_stat_statements; CREATE EXTENSION hypopg"

say "20 tables of $ROWS rows, 25 statement shapes each"
run <<'SQL'
DO $$
DECLARE n int;
BEGIN
  FOR n IN 1..20 LOOP
    EXECUTE format('CREATE TABLE %I (id bigint PRIMARY KEY, a int, b int, c timestamptz,
                    d text, e numeric, f int, g text)', 't' || lpad(n::text, 2, '0'));
  END LOOP;
END $$;
SQL
for n in $(seq -w 1 20); do
  run -c "INSERT INTO t$n SELECT g, g % 100, g % 9973, now() - g * interval '1 minute',
      CASE WHEN g % 500 = 0 THEN 'rare' WHEN g % 3 = 0 THEN 'b' ELSE 'a' END, g / 7.0, g % 37,
      md5(g::text) FROM generate_series(1, $ROWS) g"
done
run -c "VACUUM ANALYZE"

# The statements, with their constants and the columns a one-query advisor would index.
run <<'SQL'
CREATE TABLE bench_statements (sql text, tbl text, cols text[]);
INSERT INTO bench_statements
SELECT format('SELECT %s FROM %I WHERE %s', target, t, pred), t, cols
  FROM (SELECT 't' || lpad(n::text, 2, '0') AS t FROM generate_series(1, 20) n) tables,
       unnest(ARRAY['*', 'id', 'id, e', 'id, a, c']) AS target,
       (VALUES ('a = 42', ARRAY['a']),
               ('b = 4242', ARRAY['b']),
               ('a = 7 AND b = 707', ARRAY['a', 'b']),
               ($$d = 'rare' ORDER BY c LIMIT 10$$, ARRAY['d', 'c']),
               ($$c BETWEEN now() - interval '2 days' AND now() - interval '1 day'$$, ARRAY['c']),
               ($$f = 5 AND c > now() - interval '3 days'$$, ARRAY['f', 'c'])) AS p(pred, cols)
UNION ALL
SELECT format('SELECT a, count(*) FROM %I GROUP BY a', t), t, ARRAY['a']
  FROM (SELECT 't' || lpad(n::text, 2, '0') AS t FROM generate_series(1, 20) n) tables;
SQL
run -At -c "SELECT count(*) || ' statements' FROM bench_statements"
run -At -c "SELECT sql FROM bench_statements" | while read -r sql; do
  for _ in 1 2 3 4 5 6 7 8 9 10; do printf '%s;\n' "$sql"; done
done >"$WORK/workload.sql"
run -c "SELECT pg_stat_statements_reset()" >/dev/null
run -f "$WORK/workload.sql" >/dev/null
run -At -c "SELECT count(*) || ' statements in pg_stat_statements with >= 10 calls'
              FROM pg_stat_statements WHERE calls >= 10"

say "dbopt.recommend_indexes (whole workload, in-process generic plans)"
run <<'SQL'
\timing on
CREATE TABLE dbopt_found AS
SELECT table_name::text AS tbl, columns, index_definition
  FROM dbopt.recommend_indexes(max_indexes => 100);
\timing off
SELECT count(*) || ' indexes recommended' FROM dbopt_found;
SQL

say "HypoPG, one statement at a time (dexter-style: 1- and 2-column candidates, EXPLAIN each)"
run <<'SQL'
CREATE TABLE hypopg_found (tbl text, columns text[]);
CREATE FUNCTION plan_cost(statement text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE plan json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || statement INTO plan;
  RETURN (plan -> 0 -> 'Plan' ->> 'Total Cost')::float8;
END $$;
\timing on
DO $$
DECLARE s record; candidate text[]; best text[]; base float8; best_cost float8; cost float8;
BEGIN
  FOR s IN SELECT * FROM bench_statements LOOP
    base := plan_cost(s.sql); best := NULL; best_cost := base;
    FOR candidate IN
      SELECT ARRAY[x] FROM unnest(s.cols) x
      UNION ALL
      SELECT ARRAY[x, y] FROM unnest(s.cols) x, unnest(s.cols) y WHERE x <> y
    LOOP
      PERFORM hypopg_create_index(format('CREATE INDEX ON %I (%s)', s.tbl,
                                         array_to_string(candidate, ', ')));
      cost := plan_cost(s.sql);
      PERFORM hypopg_reset();
      IF cost < best_cost * 0.5 THEN best := candidate; best_cost := cost; END IF;
    END LOOP;
    IF best IS NOT NULL THEN INSERT INTO hypopg_found VALUES (s.tbl, best); END IF;
  END LOOP;
END $$;
\timing off
SELECT count(DISTINCT (tbl, columns)) || ' distinct indexes found' FROM hypopg_found;
SELECT count(*) || ' of them also recommended by dbopt (same table, same key columns)'
  FROM (SELECT DISTINCT tbl, columns FROM hypopg_found) h
 WHERE EXISTS (SELECT FROM dbopt_found d WHERE d.tbl = h.tbl AND d.columns = h.columns);
SELECT count(*) || ' dbopt recommendations whose leading columns HypoPG also found'
  FROM dbopt_found d
 WHERE EXISTS (SELECT FROM hypopg_found h WHERE h.tbl = d.tbl
                AND d.columns[1:array_length(h.columns, 1)] = h.columns);
SQL
