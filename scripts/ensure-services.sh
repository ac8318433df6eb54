#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer at DATABASE_URL / REDIS_URL, then create the database.
#
# A server that is down on this machine is started; on Debian/Ubuntu as root it is first installed
# from the distribution's packages (postgresql, redis-server) if missing. Anywhere else the script
# says exactly what to do and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/analytics}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
say() { printf '[services] %s\n' "$*"; }

# host and port of a URL, with a default port
read -r PG_HOST PG_PORT < <(python3 - "$DATABASE_URL" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or 5432)
PY
)
read -r REDIS_HOST REDIS_PORT < <(python3 - "$REDIS_URL" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or 6379)
PY
)

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
is_local() { [[ "$1" == 127.* || "$1" == localhost || "$1" == ::1 ]]; }
can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
wait_for() {  # host port name
  for _ in $(seq 1 60); do listening "$1" "$2" && return 0; sleep 0.5; done
  say "$3 did not start listening on $1:$2 within 30 s; check its log (PostgreSQL: /var/log/postgresql/, Redis: /var/log/redis/)"
  exit 1
}
APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Returns 0 when NAME answers at HOST:PORT, 1 when this script may install and start it here; otherwise says what
# to start (HINT) or which variable (VARIABLE) to point elsewhere, and exits.
already_up() {
  local name=$1 host=$2 port=$3 hint=$4 variable=$5
  if listening "$host" "$port"; then say "$name is up at $host:$port"; return 0; fi
  if ! is_local "$host" || ! can_install; then
    say "$name is not answering at $host:$port. Start it ($hint), or set $variable."
    exit 1
  fi
  return 1
}

ensure_postgres() {
  already_up PostgreSQL "$PG_HOST" "$PG_PORT" \
    "e.g. 'docker compose up -d postgres', or 'sudo apt-get install postgresql && sudo pg_ctlcluster <version> main start'" \
    DATABASE_URL && return
  if ! ls /etc/postgresql/*/main/postgresql.conf >/dev/null 2>&1; then
    say "installing PostgreSQL from the distribution's packages"
    apt_install postgresql
    # Local development server only: let the default URL (user postgres, no password) in over TCP,
    # on the port DATABASE_URL names.
    local hba conf
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
    conf=$(ls /etc/postgresql/*/main/postgresql.conf | head -n 1)
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    sed -i "s/^port = .*/port = $PG_PORT/" "$conf"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main stop 2>/dev/null || true
  fi
  local version; version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for "$PG_HOST" "$PG_PORT" PostgreSQL
  say "PostgreSQL is up at $PG_HOST:$PG_PORT"
}

ensure_redis() {
  already_up Redis "$REDIS_HOST" "$REDIS_PORT" \
    "e.g. 'docker compose up -d redis', or 'sudo apt-get install redis-server && sudo systemctl start redis-server'" \
    REDIS_URL && return
  if ! command -v redis-server >/dev/null 2>&1; then
    say "installing Redis from the distribution's packages"
    apt_install redis-server
  fi
  say "starting Redis on port $REDIS_PORT"
  mkdir -p /var/lib/redis /var/log/redis
  # Hot metrics are a cache of the marts: nothing to persist.
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/analyticspro.log
  wait_for "$REDIS_HOST" "$REDIS_PORT" Redis
  say "Redis is up at $REDIS_HOST:$REDIS_PORT"
}

ensure_postgres
ensure_redis
if [ -x .venv/bin/analyticspro ]; then
  .venv/bin/analyticspro setup   # creates the database named in DATABASE_URL if it is missing
fi
