#!/usr/bin/env bash
# What calling dbopt's foundation functions costs, against plain SQL doing the same catalog
# lookups, both measured in this run on a throwaway server (so the ratios, not the absolute
# figures, are what to compare across machines).
#
#   BENCH_SECONDS=5   length of each pgbench run
#   DBOPT_RELEASE=1   benchmark a release build (recommended)
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO"

setup
install_dbopt

DIR=/tmp/dbopt-bench PORT=54330 DB=bench SECONDS_EACH="${BENCH_SECONDS:-5}"
start_throwaway_server "$DIR" "$PORT" "$DB"
trap 'stop_throwaway_server "$DIR"' EXIT
URL="$(throwaway_server_url "$DIR" "$PORT" "$DB")"
PGBENCH="$("$PG_CONFIG" --bindir)/pgbench"
psql "$URL" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION dbopt; CREATE EXTENSION pg_stat_statements; CREATE EXTENSION pg_cron"

WORK="$(mktemp -d)"
# Mean latency in ms of one statement, one client, SECONDS_EACH seconds.
latency() {
  printf '%s\n' "$1" >"$WORK/script.sql"
  "$PGBENCH" -n -c 1 -T "$SECONDS_EACH" -f "$WORK/script.sql" "$URL" 2>/dev/null \
    | awk '/latency average/ {print $4}'
}

compare() {
  local label="$1" baseline_sql="$2" dbopt_sql="$3" base ours
  base="$(latency "$baseline_sql")"
  ours="$(latency "$dbopt_sql")"
  awk -v l="$label" -v b="$base" -v o="$ours" \
    'BEGIN { printf "%-34s baseline %8.3f ms   dbopt %8.3f ms   ratio %5.2f\n", l, b, o, o / b }'
}

say "latency per call (mean over ${SECONDS_EACH}s each, 1 client)"
compare "dbopt.version()" \
  "SELECT extversion FROM pg_extension WHERE extname = 'dbopt';" \
  "SELECT dbopt.version();"
compare "dbopt.environment(), all ready" \
  "SELECT x.extname, x.extversion, current_setting('shared_preload_libraries') FROM pg_extension x WHERE x.extname IN ('pg_stat_statements', 'pg_cron');" \
  "SELECT * FROM dbopt.environment();"
psql "$URL" -X -q -c "DROP EXTENSION pg_cron"
compare "dbopt.environment(), one missing" \
  "SELECT e.name, x.extversion FROM pg_available_extensions e LEFT JOIN pg_extension x ON x.extname = e.name WHERE e.name IN ('pg_stat_statements', 'pg_cron');" \
  "SELECT * FROM dbopt.environment();"
compare "CREATE + DROP EXTENSION" \
  "BEGIN; CREATE EXTENSION pgstattuple; DROP EXTENSION pgstattuple; COMMIT;" \
  "BEGIN; DROP EXTENSION dbopt; CREATE EXTENSION dbopt; COMMIT;"
rm -rf "$WORK"
