#!/usr/bin/env bash
# Stops the Dovecot started by dovecot-start.sh WORKDIR, by its master pid (never by process name: other
# test runs may have their own Dovecot). The master takes its children down with it.
set -uo pipefail
W=${1:?usage: dovecot-stop.sh WORKDIR}
PID=$(cat "$W/run/master.pid" 2>/dev/null) || exit 0
# A zombie (exited, not yet reaped by a PID 1 that reaps slowly, as in some containers) counts as stopped.
alive() { kill -0 "$PID" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$PID/stat" 2>/dev/null)" != Z ]; }
kill "$PID" 2>/dev/null || exit 0
i=0
while alive; do
  i=$((i + 1))
  if [ $i -ge 50 ]; then
    echo "dovecot $PID did not stop within 5 s, killing it" >&2
    kill -KILL "$PID" 2>/dev/null
    break
  fi
  sleep 0.1
done
rm -f "$W/run/master.pid"
