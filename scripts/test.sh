#!/usr/bin/env bash
# The tests: every tier, from a fresh machine or an already set-up one.
#   1. plain #[test]s (pure logic) and #[pg_test]s (inside a test server), via cargo pgrx test
#   2. pgrx-tests/: live-server tests against throwaway clusters (COMMIT, sessions, crashes, pg_cron)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

setup
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

say "checking formatting"
cargo fmt --all --check

say "tier 1: unit tests and #[pg_test]s (cargo pgrx test pg$PG_MAJOR, run by the postgres user)"
PGRX_TEST_DATA="${PGRX_TEST_DATA:-${TMPDIR:-/tmp}/dbopt-pgrx-test-data}"
server_user_dir "$PGRX_TEST_DATA"
cargo pgrx test "pg$PG_MAJOR" --runas postgres --pgdata "$PGRX_TEST_DATA" 2>&1 | tee -a "$LOG"

# cargo pgrx test installed its own build (with the test schema); the live tier gets the real one.
install_dbopt

say "tier 2: live-server tests (pgrx-tests/)"
cargo test -p dbopt-integration-tests --tests -- --test-threads=2 2>&1 | tee -a "$LOG"

# One closing line for all tiers.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "dbopt: %d passed, %d failed\n", passed, failed }' "$LOG"
