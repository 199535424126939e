#!/usr/bin/env bash
# What a rolling aggregate costs its source's writers and what it saves its readers, measured
# on a throwaway server against baselines from the same run (compare the ratios across
# machines, not the absolute figures). Targets are printed beside each ratio, never asserted.
#
#   (a) pgbench, 16 clients inserting orders for 100k users: TPS with the aggregate / without
#   (b) the same with 10 hot users and two-row transactions: TPS ratio, deadlocks
#   (c) seed 001's A1 top-10 report over the orders / the same report read from user_spending_30d
#   (d) refresh_rolling after one day's worth of rows aged out
#
#   BENCH_QUICK=1          500k orders and 5 s pgbench runs instead of 5M and 10 s
#   BENCH_ROUNDS=3         runs without and with the aggregate alternate this many times: this
#                          machine's write speed drifts by a quarter over minutes, and alternating
#                          shares the drift between both sides
#   BENCH_LOOKAHEAD=0      the aggregate's lookahead: with '1 day', rows dated now count at once
#                          (one upsert per write, hot groups serialize on their row) instead of
#                          at the next refresh
#   DBOPT_RELEASE=1        benchmark a release build (recommended)
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO"

if [ -n "${BENCH_QUICK:-}" ]; then ROWS=500000 SECONDS_PER_RUN=5; else ROWS=5000000 SECONDS_PER_RUN=10; fi
ROUNDS="${BENCH_ROUNDS:-3}"
USERS=100000 CLIENTS=16 THREADS=2

start_bench_server /tmp/dbopt-bench-rollups 54333 bench
sql() { psql "$URL" -X -q -v ON_ERROR_STOP=1 "$@"; }
sql -c "CREATE EXTENSION dbopt"
# The same server settings for every run: autovacuum would visit orders in one run and not
# another.
sql -c "ALTER SYSTEM SET autovacuum = off" -c "ALTER SYSTEM SET checkpoint_timeout = '1h'" \
  -c "SELECT pg_reload_conf()" >/dev/null

##### the tables #####################################################################################
# Seed 001's users and orders: a year of orders, created_at growing with id, user ids skewed
# towards a few heavy buyers, 80% completed; indexed as seed 001 (A2) suggests.
say "loading $USERS users and $ROWS orders over a year"
sql <<SQL
CREATE TABLE users (id bigint PRIMARY KEY, username text NOT NULL, email text NOT NULL);
INSERT INTO users SELECT g, 'user' || g, 'user' || g || '@example.com' FROM generate_series(1, $USERS) g;
CREATE TABLE orders (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users,
    total_amount numeric(12, 2) NOT NULL,
    status       text NOT NULL,
    created_at   timestamptz NOT NULL
);
SELECT setseed(0.5) \g /dev/null
INSERT INTO orders (user_id, total_amount, status, created_at)
SELECT 1 + floor(($USERS - 1) * power(random(), 2))::bigint,
       round((5 + 495 * random() * random())::numeric, 2),
       CASE WHEN random() < 0.8 THEN 'completed' ELSE 'pending' END,
       now() - interval '365 days' + g::float8 / $ROWS * interval '365 days'
  FROM generate_series(1, $ROWS) g;
CREATE INDEX orders_created_at ON orders (created_at);
CREATE INDEX orders_user_created ON orders (user_id, created_at);
VACUUM ANALYZE users, orders;
CHECKPOINT;
SQL

say "creating user_spending_30d"
CREATE_MS="$(sql -At -v lookahead="${BENCH_LOOKAHEAD:-0}" <<'SQL'
SELECT clock_timestamp() AS t0 \gset
SELECT dbopt.create_rolling_aggregate(
    name => 'user_spending_30d', source => 'orders', group_by => 'user_id',
    time_column => 'created_at',
    measures => 'count(*) AS total_orders, sum(total_amount) AS total_spent',
    filter => $$status = 'completed'$$, lookahead => :'lookahead') \g /dev/null
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000);
SQL
)"
GROUP_COUNT="$(sql -At -c "SELECT count(*) FROM user_spending_30d")"
echo "  created in ${CREATE_MS} ms: $GROUP_COUNT groups"

##### (a) and (b): writers with and without the aggregate ###########################################
cat >"$WORK/spread.sql" <<SQL
\set uid random(1, $USERS)
INSERT INTO orders (user_id, total_amount, status, created_at) VALUES (:uid, 19.99, 'completed', now());
SQL
cat >"$WORK/hot.sql" <<'SQL'
\set a random(1, 10)
\set b random(1, 10)
INSERT INTO orders (user_id, total_amount, status, created_at)
VALUES (:a, 1.50, 'completed', now()), (:b, 2.25, 'completed', now());
SQL

# "Without" runs disable the aggregate's triggers and rebuild it afterwards, so both runs write
# to the same table with the same indexes.
without_aggregate() { sql -c "ALTER TABLE orders DISABLE TRIGGER USER"; }
with_aggregate() {
  sql -c "ALTER TABLE orders ENABLE TRIGGER USER" -c "SELECT dbopt.rebuild_rolling('user_spending_30d')" >/dev/null
}

# pgbench SCRIPT NAME: runs the clients and sets TPS and FAILED (failed transactions, deadlocks
# included).
pgbench_run() {
  sql -c CHECKPOINT
  "$PGBENCH" -n -c "$CLIENTS" -j "$THREADS" -T "$SECONDS_PER_RUN" -f "$WORK/$1" "$URL" >"$WORK/$2.out" 2>&1 || true
  TPS="$(awk '/^tps = / { print $3 }' "$WORK/$2.out" | head -1)"
  FAILED="$(awk '/number of failed transactions/ { print $5 } ' "$WORK/$2.out")"
  FAILED="${FAILED:-0}"
  if grep -q "aborted" "$WORK/$2.out"; then FAILED="$FAILED (clients aborted: $(grep -c 'aborted' "$WORK/$2.out"))"; fi
  printf '  %-34s %9.0f TPS, failed transactions: %s\n' "$2" "$TPS" "$FAILED"
}

# compare SCRIPT LABEL: ROUNDS runs without the aggregate alternating with ROUNDS runs with it;
# sets WITHOUT and WITH (mean TPS) and FAILED_WITH (failed transactions with the aggregate).
compare() {
  local sum_without=0 sum_with=0 round
  FAILED_WITH=0
  for round in $(seq "$ROUNDS"); do
    without_aggregate
    pgbench_run "$1" "$2 without the aggregate, round $round"
    sum_without="$(awk -v a="$sum_without" -v b="$TPS" 'BEGIN { print a + b }')"
    with_aggregate
    pgbench_run "$1" "$2 with the aggregate, round $round"
    sum_with="$(awk -v a="$sum_with" -v b="$TPS" 'BEGIN { print a + b }')"
    FAILED_WITH=$((FAILED_WITH + ${FAILED%% *}))
  done
  WITHOUT="$(awk -v s="$sum_without" -v n="$ROUNDS" 'BEGIN { print s / n }')"
  WITH="$(awk -v s="$sum_with" -v n="$ROUNDS" 'BEGIN { print s / n }')"
}

say "(a) $CLIENTS clients inserting orders for $USERS users, $ROUNDS rounds of ${SECONDS_PER_RUN}s each way"
compare spread.sql "(a)"
A_WITHOUT=$WITHOUT A_WITH=$WITH A_FAILED=$FAILED_WITH

say "(b) $CLIENTS clients, two-row transactions on 10 hot users, $ROUNDS rounds of ${SECONDS_PER_RUN}s each way"
compare hot.sql "(b)"
B_WITHOUT=$WITHOUT B_WITH=$WITH B_FAILED=$FAILED_WITH
DEADLOCKS="$(psql "$URL" -X -At -c "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")"
DIFFERENCES="$(sql -At -c "SELECT count(*) FROM dbopt.verify_rolling('user_spending_30d')")"

##### (c) the top-10 report ##########################################################################
say "(c) seed 001's top-10 report over $(sql -At -c "SELECT count(*) FROM orders") orders, and from user_spending_30d"
sql <<'SQL'
CREATE FUNCTION median_ms(query text, runs int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    times float8[] := '{}';
BEGIN
    EXECUTE query;  -- warm the cache once, untimed
    FOR i IN 1..runs LOOP
        t0 := clock_timestamp();
        EXECUTE query;
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM unnest(times) t);
END $$;
SQL
SEED_A1="SELECT u.id, u.username, u.email, COUNT(o.id) AS total_orders,
       COALESCE(SUM(o.total_amount), 0) AS total_spent
  FROM users u JOIN orders o ON o.user_id = u.id
 WHERE o.created_at >= NOW() - INTERVAL '30 days' AND o.status = 'completed'
 GROUP BY u.id, u.username, u.email ORDER BY total_spent DESC LIMIT 10"
FROM_TABLE="SELECT u.id, u.username, u.email, s.total_orders, s.total_spent
  FROM user_spending_30d s JOIN users u ON u.id = s.user_id
 ORDER BY s.total_spent DESC LIMIT 10"
read -r SCAN_MS TABLE_MS SAME <<<"$(sql -At -F ' ' <<SQL
CALL dbopt.refresh_rolling('user_spending_30d');
SELECT median_ms(\$q\$$SEED_A1\$q\$, 5), median_ms(\$q\$$FROM_TABLE\$q\$, 200),
       (SELECT count(*) = 10 FROM (($SEED_A1) INTERSECT ($FROM_TABLE)) same);
SQL
)"

##### (d) refresh after a day ########################################################################
say "(d) refresh_rolling after one day of rows aged out"
AGED="$(sql -At -c "SELECT count(*) FROM orders WHERE status = 'completed' AND created_at >= now() - interval '30 days' AND created_at < now() - interval '29 days'")"
REFRESH_MS="$(sql -At <<'SQL'
SELECT clock_timestamp() AS t0 \gset
CALL dbopt.refresh_rolling('user_spending_30d', as_of => now() + interval '1 day');
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 1);
SQL
)"
LOGGED="$(sql -At -c "SELECT round(last_refresh_ms::numeric, 1) || ' ms, ' || last_refresh_groups || ' groups changed' FROM dbopt.rolling_aggregates")"
AFTER="$(sql -At -c "SELECT count(*) FROM dbopt.verify_rolling('user_spending_30d')")"

##### summary ########################################################################################
say "summary ($ROWS orders, $USERS users, $CLIENTS pgbench clients, lookahead '${BENCH_LOOKAHEAD:-0}')"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
printf '  (a) spread inserts: %8.0f / %8.0f TPS = %s   target >= 0.75; failed: %s\n' \
  "$A_WITH" "$A_WITHOUT" "$(ratio "$A_WITH" "$A_WITHOUT")" "$A_FAILED"
printf '  (b) hot two-row:    %8.0f / %8.0f TPS = %s   target >= 0.5; failed: %s; deadlocks in the database: %s (target 0)\n' \
  "$B_WITH" "$B_WITHOUT" "$(ratio "$B_WITH" "$B_WITHOUT")" "$B_FAILED" "$DEADLOCKS"
echo "      verify_rolling after the writers: $DIFFERENCES differences (target 0)"
printf '  (c) top-10 report:  %.3f ms scanning orders / %.3f ms from user_spending_30d = %.0fx   target >= 1000x; same ten users: %s\n' \
  "$SCAN_MS" "$TABLE_MS" "$(awk -v a="$SCAN_MS" -v b="$TABLE_MS" 'BEGIN { print a / b }')" "$SAME"
echo "  (d) refresh_rolling after one day ($AGED completed orders aged out): $REFRESH_MS ms by the client's clock; dbopt.rolling_aggregates: $LOGGED; verify after: $AFTER differences"
echo "  create_rolling_aggregate over $ROWS orders: $CREATE_MS ms ($GROUP_COUNT groups)"
