#!/usr/bin/env node
// Finds every *.test.ts under src/ and test/ and runs them with Node's own test runner (through tsx).
// Node 20's `--test` takes no glob patterns, hence this list. Extra arguments narrow the set:
//   node scripts/run-tests.mjs vault      -> only files whose path contains "vault"
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (name === 'node_modules') return [];
    return statSync(p).isDirectory() ? walk(p) : name.endsWith('.test.ts') ? [p] : [];
  });
}
const filters = process.argv.slice(2);
const files = ['src', 'test']
  .flatMap((d) => walk(path.join(root, d)))
  .map((f) => path.relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error(`No test files match ${filters.join(' ')}`);
  process.exit(1);
}
const concurrency = process.env.JUNIPER_TEST_CONCURRENCY ?? '2';
const child = spawn(
  process.execPath,
  // --test-force-exit: a test file whose before hook failed can leave a peer (a server, a timer) holding its
  // event loop; without it that file never ends and the whole run hangs instead of reporting the failure.
  // test-drain-exit.mjs keeps that forced exit from losing the file's last verdicts on the way to this report, and
  // the runner's own forced exit from losing the end of the report (--require: the runner loads no --import).
  ['--import', 'tsx', '--require', path.join(root, 'scripts/test-drain-exit.mjs'), '--test', '--test-force-exit', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
  { cwd: root, stdio: 'inherit' },
);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
