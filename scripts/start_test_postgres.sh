#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the decision-store tests and print one line on stdout:
#   TRIAGE_TEST_POSTGRES_URL=postgresql://triage:<password>@127.0.0.1:<port>/triage_test
# Usage: eval "export $(bash scripts/start_test_postgres.sh)"
#
# Idempotent: a server already running from ${TMPDIR:-/tmp}/triage-pg is reused. Installs Debian's
# postgresql package when no initdb can be found. Everything but the URL line goes to stderr; exits
# non-zero with a message when no server can be started. Stop it with
#   pg_ctl -D ${TMPDIR:-/tmp}/triage-pg/data stop   (as the postgres user when run as root)
set -euo pipefail

BASE=${TMPDIR:-/tmp}/triage-pg
DATA=$BASE/data
DB=triage_test
DB_USER=triage
FIRST_PORT=${TRIAGE_TEST_PG_PORT:-55432}

die() { echo "start_test_postgres: $*" >&2; exit 1; }
say() { echo "start_test_postgres: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo -n "$@"
  else return 1
  fi
}

# Debian keeps the server binaries in /usr/lib/postgresql/<version>/bin, off the PATH.
find_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return; fi
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v initdb)"; fi
}

install_postgres() {
  say "no initdb found: installing Debian's postgresql package"
  { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2 \
    || die "cannot install postgresql with apt-get (no root/sudo, or no package registry reachable)"
}

# PostgreSQL refuses to run as root: as root the cluster belongs to the postgres user.
if [ "$(id -u)" -eq 0 ]; then
  OWNER=postgres
  as_owner() { (cd "$BASE" && runuser -u "$OWNER" -- "$@"); }
else
  OWNER=$(id -un)
  as_owner() { (cd "$BASE" && "$@"); }
fi

BIN=$(find_bindir)
if [ -z "$BIN" ]; then
  install_postgres
  BIN=$(find_bindir)
  [ -n "$BIN" ] || die "postgresql is installed but no initdb/pg_ctl was found under /usr/lib/postgresql/*/bin"
fi
id -u "$OWNER" >/dev/null 2>&1 || die "no '$OWNER' user to own the cluster"

mkdir -p "$BASE" && chown "$OWNER" "$BASE" && chmod 700 "$BASE" || die "cannot create $BASE for $OWNER (set TMPDIR)"
as_owner test -w "$BASE" || die "$BASE is not writable by $OWNER (is a parent folder private? set TMPDIR)"

if [ ! -f "$DATA/PG_VERSION" ]; then
  say "creating a cluster in $DATA"
  as_owner sh -c "umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > '$BASE/password'"
  as_owner "$BIN/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$BASE/password" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 \
    || die "initdb failed; see $BASE/initdb.log"
fi
PASSWORD=$(cat "$BASE/password")

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  PORT=$(sed -n 4p "$DATA/postmaster.pid")  # line 4 of postmaster.pid is the port
  say "reusing the server running on port $PORT"
else
  PORT=$FIRST_PORT
  while port_in_use "$PORT"; do
    PORT=$((PORT + 1))
    [ "$PORT" -lt $((FIRST_PORT + 20)) ] || die "no free port in $FIRST_PORT..$((FIRST_PORT + 19))"
  done
  say "starting a server on 127.0.0.1:$PORT"
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$BASE" start >&2 \
    || die "the server did not start; last lines of $BASE/server.log:
$(tail -n 20 "$BASE/server.log" 2>/dev/null)"
fi

psql_admin() { as_owner "$BIN/psql" -h "$BASE" -p "$PORT" -U "$DB_USER" -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  psql_admin -c "CREATE DATABASE $DB" >&2 || die "cannot create database $DB"
fi

echo "TRIAGE_TEST_POSTGRES_URL=postgresql://$DB_USER:$PASSWORD@127.0.0.1:$PORT/$DB"
