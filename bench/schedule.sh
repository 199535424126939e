#!/usr/bin/env bash
# dbopt's background worker against pg_cron (the baseline, measured on the same server in the
# same run): BENCH_JOBS jobs every minute and one every 5 seconds in each of two databases, one
# served by pg_cron and one by dbopt's worker, for BENCH_MINUTES minutes. Printed: how long after
# its due time each run started (targets: the worker's median under 1.5 s, and its 5-second job
# keeping its interval; pg_cron before 1.5 has no 5-second jobs), how long the runs took, and the CPU time the worker's scheduler process
# used while idle and while dispatching.
#
#   BENCH_JOBS=20      every-minute jobs per database
#   BENCH_MINUTES=3    how long to let them run
#   DBOPT_RELEASE=1    benchmark a release build (recommended)
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO"

JOBS="${BENCH_JOBS:-20}"
MINUTES="${BENCH_MINUTES:-3}"
DIR=/tmp/dbopt-bench-schedule
start_bench_server "$DIR" 54335 bench
WORKER_URL="$(throwaway_server_url "$DIR" 54335 bench_worker)"
BINDIR="$("$PG_CONFIG" --bindir)"

say "preloading dbopt, its worker serving database bench_worker (pg_cron serves bench)"
# dbopt's settings exist for ALTER SYSTEM once the library is loaded in the session.
psql "$URL" -X -q -c "LOAD 'dbopt'" \
  -c "ALTER SYSTEM SET shared_preload_libraries = pg_stat_statements, pg_cron, dbopt" \
  -c "ALTER SYSTEM SET dbopt.worker_databases = 'bench_worker'" \
  -c "ALTER SYSTEM SET max_worker_processes = 64"
as_server_user "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w restart >/dev/null
"$BINDIR/createdb" -h "$DIR" -p 54335 -U postgres bench_worker
psql "$URL" -X -q -c "CREATE EXTENSION dbopt; CREATE EXTENSION pg_cron"
psql "$WORKER_URL" -X -q -c "CREATE EXTENSION dbopt"
until [ -n "$(psql "$URL" -X -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dbopt scheduler'")" ]; do
  sleep 1
done
SCHEDULER_PID="$(psql "$URL" -X -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dbopt scheduler'")"
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS_PER_SECOND="$(getconf CLK_TCK)"

idle_before="$(cpu_ticks "$SCHEDULER_PID")"
sleep 30
idle_ticks=$(( $(cpu_ticks "$SCHEDULER_PID") - idle_before ))

# Near no-op jobs (no matviews are managed), so the figures are the runners' own costs.
schedule_jobs() {
  psql "$1" -X -q -v ON_ERROR_STOP=1 -v jobs="$JOBS" >/dev/null <<'SQL'
SELECT dbopt.schedule('refresh_matviews', '* * * * *', jsonb_build_object('force', n % 2 = 0))
  FROM generate_series(1, 2) n;
SELECT dbopt.schedule('snapshot_stats', '* * * * *', jsonb_build_object('keep', n || ' days'))
  FROM generate_series(1, :jobs - 2) n;
SQL
}
say "$JOBS jobs every minute in each database, and one every 5 seconds, for $MINUTES minutes"
schedule_jobs "$URL"
schedule_jobs "$WORKER_URL"
# pg_cron before 1.5 has no schedules in seconds (dbopt.schedule refuses them there).
psql "$WORKER_URL" -X -q -c "SELECT dbopt.schedule('refresh_matviews', '5 seconds')" >/dev/null
if psql "$URL" -X -q -c "SELECT dbopt.schedule('refresh_matviews', '5 seconds')" >/dev/null 2>&1; then
  CRON_SECONDS=yes
else
  CRON_SECONDS="no (pg_cron $(psql "$URL" -X -At -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'"))"
fi
busy_before="$(cpu_ticks "$SCHEDULER_PID")"
sleep $(( MINUTES * 60 + 5 ))
busy_ticks=$(( $(cpu_ticks "$SCHEDULER_PID") - busy_before ))

# Per runner: runs, median and max delay of each every-minute run's start after its minute,
# median run time, and the 5-second job's median and max gap between starts.
report() {
  psql "$1" -X -At -F ' ' <<'SQL'
WITH runs AS (
  SELECT r.job_id, r.started_at, r.ended_at, j.cron
    FROM dbopt.job_runs r JOIN dbopt.jobs j USING (job_id)
   WHERE r.outcome = 'ok'),
minute_runs AS (
  SELECT extract(epoch FROM started_at - date_trunc('minute', started_at)) AS delay,
         extract(epoch FROM ended_at - started_at) AS took
    FROM runs WHERE cron = '* * * * *'),
gaps AS (
  SELECT extract(epoch FROM started_at - lag(started_at) OVER (ORDER BY started_at)) AS gap
    FROM runs WHERE cron = '5 seconds')
SELECT (SELECT count(*) FROM minute_runs),
       (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY delay)::numeric, 3) FROM minute_runs),
       (SELECT round(max(delay)::numeric, 3) FROM minute_runs),
       (SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY took)::numeric, 1) FROM minute_runs),
       (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY gap)::numeric, 3) FROM gaps),
       (SELECT round(max(gap)::numeric, 3) FROM gaps);
SQL
}
read -r cron_runs cron_delay cron_max cron_took cron_gap cron_gap_max <<<"$(report "$URL")"
read -r w_runs w_delay w_max w_took w_gap w_gap_max <<<"$(report "$WORKER_URL")"
failed="$(psql "$WORKER_URL" -X -At -c "SELECT count(*) FROM dbopt.job_runs WHERE outcome <> 'ok'")"

printf '\n%-34s %12s %12s %8s\n' "" "pg_cron" "dbopt worker" "ratio"
row() { printf '%-34s %12s %12s %8s\n' "$1" "$2" "$3" "$(awk -v a="$2" -v b="$3" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }')"; }
row "every-minute runs" "$cron_runs" "$w_runs"
row "start after the minute, median s" "$cron_delay" "$w_delay"
row "start after the minute, max s" "$cron_max" "$w_max"
row "run time, median ms" "$cron_took" "$w_took"
row "5-second job: gap, median s" "$cron_gap" "$w_gap"
row "5-second job: gap, max s" "$cron_gap_max" "$w_gap_max"
echo
echo "worker runs not ok: $failed; 5-second job under pg_cron: $CRON_SECONDS"
awk -v i="$idle_ticks" -v b="$busy_ticks" -v hz="$TICKS_PER_SECOND" -v m="$MINUTES" 'BEGIN {
  printf "dbopt scheduler CPU: %.2f s in 30 s idle; %.2f s in %d min dispatching (%.2f%% of a core)\n",
         i / hz, b / hz, m, 100 * b / hz / (m * 60 + 5) }'
