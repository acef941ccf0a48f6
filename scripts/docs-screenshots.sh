#!/usr/bin/env bash
# Re-takes the screenshots of docs/walkthrough.md: runs the browser walk-through of the seed procedure (the same
# test npm test runs, against the test peers) and copies its screenshots into docs/img/walkthrough/.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf test-artifacts/e2e-walkthrough
bash scripts/test.sh test/e2e/ui-walkthrough
mkdir -p docs/img/walkthrough
rm -f docs/img/walkthrough/*.png
cp test-artifacts/e2e-walkthrough/*.png docs/img/walkthrough/
echo "docs/img/walkthrough/ updated:"; ls docs/img/walkthrough
