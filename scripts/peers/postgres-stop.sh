#!/usr/bin/env bash
# Stops the cluster started by postgres-start.sh WORKDIR (fast shutdown; the data is throw-away).
set -uo pipefail
W=${1:?usage: postgres-stop.sh WORKDIR}
[ -f "$W/data/postmaster.pid" ] || exit 0
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$BIN/pg_ctl" -D "$W/data" -m fast stop >/dev/null
else "$BIN/pg_ctl" -D "$W/data" -m fast stop >/dev/null; fi
