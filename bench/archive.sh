#!/usr/bin/env bash
# What dbopt.archive costs, against the fastest way to do the same move by hand (one INSERT ...
# SELECT and one DELETE in a single transaction), both measured in this run on a throwaway server
# (compare the ratios across machines, not the absolute figures). Targets are printed beside each
# ratio, never asserted.
#
#   (a) archiving the older half of an orders table (rows moved per second, WAL bytes per row)
#   (b) the same archive while pgbench clients write to the table: their errors, and their p99
#       latency while it runs against their p99 before and after it in the same run (the target)
#       and in a separate run without it (for information: it varies more between runs than the
#       archive's effect)
#
#   BENCH_QUICK=1           400k rows instead of 4M, for a quick check
#   BENCH_WRITER_RATE=200   transactions/s of the pgbench writers in (b), all clients together
#   BENCH_WRITER_SECONDS=20 length of the writers' run without the archive in (b)
#   BENCH_PAUSE=20ms        dbopt.archive's pause between batches in (b): what the README advises
#                           under write load (pass 0 to see the writers' p99 without it)
#   DBOPT_RELEASE=1         benchmark a release build (recommended)
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO"

if [ -n "${BENCH_QUICK:-}" ]; then ROWS=400000; else ROWS=4000000; fi
HALF=$((ROWS / 2)) BATCH=10000 RUNS=2
WRITER_RATE="${BENCH_WRITER_RATE:-200}" WRITER_SECONDS="${BENCH_WRITER_SECONDS:-20}"
WRITER_CLIENTS=4 WRITER_THREADS=2

start_bench_server /tmp/dbopt-bench-archive 54332 bench
sql() { psql "$URL" -X -q -v ON_ERROR_STOP=1 "$@"; }
sql -c "CREATE EXTENSION dbopt"
# Autovacuum would visit orders in the middle of dbopt's run (its batches commit, so the dead rows
# count at once) but never in the baseline's single transaction, and a timed checkpoint could fall
# inside one run and not another: both stay out, so each run does the same work and the WAL
# figures differ only by what the two ways of moving rows write.
sql -c "ALTER SYSTEM SET autovacuum = off" -c "ALTER SYSTEM SET checkpoint_timeout = '1h'" \
  -c "SELECT pg_reload_conf()" >/dev/null

# Runs BODY once, in one session after PRELUDE (untimed), and sets MS (its duration), WAL_BYTES
# (WAL written meanwhile), T_START and T_END (microseconds since the epoch, to pick the writers'
# transactions that overlapped it). Timed with the server's clock, so connecting is never part of
# a figure. dbopt's progress notices (one every 10 batches) are left out; any other message is
# shown, and an error ends the bench.
measure() {
  if ! {
    echo '\o /dev/null'
    printf '%s\n' "$1"
    echo 'SELECT pg_current_wal_lsn() AS lsn0, clock_timestamp() AS t0 \gset'
    printf '%s\n' "$2"
    echo 'SELECT clock_timestamp() AS t1, pg_current_wal_lsn() AS lsn1 \gset'
    echo '\o'
    echo "SELECT round(extract(epoch FROM :'t1'::timestamptz - :'t0') * 1000, 3),
                 pg_wal_lsn_diff(:'lsn1', :'lsn0'),
                 (extract(epoch FROM :'t0'::timestamptz) * 1000000)::bigint,
                 (extract(epoch FROM :'t1'::timestamptz) * 1000000)::bigint;"
  } | sql -At -F ' ' >"$WORK/measured" 2>"$WORK/messages"; then
    cat "$WORK/messages" >&2
    exit 1
  fi
  grep -Ev '^NOTICE: +dbopt\.archive: [0-9]+ rows moved' "$WORK/messages" >&2 || true
  read -r MS WAL_BYTES T_START T_END <"$WORK/measured"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One result line: both medians, dbopt/baseline and the target.
report() {
  awk -v l="$1" -v o="$2" -v b="$3" -v u="$4" -v t="$5" \
    'BEGIN { printf "  %-24s dbopt %10.1f %-6s baseline %10.1f %-6s ratio %6.3f   target %s\n", l, o, u, b, u, o / b, t }'
}

##### the table ######################################################################################
# Like seed 001's orders, loaded in time order as a real table fills: created_at grows with id.
# The older half lies more than 2 years back and the newer half less, with a day's gap around the
# mark, so older_than => '2 years' moves exactly HALF rows however long the bench runs. Loaded
# once into orders_template; every measurement gets its own fresh copy (fresh_orders).
say "loading $ROWS orders over 4 years into orders_template"
sql <<SQL
CREATE TABLE orders_template (
    id           bigint GENERATED ALWAYS AS IDENTITY,
    user_id      bigint NOT NULL,
    total_amount numeric(12, 2) NOT NULL,
    status       text NOT NULL,
    created_at   timestamptz NOT NULL
);
SELECT setseed(0.42) \g /dev/null
INSERT INTO orders_template (user_id, total_amount, status, created_at)
SELECT 1 + floor(49999 * power(random(), 3))::bigint,
       round((5 + 495 * random() * random())::numeric, 2),
       CASE WHEN r < 0.80 THEN 'completed' WHEN r < 0.92 THEN 'cancelled'
            WHEN r < 0.97 THEN 'refunded' ELSE 'pending' END,
       CASE WHEN g <= $HALF
            THEN now() - interval '4 years'
                 + (g - 1)::float8 / $HALF * (interval '2 years' - interval '1 day')
            ELSE now() - interval '2 years' + interval '1 day'
                 + (g - $HALF - 1)::float8 / $HALF * (interval '2 years' - interval '1 day 1 minute')
       END
  FROM (SELECT g, random() AS r FROM generate_series(1, $ROWS) AS g) AS o
 ORDER BY g;
SQL

# A fresh orders with no archive: a copy of the template, its indexes built after the load (the
# same indexes either way, quicker to make), its identity continuing after the copied ids, vacuumed
# so that no run finds hint bits or a visibility map left to set.
fresh_orders() {
  sql >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS orders, orders_archive;
CREATE TABLE orders (LIKE orders_template INCLUDING DEFAULTS INCLUDING IDENTITY);
INSERT INTO orders OVERRIDING SYSTEM VALUE SELECT * FROM orders_template;
ALTER TABLE orders ADD PRIMARY KEY (id);
CREATE INDEX ON orders (created_at);
SELECT setval(pg_get_serial_sequence('orders', 'id'), $ROWS);
VACUUM ANALYZE orders;
SQL
}

# "hot archived" row counts after a run.
counts() { sql -At -F ' ' -c "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM orders_archive)"; }

# What the run of dbopt.archive just made recorded about itself, for the record.
last_run() {
  sql -At -F ' ' -c "SELECT status, batches, rows_moved, round(rows_per_second), coalesce(error, '')
                       FROM dbopt.archive_runs ORDER BY id DESC LIMIT 1"
}

# Prints the run's line and sets RATE (rows/s) and WAL (bytes per row moved).
summarize() {
  local label="$1" ms="$2" wal="$3" hot archived
  read -r hot archived <<<"$(counts)"
  RATE="$(awk -v n="$archived" -v ms="$ms" 'BEGIN { printf "%.1f", n / (ms / 1000) }')"
  WAL="$(awk -v n="$archived" -v w="$wal" 'BEGIN { printf "%.1f", n ? w / n : 0 }')"
  printf '  %-28s moved %d rows in %.1f s: %.0f rows/s, %.1f WAL bytes/row; orders %d + archive %d = %d (%s)\n' \
    "$label" "$archived" "$(awk -v ms="$ms" 'BEGIN { print ms / 1000 }')" "$RATE" "$WAL" \
    "$hot" "$archived" $((hot + archived)) "$([ $((hot + archived)) = "$4" ] && [ "$archived" = "$HALF" ] \
      && echo ok || echo "MISMATCH: expected $4 with $HALF archived")"
}

##### (a) archiving the older half (2M of 4M rows) ###################################################
# The baseline is the limit: every row moved by one INSERT ... SELECT and one DELETE in a single
# transaction, into an archive table of the shape dbopt makes (source's columns, archived_at, the
# source's primary key and no other index), created beforehand and untimed. One cutoff, taken once
# before the clock starts, serves both statements. dbopt makes its archive table itself, inside
# the timed call, as it does on first use. Runs alternate, so drift hits both alike; each starts
# from a checkpoint, so both pay the same full-page writes.
BASELINE_BODY="BEGIN;
INSERT INTO orders_archive SELECT *, now() FROM orders WHERE created_at < :'cutoff';
DELETE FROM orders WHERE created_at < :'cutoff';
COMMIT;"
DBOPT_BODY="CALL dbopt.archive('orders', 'created_at', '2 years', batch_size => $BATCH);"

base_rates=() base_wals=() dbopt_rates=() dbopt_wals=() dbopt_ms=()
for run in $(seq "$RUNS"); do
  say "(a) run $run of $RUNS: fresh orders, then the baseline"
  fresh_orders
  sql -c "CREATE TABLE orders_archive (LIKE orders INCLUDING DEFAULTS,
            archived_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id))"
  measure "SELECT now() - interval '2 years' AS cutoff \\gset
CHECKPOINT;" "$BASELINE_BODY"
  summarize "baseline, run $run:" "$MS" "$WAL_BYTES" "$ROWS"
  base_rates+=("$RATE") base_wals+=("$WAL")

  say "(a) run $run of $RUNS: fresh orders, then dbopt.archive"
  fresh_orders
  # The .so is loaded before the clock starts.
  measure "SELECT dbopt.version();
CHECKPOINT;" "$DBOPT_BODY"
  summarize "dbopt, run $run:" "$MS" "$WAL_BYTES" "$ROWS"
  read -r status batches moved logged_rate error <<<"$(last_run)"
  echo "  (dbopt.archive_runs: status $status, $batches batches, $moved rows, $logged_rate rows/s by its own clock${error:+, error: $error})"
  dbopt_rates+=("$RATE") dbopt_wals+=("$WAL") dbopt_ms+=("$MS")
done
base_rate="$(printf '%s\n' "${base_rates[@]}" | median)" dbopt_rate="$(printf '%s\n' "${dbopt_rates[@]}" | median)"
base_wal="$(printf '%s\n' "${base_wals[@]}" | median)" dbopt_wal="$(printf '%s\n' "${dbopt_wals[@]}" | median)"

##### (b) the archive under write load ###############################################################
# The writers: WRITER_CLIENTS clients at WRITER_RATE transactions/s in all, each transaction
# inserting a new order and marking a random one of the newer half shipped: rows the archive never
# moves, so any slowdown is contention (WAL, I/O, CPU, locks), not waiting on the rows themselves.
# With --rate pgbench measures latency from each transaction's scheduled start, so a writer held
# up shows in every transaction that queued behind it.
cat >"$WORK/writer.sql" <<SQL
\set id random($((HALF + 1)), $ROWS)
\set user_id random(1, 50000)
BEGIN;
INSERT INTO orders (user_id, total_amount, status, created_at) VALUES (:user_id, 9.99, 'pending', now());
UPDATE orders SET status = 'shipped' WHERE id = :id;
COMMIT;
SQL
# writer SECONDS NAME: starts the writers in the background, logging to $WORK/NAME.*.
writer() {
  "$PGBENCH" -n -c "$WRITER_CLIENTS" -j "$WRITER_THREADS" -R "$WRITER_RATE" -T "$1" \
    -f "$WORK/writer.sql" -l --log-prefix="$WORK/$2" "$URL" >"$WORK/$2.out" 2>&1 &
  WRITER_PID=$!
}
# Waits for the writers and sets WRITER_RC to pgbench's exit status (0 unless a client aborted).
writer_wait() {
  WRITER_RC=0
  wait "$WRITER_PID" || WRITER_RC=$?
  WRITER_PID=
}
# p50, p99 and max latency (ms) and the number of transactions, from pgbench's per-transaction
# logs NAME.*: with `latency NAME inside FROM TO`, those that overlapped FROM..TO (microseconds
# since the epoch; overlapped, not completed within: a transaction held up by the archive may
# complete only after it); with `latency NAME outside FROM TO SINCE`, those that started after
# SINCE and did not overlap FROM..TO.
latency() {
  cat "$WORK/$1".[0-9]* | awk -v mode="$2" -v from="$3" -v to="$4" -v since="${5:-0}" \
    '$3 ~ /^[0-9]+$/ {
       done = $5 * 1000000 + $6; start = done - $3
       overlaps = done >= from && start <= to
       if (mode == "inside" ? overlaps : (!overlaps && start >= since)) print $3 / 1000
     }' \
    | sort -n | awk 'function at(q,  i) { i = int(NR * q); if (i < NR * q) i++; return v[i] }
                     { v[NR] = $1 } END { printf "%.2f %.2f %.2f %d\n", at(0.5), at(0.99), v[NR], NR }'
}
# "processed failed aborted" of a pgbench run: its summary's counts, and the clients it reports
# aborted (an error outside a retriable serialization or deadlock failure ends a client).
outcome() {
  awk '/number of transactions actually processed/ { split($6, n, "/"); p = n[1] }
       /number of failed transactions/ { f = $5 }
       /aborted in command|client [0-9]+ aborted/ { a++ }
       END { printf "%d %d %d\n", p, f, a }' "$WORK/$1.out"
}

say "(b) the writers alone for ${WRITER_SECONDS}s on a fresh orders ($WRITER_CLIENTS clients, $WRITER_RATE tps)"
fresh_orders
sql -c CHECKPOINT
writer "$WRITER_SECONDS" alone
writer_wait
alone_rc=$WRITER_RC
read -r alone_p50 alone_p99 alone_max alone_n <<<"$(latency alone inside 0 99999999999999999)"
read -r alone_done alone_failed alone_aborted <<<"$(outcome alone)"

# The writers run for a 2 s warm-up, OUTSIDE_SECONDS before the archive, the archive (allowing
# three times its time without writers) and at least OUTSIDE_SECONDS after it: the transactions
# before and after it are the same run's latency without the archive.
OUTSIDE_SECONDS=10
during_seconds="$(printf '%s\n' "${dbopt_ms[@]}" | median | awk -v o=$OUTSIDE_SECONDS '{ print int($1 / 1000 * 3) + 2 + 2 * o }')"
say "(b) fresh orders, then dbopt.archive with the writers running (${during_seconds}s of writers)"
fresh_orders
sql -c CHECKPOINT
writer "$during_seconds" during
sleep 2 # the writers reach their steady state before the archive starts
warmed_up="$(date +%s%6N)"
sleep "$OUTSIDE_SECONDS"
measure "SELECT dbopt.version();" \
  "CALL dbopt.archive('orders', 'created_at', '2 years', batch_size => $BATCH, pause => '${BENCH_PAUSE:-20ms}');"
during_ms=$MS
covered=yes
if ! kill -0 "$WRITER_PID" 2>/dev/null; then covered=no; fi
writer_wait
during_rc=$WRITER_RC
read -r during_p50 during_p99 during_max during_n <<<"$(latency during inside "$T_START" "$T_END")"
read -r outside_p50 outside_p99 outside_max outside_n <<<"$(latency during outside "$T_START" "$T_END" "$warmed_up")"
read -r during_done during_failed during_aborted <<<"$(outcome during)"
read -r status batches moved logged_rate error <<<"$(last_run)"
read -r hot archived <<<"$(counts)"
both="$(sql -At -c "SELECT count(*) FROM orders JOIN orders_archive USING (id)")"
under_rate="$(awk -v n="$archived" -v ms="$during_ms" 'BEGIN { printf "%.1f", n / (ms / 1000) }')"

# pgbench's own words whenever a run had errors, rather than only our count of them.
for run in "alone $alone_rc" "during $during_rc"; do
  read -r name rc <<<"$run"
  if [ "$rc" != 0 ] || [ "$(outcome "$name" | awk '{ print $2 + $3 }')" != 0 ]; then
    echo "  the writers' run '$name' had errors (exit $rc):"
    grep -v '^progress' "$WORK/$name.out" | sed 's/^/    /'
  fi
done

##### summary ########################################################################################
say "summary: archiving $HALF of $ROWS rows, batch_size $BATCH (median of $RUNS runs each)"
report "rows moved per second" "$dbopt_rate" "$base_rate" "rows/s" ">= 0.6"
report "WAL bytes per row moved" "$dbopt_wal" "$base_wal" "B" "(info)"
echo "  baseline: one INSERT ... SELECT and one DELETE in a single transaction"
say "summary: dbopt.archive (pause ${BENCH_PAUSE:-20ms}) with $WRITER_CLIENTS pgbench clients writing $WRITER_RATE tps in all"
awk -v n="$archived" -v ms="$during_ms" -v r="$under_rate" -v b="$dbopt_rate" \
  'BEGIN { printf "  archive under writers      %d rows in %.1f s: %.0f rows/s (%.2f of its rate without writers)\n", n, ms / 1000, r, r / b }'
echo "  (dbopt.archive_runs: status $status, $batches batches, $moved rows${error:+, error: $error})$(
  [ "$archived" = "$HALF" ] || echo " MISMATCH: $HALF rows should have moved")"
printf '  writer p99 during archive %8.2f ms  (p50 %.2f ms, max %.2f ms, %d transactions)\n' \
  "$during_p99" "$during_p50" "$during_max" "$during_n"
printf '  ... before and after it   %8.2f ms  (p50 %.2f ms, max %.2f ms, %d transactions, same run)\n' \
  "$outside_p99" "$outside_p50" "$outside_max" "$outside_n"
printf '  ... in a run without it   %8.2f ms  (p50 %.2f ms, max %.2f ms, %d transactions)\n' \
  "$alone_p99" "$alone_p50" "$alone_max" "$alone_n"
awk -v d="$during_p99" -v o="$outside_p99" -v a="$alone_p99" \
  'BEGIN { printf "  p99 ratio during/without  %8.2f     target <= 2 (%.2f against the separate run)\n", d / o, d / a }'
echo "  writer errors: during archive $during_failed failed transactions, $during_aborted aborted clients, exit $during_rc;" \
  "without $alone_failed failed, $alone_aborted aborted, exit $alone_rc   target 0"
if [ "$covered" = no ]; then
  echo "  WARNING: the writers ended before the archive did; the p99 during covers only part of it"
fi
echo "  rows: $ROWS + inserted by the writers $during_done = $((ROWS + during_done)); orders $hot + archive $archived" \
  "= $((hot + archived)) ($([ $((hot + archived)) = $((ROWS + during_done)) ] && echo match || echo MISMATCH))"
echo "  ids in both orders and orders_archive: $both ($([ "$both" = 0 ] && echo ok || echo "NOT OK"))"
