#!/usr/bin/env node
// Finds every *.test.ts under src/ and test/ and runs them with Node's own test runner, from their compiled copies:
// tsconfig.test.json compiles src/, test/, bench/ and scripts/ into dist-test/ first (incrementally: a few seconds
// when nothing changed). Under tsx each test process, parse worker and child process paid about 1.5 s of CPU to
// load the sources through Node 20's off-thread loader; on two cores that was a third of the suite's time.
// Node 20's `--test` takes no glob patterns, hence this list. Extra arguments narrow the set:
//   node scripts/run-tests.mjs vault      -> only files whose path contains "vault"
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (name === 'node_modules') return [];
    return statSync(p).isDirectory() ? walk(p) : name.endsWith('.test.ts') ? [p] : [];
  });
}
// The longest files start first (wall time measured in a full run, longest first): started last, one of them
// would run on alone at the end while the other slots sit idle. The rest follow in path order.
const LONGEST = [
  'test/integration/bench-quick.test.ts',
  'test/integration/cli.test.ts',
  'test/integration/settings-cli.test.ts',
  'test/integration/incoming-cli.test.ts',
  'test/integration/crash-safety-incoming.test.ts',
  'test/integration/serve-workers.test.ts',
  'test/integration/crash-safety-outgoing.test.ts',
  'test/integration/incoming-crash.test.ts',
  'test/integration/vault-key-lost.test.ts',
  'test/integration/incoming-poison-fetch.test.ts',
  'test/integration/outages.test.ts',
  'test/integration/incoming-poison.test.ts',
  'test/integration/account-api-keys.test.ts',
  'test/e2e/ui-walkthrough.test.ts',
  'test/integration/doctor-cli.test.ts',
  'test/integration/access-matrix.test.ts',
  'test/integration/outlook-app-problem.test.ts',
  'test/integration/mass-mailing-restore.test.ts',
  'test/integration/proxy.test.ts',
];
const COMPILED = 'dist-test';
const rank = (f) => (LONGEST.includes(f) ? LONGEST.indexOf(f) : LONGEST.length);
const filters = process.argv.slice(2);
const files = ['src', 'test']
  .flatMap((d) => walk(path.join(root, d)))
  .map((f) => path.relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
if (files.length === 0) {
  console.error(`No test files match ${filters.join(' ')}`);
  process.exit(1);
}
const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.test.json'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error('The sources do not compile (tsconfig.test.json): no test ran.');
  process.exit(1);
}
const compiled = files.map((f) => path.join(COMPILED, f.replace(/\.ts$/, '.js')));
// Files at once. Most of a file's time is spent waiting on its peers, processes, leases and timers, not on CPU.
const concurrency = process.env.JUNIPER_TEST_CONCURRENCY ?? '3';
// Each file's process writes its wall time here (scripts/test-times.mjs); the slowest are printed at the end.
const timesDir = mkdtempSync(path.join(os.tmpdir(), 'juniper-test-times-'));
const times = path.join(timesDir, 'times.tsv');
const child = spawn(
  process.execPath,
  // --test-force-exit: a test file whose before hook failed can leave a peer (a server, a timer) holding its
  // event loop; without it that file never ends and the whole run hangs instead of reporting the failure.
  // test-drain-exit.mjs keeps that forced exit from losing the file's last verdicts on the way to this report, and
  // the runner's own forced exit from losing the end of the report (--require: the runner loads no --import).
  ['--require', path.join(root, 'scripts/test-drain-exit.mjs'), '--require', path.join(root, 'scripts/test-times.mjs'), '--import', pathToFileURL(path.join(root, 'scripts/test-password-cost.mjs')).href, '--test', '--test-force-exit', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...compiled],
  { cwd: root, stdio: 'inherit', env: { ...process.env, JUNIPER_TEST_TIMES: times } },
);
child.on('exit', (code, signal) => {
  printSlowest();
  rmSync(timesDir, { recursive: true, force: true });
  process.exit(code ?? (signal ? 1 : 0));
});

function printSlowest() {
  let rows;
  try {
    rows = readFileSync(times, 'utf8').trim().split('\n').map((l) => l.split('\t')).map(([ms, cpu, kids, f]) => ({ ms: Number(ms), cpu: Number(cpu), kids: Number(kids), f }));
  } catch {
    return; // no file ended normally
  }
  rows.sort((a, b) => b.ms - a.ms);
  // JUNIPER_TEST_TIMES_KEEP=file keeps every file's line (to find where the suite's CPU goes).
  if (process.env.JUNIPER_TEST_TIMES_KEEP) copyFileSync(times, process.env.JUNIPER_TEST_TIMES_KEEP);
  const sum = (k) => (rows.reduce((s, r) => s + r[k], 0) / 1000).toFixed(0);
  console.log(
    `\nslowest test files (wall time of each file's process, its own CPU time and that of the processes it started; ${rows.length} files, ${sum('ms')} s in all, ${sum('cpu')} s CPU, ${sum('kids')} s their processes' CPU, concurrency ${concurrency}):`,
  );
  const s = (ms) => (ms / 1000).toFixed(1).padStart(6);
  for (const r of rows.slice(0, 12)) console.log(`${s(r.ms)} s ${s(r.cpu)} s CPU ${s(r.kids)} s processes' CPU  ${r.f}`);
}
