#!/usr/bin/env bash
# dbopt.db_health() on a database of 2,000 tables and 6,000 indexes (target: under 1 s), against
# a baseline measured in the same run: the plain catalog queries a pghero-style dashboard runs
# for the same sections (sizes, index usage, vacuum counters, sequences, pg_stats widths),
# with no grading, no thresholds and no lock-safety. Then dbopt.cap_rows' insert rate under
# 8 pgbench clients against uncapped inserts and a hand-written per-row trim trigger.
#
#   BENCH_TABLES=2000   tables (each with a primary key and two more indexes)
#   BENCH_CAP_SECONDS=5 length of each pgbench run
#   DBOPT_RELEASE=1     benchmark a release build (recommended)
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO"

TABLES="${BENCH_TABLES:-2000}"
start_bench_server /tmp/dbopt-bench-health 54334 bench
run() { psql "$URL" -X -q -v ON_ERROR_STOP=1 "$@"; }
run -c "CREATE EXTENSION dbopt; CREATE EXTENSION pg_stat_statements"

say "$TABLES tables of 200 rows, 3 indexes each, analyzed, with some scans"
run -v tables="$TABLES" <<'SQL'
SELECT format('CREATE TABLE t%s (id serial PRIMARY KEY, account int, created_at timestamptz,
                                 note text);
               CREATE INDEX ON t%s (account); CREATE INDEX ON t%s (created_at);
               INSERT INTO t%s (account, created_at, note)
               SELECT g %% 20, now() - g * interval ''1 hour'', ''n'' || g
                 FROM generate_series(1, 200) g;', n, n, n, n)
  FROM generate_series(1, :tables) n
\gexec
ANALYZE;
SELECT format('SELECT count(*) FROM t%s WHERE account = 3', n)
  FROM generate_series(1, :tables, 7) n
\gexec
SQL
run -Atc "SELECT count(*) || ' tables, ' || (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public') || ' indexes' FROM pg_tables WHERE schemaname = 'public'"
run -c "SELECT dbopt.snapshot_stats()" >/dev/null

# Median of 5 runs of a statement, in ms.
median_ms() {
  for _ in 1 2 3 4 5; do
    run -c '\timing on' -c "$1" | awk '/^Time:/ {print $2}'
  done | sort -n | awk '{ t[NR] = $1 } END { print t[3] }'
}

BASELINE="SELECT count(*) FROM (
  SELECT c.oid, pg_table_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')) sizes,
  (SELECT count(*) FROM (SELECT s.*, pg_relation_size(s.indexrelid) FROM pg_stat_user_indexes s
                          JOIN pg_index i USING (indexrelid) WHERE NOT i.indisunique) u) usage,
  (SELECT count(*) FROM pg_stat_user_tables WHERE n_dead_tup > 50 + 0.2 * n_live_tup) vacuum,
  (SELECT count(*) FROM pg_sequences) sequences,
  (SELECT count(*) FROM (SELECT schemaname, tablename, sum(avg_width) FROM pg_stats
                          GROUP BY 1, 2) w) widths;"

say "median of 5 runs each"
base="$(median_ms "$BASELINE")"
ours="$(median_ms "SELECT length(dbopt.db_health()::text);")"
snap="$(median_ms "SELECT dbopt.snapshot_stats();")"
bloat="$(median_ms "SELECT count(*) FROM dbopt.health_bloat();")"
awk -v b="$base" -v o="$ours" -v s="$snap" -v bl="$bloat" 'BEGIN {
  printf "baseline (plain catalog queries)  %8.1f ms\n", b
  printf "dbopt.db_health()                 %8.1f ms   ratio %5.2f   target < 1000 ms: %s\n", o, o / b, (o < 1000 ? "met" : "MISSED")
  printf "dbopt.snapshot_stats()            %8.1f ms\n", s
  printf "dbopt.health_bloat()              %8.1f ms\n", bl
}'

# dbopt.cap_rows (seed 001 B3: the newest 50 views per user) under 8 pgbench clients, against
# uncapped inserts and the row trigger people write by hand (DELETE ... OFFSET 50 per insert,
# no lock), which is cheaper and wrong: concurrent inserts for one user leave more than 50 rows.
SECONDS_EACH="${BENCH_CAP_SECONDS:-5}"
say "cap_rows: 8 clients, ${SECONDS_EACH} s each, inserts for 1 user or spread over 1,000"
run <<'SQL'
CREATE TABLE viewed (id bigserial PRIMARY KEY, user_id int NOT NULL, product_id int NOT NULL,
                     viewed_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON viewed (user_id, viewed_at);
CREATE FUNCTION naive_cap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM viewed WHERE id IN (SELECT id FROM viewed WHERE user_id = NEW.user_id
                                   ORDER BY viewed_at DESC OFFSET 50);
  RETURN NULL;
END $$;
SQL
echo "INSERT INTO viewed (user_id, product_id) VALUES (1, 1);" > "$WORK/one-user.sql"
echo "INSERT INTO viewed (user_id, product_id) VALUES (1 + (random() * 999)::int, 1);" > "$WORK/many-users.sql"
# TPS of one pgbench run, and the most rows any user has afterwards.
tps_and_max() {
  run -c "TRUNCATE viewed"
  local tps
  # A client the hand-written trigger deadlocks is aborted; pgbench then exits 1 after its run.
  tps="$( { "$PGBENCH" -n -c 8 -j 2 -T "$SECONDS_EACH" -f "$1" "$URL" 2>/dev/null || true; } \
         | awk '/^tps =/ {print $3}')"
  echo "$tps $(run -Atc "SELECT coalesce(max(n), 0) FROM (SELECT count(*) n FROM viewed GROUP BY user_id) x")"
}
for users in one many; do
  script="$WORK/many-users"
  [ "$users" = one ] && script="$WORK/one-user"
  run -c "DROP TRIGGER IF EXISTS naive ON viewed; SELECT dbopt.uncap_rows('viewed')" >/dev/null
  read -r plain_tps plain_max <<<"$(tps_and_max "$script.sql")"
  run -c "CREATE TRIGGER naive AFTER INSERT ON viewed FOR EACH ROW EXECUTE FUNCTION naive_cap()"
  read -r naive_tps naive_max <<<"$(tps_and_max "$script.sql")"
  run -c "DROP TRIGGER naive ON viewed" -c "SELECT dbopt.cap_rows('viewed', 'user_id', 'viewed_at', 50)" >/dev/null
  read -r cap_tps cap_max <<<"$(tps_and_max "$script.sql")"
  label="$([ "$users" = one ] && echo "1 user" || echo "1,000 users")"
  awk -v l="$label" -v p="$plain_tps" -v pm="$plain_max" -v n="$naive_tps" -v nm="$naive_max" \
      -v c="$cap_tps" -v cm="$cap_max" 'BEGIN {
    printf "%-12s uncapped          %8.0f inserts/s                      most rows per user %s\n", l, p, pm
    printf "%-12s hand-written row  %8.0f inserts/s   ratio %5.2f   most rows per user %s (cap 50)\n", l, n, n / p, nm
    printf "%-12s dbopt.cap_rows    %8.0f inserts/s   ratio %5.2f   most rows per user %s (cap 50)\n", l, c, c / p, cm
  }'
done
