#!/usr/bin/env bash
# The whole test suite (`npm test`): installs the Debian packages the real peers need, type-checks, lints,
# starts a private PostgreSQL cluster, runs every test file (unit, integration against real peers, browser)
# and stops what it started. Extra arguments narrow the test files: `npm test -- vault`.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=$(mktemp -d "${TMPDIR:-/tmp}/juniper-test.XXXXXX"); chmod 755 "$WORK"
cleanup() { [ -d "$WORK/pg" ] && { bash scripts/peers/postgres-stop.sh "$WORK/pg" || true; }; rm -rf "$WORK"; }
trap cleanup EXIT

# The checks do not depend on each other (the build emits dist/ for the processes the tests start; type-checking
# emits the compiled tests; linting reads the sources), and each is one single-threaded process: side by side
# they take the time of the longest instead of the sum, on two cores. The tests need the first three (and
# PostgreSQL), not the lint: it goes on beside the tests, which leave CPU idle while they wait on their peers,
# and its verdict is printed and counted once they end. The build is incremental (package.json): right after
# `npm install` (whose prepare step built dist/) it only confirms that nothing changed. PostgreSQL starts as soon
# as its package is there, not after the checks.
echo "== peers' Debian packages and PostgreSQL, build and typecheck, lint (side by side)"
checks=(deps build typecheck)
{ bash scripts/install-test-deps.sh && bash scripts/peers/postgres-start.sh "$WORK/pg" "$(node scripts/free-port.mjs)" >"$WORK/pg.url"; } >"$WORK/deps.log" 2>&1 & pids=($!)
npm run build >"$WORK/build.log" 2>&1 & pids+=($!)
npx tsc -p tsconfig.test.json >"$WORK/typecheck.log" 2>&1 & pids+=($!)
npx eslint --max-warnings 0 . >"$WORK/lint.log" 2>&1 & lint=$!
failed=()
for i in "${!checks[@]}"; do
  status=0; wait "${pids[$i]}" || status=$?
  echo "== ${checks[$i]}$([ "$status" = 0 ] || echo " FAILED (exit $status)")"
  # The build's own output is npm's banner: shown only when it failed.
  if [ "${checks[$i]}" != build ] || [ "$status" != 0 ]; then cat "$WORK/${checks[$i]}.log"; fi
  [ "$status" = 0 ] || failed+=("${checks[$i]}")
done
lint_verdict() {
  local status=0; wait "$lint" || status=$?
  echo "== lint$([ "$status" = 0 ] || echo " FAILED (exit $status)")"
  cat "$WORK/lint.log"
  return "$status"
}
if [ ${#failed[@]} -ne 0 ]; then
  lint_verdict || failed+=(lint)
  echo "Failed: ${failed[*]}" >&2; exit 1
fi

export JUNIPER_TEST_PG_URL
JUNIPER_TEST_PG_URL=$(cat "$WORK/pg.url")
export JUNIPER_TEST_WORK="$WORK"
echo "PostgreSQL for tests: $JUNIPER_TEST_PG_URL"

echo "== tests (checks took ${SECONDS} s; lint goes on beside them)"
status=0; node scripts/run-tests.mjs "$@" || status=$?
lint_verdict || { echo "Failed: lint" >&2; [ "$status" != 0 ] || status=1; }
exit "$status"
