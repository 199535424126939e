#!/usr/bin/env bash
# What dbopt's partition management costs, against pg_partman and plain DDL doing the same work,
# all measured in this run on a throwaway server (compare the ratios across machines, not the
# absolute figures). Targets are printed beside each ratio, never asserted.
#
#   (a) no-op maintenance of many parents: CALL dbopt.run_maintenance() vs partman's
#   (b) creating 1,000 daily partitions: dbopt.create_partitions vs CREATE TABLE ... PARTITION OF
#   (c) dbopt.partition_table on a populated table while a pgbench client writes to it
#
#   BENCH_QUICK=1        small sizes (20 parents, 100 partitions, 200k rows), for a quick check
#   BENCH_WRITER_RATE=100  transactions/s of the pgbench writer in (c)
#   DBOPT_RELEASE=1      benchmark a release build (recommended)
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO"

if [ -n "${BENCH_QUICK:-}" ]; then
  PARENTS=20 NEW_PARTITIONS=100 ROWS=200000
else
  PARENTS=200 NEW_PARTITIONS=1000 ROWS=2000000
fi
NOOP_RUNS=5 CREATE_RUNS=3 WRITER_RATE="${BENCH_WRITER_RATE:-100}"

start_bench_server /tmp/dbopt-bench-partitions 54331 bench
sql() { psql "$URL" -X -q -v ON_ERROR_STOP=1 "$@"; }
sql -c "CREATE EXTENSION dbopt; CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman"

# Milliseconds each of RUNS executions of SQL took, one per line, all in one session after
# PRELUDE (untimed). Timed with the server's clock, so connecting is never part of a figure.
time_in_session() {
  local runs="$1" prelude="$2" body="$3"
  {
    echo '\o /dev/null'
    printf '%s\n' "$prelude"
    for _ in $(seq "$runs"); do
      echo 'SELECT clock_timestamp() AS t0 \gset'
      printf '%s\n' "$body"
      echo '\o'
      echo "SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 3);"
      echo '\o /dev/null'
    done
  } | sql -At
}

median() { sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One result line: both medians, dbopt/baseline and the target.
report() {
  awk -v l="$1" -v o="$2" -v b="$3" -v t="$4" \
    'BEGIN { printf "  %-40s dbopt %9.1f ms   baseline %9.1f ms   ratio %6.3f   target %s\n", l, o, b, o / b, t }'
}

# A parent like an application's event table: range-partitioned on a timestamptz, one index.
parent_ddl() {
  echo "CREATE TABLE $1 (id bigint NOT NULL, ts timestamptz NOT NULL, amount numeric, note text)
          PARTITION BY RANGE (ts);
        CREATE INDEX ON $1 (id);"
}

# Partitions of the tables whose names start with PREFIX, default partitions included (the
# partitions of their indexes, also in pg_inherits, are not counted).
children() {
  sql -At -c "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
               WHERE p.relname LIKE '$1%' AND p.relkind = 'p'"
}

##### (a) no-op maintenance ##########################################################################
# Ten daily partitions per parent: five days back, today, four ahead, so that with premake 4 a
# maintenance run finds every parent already covered and has nothing to create. Each parent is
# set up in its own transaction, as an application would.
say "(a) setting up $PARENTS parents for dbopt and $PARENTS for pg_partman, 10 daily partitions each"
for i in $(seq -w 1 "$PARENTS"); do
  parent_ddl "a_dbopt_$i"
  echo "SELECT count(*) FROM dbopt.create_partitions('a_dbopt_$i', 'ts', '1 day', premake => 4,
          start_from => (now() - interval '5 days')::text);"
  parent_ddl "a_partman_$i"
  echo "SELECT partman.create_parent('public.a_partman_$i', 'ts', 'native', 'daily', p_premake => 4,
          p_start_partition => (now() - interval '5 days')::text);"
done | sql >/dev/null
before="$(children a_dbopt_) $(children a_partman_)"

say "(a) $NOOP_RUNS no-op maintenance runs each, after a warm-up run in the same session"
dbopt_warm="$(time_in_session "$NOOP_RUNS" 'CALL dbopt.run_maintenance();' 'CALL dbopt.run_maintenance();' | median)"
partman_warm="$(time_in_session "$NOOP_RUNS" 'SELECT partman.run_maintenance();' 'SELECT partman.run_maintenance();' | median)"
proc_warm="$(time_in_session "$NOOP_RUNS" 'CALL partman.run_maintenance_proc();' 'CALL partman.run_maintenance_proc();' | median)"
# The same, each run in a new session with no warm-up: what a pg_cron job (a new backend every
# time) pays. Informational.
cold() { for _ in $(seq "$NOOP_RUNS"); do time_in_session 1 '' "$1"; done | median; }
dbopt_cold="$(cold 'CALL dbopt.run_maintenance();')"
partman_cold="$(cold 'SELECT partman.run_maintenance();')"
after="$(children a_dbopt_) $(children a_partman_)"

read -r dbopt_children partman_children <<<"$before"
echo "  children per parent (default included): dbopt $((dbopt_children / PARENTS)), pg_partman $((partman_children / PARENTS))"
if [ "$before" != "$after" ]; then
  echo "  WARNING: the runs were not no-ops: children (dbopt, partman) went from $before to $after"
fi
# Anything dbopt declined or failed to do is in its log; show it rather than hide it.
if [ "$(sql -At -c "SELECT count(*) FROM dbopt.partition_log WHERE outcome <> 'ok'")" != 0 ]; then
  echo "  dbopt.partition_log rows whose outcome is not ok:"
  sql -c "SELECT action, outcome, sqlstate, detail, count(*) FROM dbopt.partition_log
           WHERE outcome <> 'ok' GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC LIMIT 10"
fi
say "(a) no-op maintenance of $PARENTS parents (median of $NOOP_RUNS runs)"
report "vs partman.run_maintenance()" "$dbopt_warm" "$partman_warm" "<= 0.10"
report "vs CALL partman.run_maintenance_proc()" "$dbopt_warm" "$proc_warm" "<= 0.10"
report "vs run_maintenance(), new session each" "$dbopt_cold" "$partman_cold" "(info)"

##### (b) creating 1,000 daily partitions ############################################################
# dbopt's call against the same partitions created by hand in one transaction (a DO block, so no
# client round trips count against the baseline), each on a fresh parent with one index.
say "(b) creating $NEW_PARTITIONS daily partitions, $CREATE_RUNS times each"
back=$((NEW_PARTITIONS - 2)) # through tomorrow (premake 1), so NEW_PARTITIONS in all
dbopt_times=() plain_times=()
for run in $(seq "$CREATE_RUNS"); do
  parent_ddl "b_dbopt_$run" | sql
  parent_ddl "b_plain_$run" | sql
  # The .so is loaded before the clock starts; the DO block has nothing to load.
  dbopt_times+=("$(time_in_session 1 'SELECT dbopt.version();' \
    "SELECT count(*) FROM dbopt.create_partitions('b_dbopt_$run', 'ts', '1 day', premake => 1,
       start_from => (now() - interval '$back days')::text, with_default => false);")")
  made="$(children "b_dbopt_$run")"
  # The same number of daily ranges, aligned as dbopt aligns them (midnight, server time zone).
  plain_times+=("$(time_in_session 1 '' "DO \$\$
    DECLARE first timestamptz := date_trunc('day', now() - interval '$back days');
            lo timestamptz;
    BEGIN
      FOR i IN 0 .. $made - 1 LOOP
        lo := first + i * interval '1 day';
        EXECUTE format('CREATE TABLE %I PARTITION OF b_plain_$run FOR VALUES FROM (%L) TO (%L)',
                       'b_plain_${run}_p' || to_char(lo, 'YYYYMMDD'), lo, lo + interval '1 day');
      END LOOP;
    END \$\$;")")
  echo "  run $run: dbopt created $made partitions in ${dbopt_times[-1]} ms; by hand in ${plain_times[-1]} ms"
  sql -c "DROP TABLE b_dbopt_$run, b_plain_$run"
done
say "(b) creating $NEW_PARTITIONS daily partitions with one index (median of $CREATE_RUNS runs)"
report "vs CREATE TABLE .. PARTITION OF, 1 txn" \
  "$(printf '%s\n' "${dbopt_times[@]}" | median)" "$(printf '%s\n' "${plain_times[@]}" | median)" "<= 1.3"

##### (c) online conversion under write load #########################################################
# Two identical plain tables: one is converted while the writer runs, the other takes the same
# writer for as long as the conversion lasted, with nothing else going on (the baseline).
say "(c) two plain tables of $ROWS rows over 24 months"
for t in c_orders c_twin; do
  sql <<SQL
CREATE TABLE $t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 created_at timestamptz NOT NULL, amount numeric(12,2) NOT NULL, note text);
INSERT INTO $t (created_at, amount, note)
SELECT now() - interval '730 days' + g * (interval '730 days' / $ROWS), (g % 100000) / 100.0, md5(g::text)
  FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE $t;
SQL
done

# The writer: one client at WRITER_RATE transactions/s, each inserting a row and updating a
# random existing one. With --rate pgbench measures latency from each transaction's scheduled
# start, so a writer held up by a lock shows in every transaction that queued behind it.
# bench_writer_go() raises once bench_writer_stop has a row, which ends pgbench cleanly (its
# summary and log complete) at a moment we choose; it runs before any write, so a stopped
# transaction has written nothing.
sql <<'SQL'
CREATE TABLE bench_writer_stop ();
CREATE FUNCTION bench_writer_go() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM bench_writer_stop) THEN RAISE EXCEPTION 'bench: writer stopped'; END IF;
END $$;
SQL
cat >"$WORK/writer.sql" <<SQL
\set id random(1, $ROWS)
BEGIN;
SELECT bench_writer_go();
INSERT INTO :tbl (created_at, amount, note) VALUES (now(), 9.99, 'pgbench writer');
UPDATE :tbl SET amount = amount + 1 WHERE id = :id;
COMMIT;
SQL
# writer TABLE SECONDS NAME: starts the writer in the background, logging to $WORK/NAME.*.
writer() {
  "$PGBENCH" -n -c 1 -R "$WRITER_RATE" -T "$2" -D tbl="$1" -f "$WORK/writer.sql" \
    -l --log-prefix="$WORK/$3" "$URL" >"$WORK/$3.out" 2>&1 &
  WRITER_PID=$!
}
now_us() { echo $(($(date +%s%N) / 1000)); }
# p50, p99 and max latency (ms) and the number of the transactions that overlapped FROM..TO
# (microseconds since the epoch), from pgbench's per-transaction logs NAME.*. Overlapped, not
# completed within: the transactions held up by the final swap complete only after it.
latency() {
  cat "$WORK/$1".[0-9]* | awk -v from="$2" -v to="$3" \
    '$3 ~ /^[0-9]+$/ { done = $5 * 1000000 + $6; if (done >= from && done - $3 <= to) print $3 / 1000 }' \
    | sort -n | awk 'function at(q,  i) { i = int(NR * q); if (i < NR * q) i++; return v[i] }
                     { v[NR] = $1 } END { printf "%.2f %.2f %.2f %d\n", at(0.5), at(0.99), v[NR], NR }'
}
processed() { awk '/number of transactions actually processed/ { split($6, n, "/"); print n[1] }' "$WORK/$1.out"; }

if [ "$(sql -At -c "SELECT count(*) FROM pg_proc WHERE proname = 'partition_table'
                     AND pronamespace = 'dbopt'::regnamespace")" = 0 ]; then
  echo "  (c) NOT RUN: this build of dbopt has no dbopt.partition_table procedure" >&2
  exit 1
fi

# Both writer runs start from a clean slate, and autovacuum (which would find the new partitions
# and the twin worth visiting at any moment) stays out of both, so what differs is the conversion.
sql -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
sql -c CHECKPOINT

say "(c) CALL dbopt.partition_table('c_orders', 'created_at', '1 month') with the writer running"
writer c_orders 86400 during
sleep 2 # the writer reaches its steady state before the clock starts
start="$(now_us)"
sql -c "CALL dbopt.partition_table('c_orders', 'created_at', '1 month')"
end="$(now_us)"
sleep 1
if ! kill -0 "$WRITER_PID" 2>/dev/null; then
  echo "  the writer stopped during the conversion:" >&2
  cat "$WORK/during.out" >&2
  exit 1
fi
sql -c "INSERT INTO bench_writer_stop DEFAULT VALUES"
wait "$WRITER_PID" || true # exits 2: stopped by bench_writer_go(), as intended
WRITER_PID=
seconds="$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", (e - s) / 1000000 }')"
read -r during_p50 during_p99 during_max during_n <<<"$(latency during "$start" "$end")"
inserted="$(processed during)"
read -r after_rows kind parts <<<"$(sql -At -F ' ' -c "SELECT (SELECT count(*) FROM c_orders), c.relkind,
    (SELECT count(*) FROM pg_inherits WHERE inhparent = c.oid) FROM pg_class c WHERE c.oid = 'c_orders'::regclass")"

say "(c) the writer alone on the twin table for as long (${seconds}s)"
sql -c "DELETE FROM bench_writer_stop"
sql -c CHECKPOINT
writer c_twin "$(awk -v s="$seconds" 'BEGIN { print int(s) + (s > int(s)) }')" alone
wait "$WRITER_PID"
WRITER_PID=
read -r alone_p50 alone_p99 alone_max alone_n <<<"$(latency alone 0 99999999999999999)"

say "(c) partition_table on $ROWS rows with a $WRITER_RATE tps writer"
awk -v r="$ROWS" -v s="$seconds" 'BEGIN { printf "  conversion                  %.1f s   %.0f rows/s\n", s, r / s }'
printf '  writer p99 during          %8.2f ms  (p50 %.2f ms, max %.2f ms, %d transactions)\n' \
  "$during_p99" "$during_p50" "$during_max" "$during_n"
printf '  writer p99 without         %8.2f ms  (p50 %.2f ms, max %.2f ms, %d transactions)\n' \
  "$alone_p99" "$alone_p50" "$alone_max" "$alone_n"
awk -v d="$during_p99" -v a="$alone_p99" 'BEGIN { printf "  p99 ratio during/without   %8.2f     target: report both\n", d / a }'
echo "  rows: before $ROWS + inserted by pgbench $inserted = $((ROWS + inserted)); after conversion $after_rows" \
  "($([ "$after_rows" = $((ROWS + inserted)) ] && echo match || echo MISMATCH))"
echo "  c_orders is now relkind '$kind' with $parts partitions"
