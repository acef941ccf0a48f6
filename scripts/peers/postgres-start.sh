#!/usr/bin/env bash
# Starts a private, throw-away PostgreSQL cluster (Debian's postgresql package) for the tests.
# usage: postgres-start.sh WORKDIR PORT   -> prints the DATABASE_URL; stop with postgres-stop.sh WORKDIR
# Trust auth on 127.0.0.1 only, fsync off: it holds test data, nothing else. As root, PostgreSQL refuses
# to run as root, so initdb/pg_ctl run as Debian's `postgres` system user.
set -euo pipefail
W=$(mkdir -p "${1:?usage: postgres-start.sh WORKDIR PORT}" && cd "$1" && pwd)
PORT=${2:?usage: postgres-start.sh WORKDIR PORT}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$BIN" ] || { echo "PostgreSQL server is not installed: run scripts/install-test-deps.sh (or apt-get install -y postgresql)" >&2; exit 1; }
as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then
  chmod 755 "$W"; chown postgres "$W"
  # A parent made by mktemp -d is 0700: initdb would fail with a bare "Permission denied".
  runuser -u postgres -- test -x "$W" || { echo "PostgreSQL runs as the postgres user here, who cannot reach $W: make its parent directories traversable (chmod 755)" >&2; exit 1; }
fi
[ -f "$W/data/PG_VERSION" ] || as "$BIN/initdb" -D "$W/data" -A trust -U postgres -E UTF8 >"$W/initdb.log" 2>&1 ||
  { cat "$W/initdb.log" >&2; exit 1; }
as "$BIN/pg_ctl" -D "$W/data" -l "$W/postgres.log" -w -t 30 \
  -o "-p $PORT -k $W -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null || { tail -20 "$W/postgres.log" >&2; exit 1; }
echo "postgres://postgres@127.0.0.1:$PORT/postgres"
