# Shared by scripts/demo.sh and scripts/test.sh. Every step checks first and is quick when done.
set -euo pipefail

# cargo may be installed by rustup without being on a non-login shell's PATH.
if [ -d "$HOME/.cargo/bin" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
PG_CONFIG="${PG_CONFIG:-/usr/bin/pg_config}"
PGRX_VERSION=0.18.1
APT_PACKAGES=(
  "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" "postgresql-$PG_MAJOR-cron"
  "postgresql-$PG_MAJOR-partman" libclang-dev clang sudo pkg-config libssl-dev
)

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_apt_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_cargo_pgrx() {
  if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    say "installing cargo-pgrx $PGRX_VERSION (about 13 minutes on 2 cores)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
  fi
}

ensure_pgrx_init() {
  local config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
  if ! grep -qs "^pg$PG_MAJOR = \"$PG_CONFIG\"" "$config"; then
    say "pointing pgrx at $PG_CONFIG"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" >/dev/null
  fi
}

setup() {
  ensure_apt_packages
  ensure_cargo_pgrx
  ensure_pgrx_init
}

# Builds dbopt and installs it into the PostgreSQL that $PG_CONFIG describes.
install_dbopt() {
  say "building and installing dbopt into $("$PG_CONFIG" --pkglibdir)"
  local flags=(--pg-config "$PG_CONFIG")
  if [ -n "${DBOPT_RELEASE:-}" ]; then flags+=(--release); fi
  if [ "$(id -u)" != 0 ]; then flags+=(--sudo); fi
  (cd "$REPO" && cargo pgrx install "${flags[@]}")
}

# A directory the postgres user owns, for a cluster's data and sockets.
server_user_dir() {
  mkdir -p "$1"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$1"; fi
}

as_server_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A PostgreSQL of our own: data and Unix socket in DIR, no TCP, pg_stat_statements and pg_cron
# preloaded (pg_cron serving DATABASE, which is created; with no TCP its jobs run in background
# workers). Any earlier server in DIR is replaced.
start_throwaway_server() {
  local dir="$1" port="$2" database="$3" bindir
  bindir="$("$PG_CONFIG" --bindir)"
  stop_throwaway_server "$dir" quietly
  rm -rf "$dir"
  server_user_dir "$dir"
  say "starting a throwaway PostgreSQL $PG_MAJOR in $dir (port $port, Unix socket only)"
  as_server_user "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale C.UTF-8 \
    --no-sync --no-instructions >/dev/null
  cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_stat_statements,pg_cron'
cron.database_name = '$database'
cron.use_background_workers = on
max_worker_processes = 16
shared_buffers = '512MB'
maintenance_work_mem = '256MB'
max_wal_size = '4GB'
CONF
  as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
  "$bindir/createdb" -h "$dir" -p "$port" -U postgres "$database"
}

stop_throwaway_server() {
  local dir="$1"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_server_user "$("$PG_CONFIG" --bindir)/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1 || true
    if [ -z "${2:-}" ]; then say "stopped the throwaway server in $dir"; fi
  fi
}

# Makes the throwaway server in DIR (reached at URL) load a copy of dbopt.so taken now. Tests and
# other builds install into the same $libdir, rewriting dbopt.so in place, which kills any backend
# that has it mapped (SIGBUS) in the middle of a measurement. module_pathname is 'dbopt', so
# dynamic_library_path picks the copy.
pin_dbopt_library() {
  local dir="$1" url="$2"
  mkdir -p "$dir/lib"
  cp "$("$PG_CONFIG" --pkglibdir)/dbopt.so" "$dir/lib/"
  psql "$url" -X -q -c "ALTER SYSTEM SET dynamic_library_path = '$dir/lib:\$libdir'" \
    -c "SELECT pg_reload_conf()" >/dev/null
  until [ "$(psql "$url" -X -At -c 'SHOW dynamic_library_path')" = "$dir/lib:\$libdir" ]; do
    sleep 0.1
  done
}

# A benchmark's server: builds and installs dbopt, starts a throwaway server in DIR (port PORT,
# database DB) loading its own copy of dbopt.so, and sets URL, PGBENCH and WORK (a scratch
# directory). On exit the server stops, WORK goes, and a background pgbench writer whose pid is
# in WRITER_PID is killed.
start_bench_server() {
  DIR="$1" PORT="$2" DB="$3"
  setup
  install_dbopt
  start_throwaway_server "$DIR" "$PORT" "$DB"
  WORK="$(mktemp -d)" WRITER_PID=
  trap stop_bench_server EXIT
  URL="$(throwaway_server_url "$DIR" "$PORT" "$DB")"
  PGBENCH="$("$PG_CONFIG" --bindir)/pgbench"
  pin_dbopt_library "$DIR" "$URL"
}

stop_bench_server() {
  if [ -n "${WRITER_PID:-}" ]; then kill "$WRITER_PID" 2>/dev/null || true; fi
  stop_throwaway_server "$DIR"
  rm -rf "$WORK"
}

throwaway_server_url() {
  echo "postgresql://postgres@/$3?host=$1&port=$2"
}
