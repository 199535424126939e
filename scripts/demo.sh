#!/usr/bin/env bash
# The main job: build and install dbopt, start a throwaway PostgreSQL 15 of its own (unless
# DATABASE_URL names a server), load the demo data and run each demo step in sql/demo/ in order.
#
#   DATABASE_URL=...      use this server instead (it must be this machine's PostgreSQL, where
#                         dbopt gets installed); the demo (re)creates schema dbopt_demo there
#   DBOPT_DEMO_KEEP=1     leave the throwaway server running at the end, to explore it with psql
#   DBOPT_DEMO_DIR, DBOPT_DEMO_PORT   where the throwaway server lives (default /tmp/dbopt-demo, 54329)
#   DBOPT_RELEASE=1       build dbopt in release mode
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

setup
install_dbopt

DEMO_DIR="${DBOPT_DEMO_DIR:-/tmp/dbopt-demo}"
DEMO_PORT="${DBOPT_DEMO_PORT:-54329}"

sql() { psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -P pager=off "$@"; }

if [ -z "${DATABASE_URL:-}" ]; then
  start_throwaway_server "$DEMO_DIR" "$DEMO_PORT" dbopt_demo
  if [ -z "${DBOPT_DEMO_KEEP:-}" ]; then trap 'stop_throwaway_server "$DEMO_DIR"' EXIT; fi
  DATABASE_URL="$(throwaway_server_url "$DEMO_DIR" "$DEMO_PORT" dbopt_demo)"
else
  say "using the server at DATABASE_URL"
fi

# pg_stat_statements and pg_cron make more of dbopt available; the demo goes on without them.
for ext in pg_stat_statements pg_cron; do
  sql -c "CREATE EXTENSION IF NOT EXISTS $ext" 2>/dev/null \
    || say "$ext is not available on this server: dbopt.environment() below says what it needs"
done

for step in "$REPO"/sql/demo/[0-9][0-9]_*.sql; do
  say "demo step $(basename "$step")"
  sql -f "$step"
done

say "demo finished"
if [ -n "${DBOPT_DEMO_KEEP:-}" ] && [ -f "$DEMO_DIR/data/postmaster.pid" ]; then
  echo "The demo server is still running:  psql '$DATABASE_URL'"
  echo "Stop it with:  runuser -u postgres -- $("$PG_CONFIG" --bindir)/pg_ctl -D $DEMO_DIR/data stop"
fi
