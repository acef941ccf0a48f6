#!/usr/bin/env bash
# Installs the Debian packages the test suite's real peers need (Dovecot, PostgreSQL, Chromium, openssl).
# Called by scripts/test.sh; safe to run again (only missing packages are installed).
# As root it uses apt-get directly, otherwise sudo -n; when neither works it prints the exact command and fails.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for pkg in dovecot-imapd dovecot-submissiond dovecot-lmtpd postgresql chromium openssl; do
  have "$pkg" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${need[*]}"
if [ "$(id -u)" = 0 ]; then
  run=(bash -c)
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  run=(sudo -n bash -c)
else
  echo "The test suite needs these Debian packages: ${need[*]}" >&2
  echo "Install them with:  sudo bash -c '$cmd'" >&2
  exit 1
fi
echo "Installing test peers from Debian packages: ${need[*]}"
# policy-rc.d keeps apt from starting the system-wide Dovecot/PostgreSQL services: the tests start their own
# private instances on other ports, and a system service is not wanted on a developer's machine.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  "${run[@]}" "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy" && created_policy=1
fi
status=0
"${run[@]}" "$cmd" >/tmp/juniper-apt.log 2>&1 || status=$?
[ "$created_policy" = 1 ] && "${run[@]}" "rm -f $policy"
if [ "$status" != 0 ]; then
  tail -20 /tmp/juniper-apt.log >&2
  echo "Installing ${need[*]} failed (full log: /tmp/juniper-apt.log). Run by hand: sudo bash -c '$cmd'" >&2
  exit "$status"
fi
