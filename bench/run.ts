// Benchmarks, printed as figures measured side by side in one run (never as pass/fail timing tests): each
// compares Juniper with the raw protocol library it wraps, on the same peers in the same run, and prints a
// ratio line last. Figures and their history are in docs/benchmarks.md.
//   npm run bench                 full size (10,000 mails and 5,000 incoming messages per database)
//   npm run bench -- --quick      a small version of each, to prove the benchmark code works (npm test runs it)
//   N=2000 INBOUND=1000 npm run bench   other numbers of outgoing mails and incoming messages
//   ONLY=outbound npm run bench   one benchmark (routing, outbound, memory, inbound, tokens, scale-out; also `-- --only inbound`); DIALECTS=sqlite one database
//   MEMORY=2000 npm run bench     mails of the outbound memory run (10 % with a 1 MB attachment)
//   SINK=process                  the outbound SMTP sink in its own process, its CPU a mail printed apart (bench/sink-process.ts)
//   CLIENT=inprocess              the end-to-end phases' API client on the benchmark's thread, not in its own process (bench/http-client.ts)
//   TOKEN_ROUNDS=4 SCALE_N=1000 SCALE_BATCH=50 SCALE_CYCLES=3   expiries crossed (tokens); mails per run, the workers'
//     batch size and the 1-2-4-worker cycles (scale-out, PostgreSQL only; SCALE_PROFILE=<dir> for workers' CPU profiles)
// PostgreSQL: JUNIPER_TEST_PG_URL if set (npm test sets it), else a private throw-away cluster started here.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { routeMail, type RoutableServer } from '../src/outgoing/routing.js';
import { inbound, printInbound } from './inbound.js';
import { outbound, printOutbound } from './outbound.js';
import { outboundMemory, printOutboundMemory } from './outbound-memory.js';
import { printScaleOut, scaleOut } from './scale-out.js';
import { printTokens, tokens } from './tokens.js';
import { projectRoot } from '../test/helpers/project-root.js';

const quick = process.argv.includes('--quick');
const N = Number(process.env.N ?? (quick ? 100 : 10_000));
const INBOUND = Number(process.env.INBOUND ?? (quick ? 100 : 5_000));
const MEMORY = Number(process.env.MEMORY ?? (quick ? 100 : 2_000));
const TOKEN_ROUNDS = Number(process.env.TOKEN_ROUNDS ?? (quick ? 1 : 4));
const SCALE_N = Number(process.env.SCALE_N ?? (quick ? 60 : 1_000));
// One round with --quick: it only proves the code works, and each round starts every phase's processes again.
const OUTBOUND_ROUNDS = Number(process.env.OUTBOUND_ROUNDS ?? (quick ? 1 : 3));
if (!Number.isInteger(OUTBOUND_ROUNDS) || OUTBOUND_ROUNDS < 1) throw new Error(`OUTBOUND_ROUNDS must be a whole number of at least 1, not "${process.env.OUTBOUND_ROUNDS}"`);
const onlyAt = process.argv.indexOf('--only');
const only = process.env.ONLY ?? (onlyAt === -1 ? undefined : process.argv[onlyAt + 1]);
const PARTS = ['routing', 'outbound', 'memory', 'inbound', 'tokens', 'scale-out'];
if (only !== undefined && !PARTS.includes(only)) throw new Error(`ONLY / --only takes one of ${PARTS.join(', ')}`);
const dialects = (process.env.DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[];
const runs = (part: string) => only === undefined || only === part;

function routingRun(): number {
  const servers: RoutableServer[] = Array.from({ length: 50 }, (_, i) => ({ id: i + 1, name: `s${i}`, fromFilter: `user${i}@example.com, dept${i}.example.com`, priority: i, active: true }));
  const params = { defaultFrom: 'notifications@example.com', bounceAddress: 'bounce@example.com', massMailingDedicated: false, massMailingServerId: null };
  const rounds = quick ? 2_000 : 20_000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) routeMail({ from: `"Person ${i}" <someone${i % 97}@other.example>` }, servers, params);
  return rounds / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** A private PostgreSQL for the run unless the caller gave one; returns its stop function. */
function ensurePostgres(): () => void {
  if (process.env.JUNIPER_TEST_PG_URL) return () => {};
  const root = projectRoot;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-bench-pg-'));
  // mkdtemp makes it 0700: as root, PostgreSQL runs as the `postgres` user (postgres-start.sh), who must reach the cluster inside.
  fs.chmodSync(dir, 0o755);
  const port = execFileSync(process.execPath, [path.join(root, 'scripts/free-port.mjs')], { encoding: 'utf8' }).trim();
  process.env.JUNIPER_TEST_PG_URL = execFileSync('bash', [path.join(root, 'scripts/peers/postgres-start.sh'), path.join(dir, 'pg'), port], { encoding: 'utf8' }).trim();
  return () => {
    execFileSync('bash', [path.join(root, 'scripts/peers/postgres-stop.sh'), path.join(dir, 'pg')]);
    fs.rmSync(dir, { recursive: true, force: true });
  };
}

// PostgreSQL only when a run uses it (DIALECTS=sqlite needs none, scale-out always does).
const stopPostgres = dialects.includes('postgres') || runs('scale-out') ? ensurePostgres() : () => {};
try {
  if (runs('routing')) console.log(`routing, 50 servers, fallback to the notifications server (worst case): ${routingRun().toFixed(0)} decisions/s`);
  if (runs('outbound')) for (const dialect of dialects) printOutbound(await outbound(dialect, N, 4, OUTBOUND_ROUNDS));
  if (runs('memory')) for (const dialect of dialects) printOutboundMemory(await outboundMemory(dialect, MEMORY));
  if (runs('inbound')) for (const dialect of dialects) printInbound(await inbound(dialect, INBOUND, (quick ? 5 : 25) * 1024 * 1024));
  if (runs('tokens')) for (const dialect of dialects) printTokens(await tokens(dialect, TOKEN_ROUNDS));
  // PostgreSQL only: the database several sending workers share (README); SQLite has one writer at a time.
  if (runs('scale-out')) printScaleOut(await scaleOut(SCALE_N, Number(process.env.SCALE_BATCH ?? (quick ? 5 : 50)), Number(process.env.SCALE_CYCLES ?? (quick ? 1 : 3))));
} finally {
  stopPostgres();
}
