#!/usr/bin/env bash
# N `triage serve` replicas sharing one PostgreSQL behind Debian's nginx, on loopback: compose.yaml for a
# machine without containers (tests/test_replicas.py runs it).
#
#   TRIAGE_DATABASE_URL=postgresql://user:pass@host:5432/db deploy/run-local.sh [--replicas N] [--port 8080] \
#       [--first-replica-port 8101] [--state DIR]
#
# Replica k (1..N) is named replica-k (TRIAGE_REPLICA_NAME) and listens on 127.0.0.1:<first-replica-port + k - 1>;
# nginx listens on 127.0.0.1:<port>. Every other TRIAGE_* setting is passed to the replicas as it is.
# Runs in the foreground until SIGTERM or Ctrl+C, then stops nginx and the replicas. In DIR (default
# ${TMPDIR:-/tmp}/triage-replicas): replica-k.pid, replica-k.log, nginx.conf, nginx.pid, nginx-access.log.
# TRIAGE_BIN and NGINX_BIN override the programs (default: .venv/bin/triage when there, else triage; nginx).
set -euo pipefail

DEPLOY=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$DEPLOY")
REPLICAS=2
PORT=8080
FIRST_PORT=8101
STATE=${TMPDIR:-/tmp}/triage-replicas

die() { echo "run-local: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --replicas) REPLICAS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --first-replica-port) FIRST_PORT=$2; shift 2 ;;
    --state) STATE=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ "$REPLICAS" -ge 1 ] 2>/dev/null || die "--replicas must be a number of at least 1"
case "${TRIAGE_DATABASE_URL:-}" in
  postgresql://*|postgres://*) ;;
  *) die "set TRIAGE_DATABASE_URL to a postgresql:// URL: replicas share one PostgreSQL (SQLite is one machine's file)" ;;
esac

if [ -n "${TRIAGE_BIN:-}" ]; then TRIAGE=$TRIAGE_BIN
elif [ -x "$REPO/.venv/bin/triage" ]; then TRIAGE=$REPO/.venv/bin/triage
else TRIAGE=$(command -v triage) || die "no triage command (pip install . first, or set TRIAGE_BIN)"
fi
NGINX=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || die "no nginx (Debian: apt-get install nginx; or set NGINX_BIN)"

mkdir -p "$STATE/tmp"
STATE=$(cd "$STATE" && pwd)

pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap stop EXIT
trap 'exit 0' INT TERM

servers=""
for k in $(seq 1 "$REPLICAS"); do
  port=$((FIRST_PORT + k - 1))
  servers+="        server 127.0.0.1:$port max_fails=3 fail_timeout=5s;"$'\n'
  TRIAGE_REPLICA_NAME=replica-$k "$TRIAGE" serve --host 127.0.0.1 --port "$port" >"$STATE/replica-$k.log" 2>&1 &
  pids+=($!)
  echo $! >"$STATE/replica-$k.pid"
done

# Debian's nginx runs its workers as www-data when started as root: they could not reach a private state folder.
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user root;"
cat >"$STATE/nginx.conf" <<CONF
# Written by deploy/run-local.sh: the upstream of nginx/triage.conf with the local replicas.
$user_line
worker_processes 1;
pid $STATE/nginx.pid;
error_log $STATE/nginx-error.log warn;
events { worker_connections 1024; }
http {
    map \$http_x_request_id \$triage_request_id {
        ""      \$request_id;
        default \$http_x_request_id;
    }
    log_format triage '\$remote_addr [\$time_iso8601] "\$request" \$status \$request_time '
                      'upstream=\$upstream_addr upstream_status=\$upstream_status request_id=\$triage_request_id';
    access_log $STATE/nginx-access.log triage;
    client_body_temp_path $STATE/tmp/body;
    proxy_temp_path $STATE/tmp/proxy;
    fastcgi_temp_path $STATE/tmp/fastcgi;
    uwsgi_temp_path $STATE/tmp/uwsgi;
    scgi_temp_path $STATE/tmp/scgi;
    upstream triage {
$servers    }
    server {
        listen 127.0.0.1:$PORT;
        include $DEPLOY/nginx/triage-proxy.conf;
    }
}
CONF
# -e: the error log before the config is read (Debian's default, /var/log/nginx, may not be writable).
"$NGINX" -t -q -p "$STATE" -e "$STATE/nginx-error.log" -c "$STATE/nginx.conf" || die "bad nginx config; see $STATE/nginx-error.log"
"$NGINX" -p "$STATE" -e "$STATE/nginx-error.log" -c "$STATE/nginx.conf" -g "daemon off;" &
pids+=($!)
echo "run-local: $REPLICAS replicas behind http://127.0.0.1:$PORT (state in $STATE)" >&2
wait
