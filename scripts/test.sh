#!/usr/bin/env bash
# The whole test suite (`npm test`): installs the Debian packages the real peers need, type-checks, lints,
# starts a private PostgreSQL cluster, runs every test file (unit, integration against real peers, browser)
# and stops what it started. Extra arguments narrow the test files: `npm test -- vault`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
echo "== build"; npm run build >/dev/null

echo "== typecheck"; npx tsc -p tsconfig.json --noEmit
echo "== lint"; npx eslint --max-warnings 0 .

WORK=$(mktemp -d "${TMPDIR:-/tmp}/juniper-test.XXXXXX"); chmod 755 "$WORK"
cleanup() { bash scripts/peers/postgres-stop.sh "$WORK/pg" || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== starting PostgreSQL"
export JUNIPER_TEST_PG_URL
JUNIPER_TEST_PG_URL=$(bash scripts/peers/postgres-start.sh "$WORK/pg" "$(node scripts/free-port.mjs)")
export JUNIPER_TEST_WORK="$WORK"
echo "PostgreSQL for tests: $JUNIPER_TEST_PG_URL"

echo "== tests"
node scripts/run-tests.mjs "$@"
