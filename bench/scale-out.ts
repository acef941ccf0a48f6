// Scale-out: 1, 2 and 4 `juniper worker` processes on one PostgreSQL against an smtp-server sink that takes
// 20 ms per message, so each worker's throughput is bounded by its connections, not by the CPU: adding workers
// should add throughput. Each run:
// - N mails are enqueued (not timed) and held back (due in a day), then the workers missing for W start (the
//   previous run's stay); once every worker has logged that it started and listens for notifications (its
//   LISTEN connection shows in pg_stat_activity), one UPDATE makes the mails due (t0),
//   followed by what Juniper itself sends when mail becomes due by an enqueue or a retry: Outbox.wake(), whose
//   PostgreSQL NOTIFY wakes the workers (src/db/wake-channel.ts). Nothing a real enqueue would not get.
//   Before that, workers that have not yet sent POOL warm-up mails are warmed up (warmUp; SCALE_WARMUP=0: not);
// - throughput = N / (last sent_at − t0); "all active" = the mails recorded between the moment the last worker
//   recorded its first mail and the moment the first worker recorded its last, over that window (the rate
//   while every worker takes part: the start, until each worker sent its first mail, and the tail of the
//   last batches fall outside it; both are printed);
// - each worker's share comes from sent_by; the sink counts the Message-IDs it received (no mail twice).
import { sql, type Kysely } from 'kysely';
import type { DB } from '../src/db/schema.js';
import { LISTENER_APPLICATION_NAME, WAKE_CHANNEL } from '../src/db/wake-channel.js';
import { cliActor } from '../src/audit/audit-log.js';
import { cliPrincipal } from '../src/cli/principal.js';
import type { App } from '../src/app.js';
import { startTestApp } from '../test/helpers/app.js';
import { startSmtpSink, type SinkMessage } from '../test/peers/smtp-sink.js';
import { percentile, until } from './outlook-setup.js';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { cpuSecondsOf, startWorker, stopWorkers, workerEnv, type WorkerProcess } from './worker-processes.js';
import { projectRoot } from '../test/helpers/project-root.js';

export const SINK_DELAY_MS = 20;
/** Connections per worker (the server's pool size): one worker sends at most POOL / 20 ms. */
export const POOL = 2;
const WORKER_COUNTS = [1, 2, 4] as const;
const MAILBOX = 'notifications@example.com';

export interface ScaleOutRun {
  workers: number;
  mails: number;
  seconds: number;
  rate: number;
  allActiveRate: number;
  shares: number[];
  atSink: number;
  distinctAtSink: number;
  /** CPU seconds used during the run by the workers together, and by this process (the sink, the polling). */
  cpu: { workers: number; bench: number };
  load: number;
  /** Round trips of `select 1` from this process during the run, ms (PostgreSQL and the scheduler's latency). */
  dbP50: number;
  dbP95: number;
  /** This process's event-loop delay (the sink's sessions wait that long for the CPU), p50 and p99, ms. */
  loopP50: number;
  loopP99: number;
  /** Claims per mail (its attempts): 1.00 when no lease expired and no mail was claimed twice. */
  claimsPerMail: number;
  /** Seconds from t0 until the last worker recorded its first mail (every worker had started sending). */
  startSeconds: number;
  /** Seconds from t0 until the bench saw every worker hold a lease (its first claim; seen every few ms). */
  claimedSeconds: number;
  /** Seconds from the first worker's last mail to the run's last mail (the uneven end of the last batches). */
  tailSeconds: number;
}

export interface RawRun {
  processes: number;
  rate: number;
  /** CPU seconds the senders used between the go signal and their last message. */
  cpu: number;
}

export interface ScaleOutFigures {
  runs: ScaleOutRun[];
  /** The baseline of each cycle: raw nodemailer in 1, 2 and 4 processes, the same connections each. */
  raw: RawRun[];
}

/** N mails sent by raw nodemailer split over `processes` processes started beforehand, timed from the go signal to the last "done". */
async function rawRun(port: number, n: number, processes: number): Promise<RawRun> {
  const script = path.join(projectRoot, 'bench/raw-sender.mjs');
  const children = Array.from({ length: processes }, (_, i) => {
    const count = Math.floor(n / processes) + (i < n % processes ? 1 : 0);
    return spawn(process.execPath, [script, String(port), MAILBOX, 'pw', String(count), String(POOL)], { stdio: ['pipe', 'pipe', 'inherit'] });
  });
  const lines = children.map((c) => readline.createInterface({ input: c.stdout }));
  const next = (i: number, want: string) => new Promise<void>((resolve, reject) => {
    lines[i]!.on('line', (l) => l === want && resolve());
    children[i]!.once('exit', (code) => code !== 0 && reject(new Error(`raw sender exited with ${code}`)));
  });
  await Promise.all(children.map((_, i) => next(i, 'ready')));
  const cpuBefore = children.map((c) => cpuSecondsOf(c.pid));
  let cpu = 0;
  const done = Promise.all(children.map((c, i) => next(i, 'done').then(() => void (cpu += cpuSecondsOf(c.pid) - cpuBefore[i]!))));
  const start = process.hrtime.bigint();
  for (const c of children) c.stdin.write('go\n');
  await done;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await Promise.all(children.map((c) => new Promise((resolve) => (c.exitCode !== null ? resolve(null) : c.once('exit', resolve)))));
  return { processes, rate: n / seconds, cpu };
}

/**
 * Until every worker has sent POOL warm-up mails (so each has opened its SMTP connections and run its sending
 * code, as a worker that has been running has): rounds of a batch of fresh mails a worker, queued as a client queues
 * them (enqueueMany, whose NOTIFY wakes the workers), each round waited for. They are not part of any run (their
 * ids follow every run's). A worker that started just before its run otherwise spends its first second opening
 * connections under load (`SCALE_WARMUP=0` measures that).
 */
async function warmUp(app: App, workers: readonly WorkerProcess[], batchSize: number): Promise<void> {
  const { db } = app.database;
  for (let round = 0; round < 10; round++) {
    const counts = await db.selectFrom('outgoing_mails').select(['sent_by', sql<number>`count(*)`.as('n')]).where('subject', 'like', 'warm-up %').where('state', '=', 'sent').groupBy('sent_by').execute();
    const sent = new Map(counts.map((r) => [r.sent_by, Number(r.n)]));
    if (workers.every((w) => (sent.get(w.owner) ?? 0) >= POOL)) return;
    const mails = Array.from({ length: batchSize * workers.length }, (_, i) => ({ from: MAILBOX, to: [`warm${i}@client.test`], subject: `warm-up ${round} ${i}`, text: 'hello\n' }));
    const ids = (await app.services.outbox.enqueueMany(mails, null, cliActor)).flatMap((r) => (r.status === 202 && 'id' in r ? [r.id] : []));
    if (ids.length !== mails.length) throw new Error('scale-out: a warm-up mail was refused');
    const [first, last] = [Math.min(...ids), Math.max(...ids)];
    await until(
      async () => Number((await db.selectFrom('outgoing_mails').select(sql<number>`count(*)`.as('n')).where('id', '>=', first).where('id', '<=', last).where('state', '=', 'sent').executeTakeFirstOrThrow()).n) === ids.length,
      'the warm-up mails sent',
      120_000,
      20,
    );
  }
  throw new Error('scale-out: after 10 warm-up rounds some worker had still sent no warm-up mail');
}

/** The processes LISTENing for due mail on the bench's database (src/db/wake-channel.ts): the workers' dispatchers. */
async function listeningWorkers(db: Kysely<DB>): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name = ${LISTENER_APPLICATION_NAME} and query = ${`LISTEN ${WAKE_CHANNEL}`}`.execute(db);
  return rows[0]!.n;
}

/** The Message-ID header of a raw message (the sink keeps raw bytes; parsing thousands with mailparser would cost more than the run). */
export function messageIdOf(m: SinkMessage): string {
  const head = m.raw.subarray(0, Math.max(0, m.raw.indexOf('\r\n\r\n'))).toString('latin1');
  return /^message-id:\s*(<[^>\r\n]*>)/im.exec(head)?.[1] ?? '';
}

export async function scaleOut(n: number, batchSize: number, cycles: number, warm = process.env.SCALE_WARMUP !== '0'): Promise<ScaleOutFigures> {
  const t = await startTestApp('postgres', { logLevel: 'warn' });
  const sink = await startSmtpSink({ auth: 'password', passwords: { [MAILBOX]: 'pw' }, delayMs: SINK_DELAY_MS });
  const runs: ScaleOutRun[] = [];
  const raw: RawRun[] = [];
  const workers: WorkerProcess[] = [];
  try {
    await t.app.services.outgoingServers.create(
      { name: 'sink', host: '127.0.0.1', port: sink.port, security: 'starttls', auth: 'password', username: MAILBOX, password: 'pw', fromFilter: null, priority: 10, active: true, allowSelfSigned: true, poolSize: POOL, ratePerMinute: 0 },
      cliPrincipal,
      cliActor,
    );
    const { db } = t.app.database;
    const env = workerEnv(t.config, { JUNIPER_SEND_BATCH_SIZE: String(batchSize) });
    // SCALE_PROFILE=<dir>: each worker writes a CPU profile there when it stops.
    const nodeArgs = process.env.SCALE_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SCALE_PROFILE}`] : [];
    // Every run's mails are enqueued before any worker runs and held back (due in a day), so that neither a
    // worker's start-up (about a second) nor the enqueueing is measured, and no running worker takes them early.
    const planned: { firstId: number; lastId: number; ids: Set<string> }[] = [];
    const plan = Array.from({ length: cycles }, () => WORKER_COUNTS).flat();
    for (const w of plan) {
      const ids = new Set<string>();
      const rowIds: number[] = [];
      for (let i = 0; i < n; i += 1000) {
        const chunk = Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ from: MAILBOX, to: [`r${i + j}@client.test`], subject: `scale ${w} ${i + j}`, text: 'hello\n' }));
        for (const r of await t.app.services.outbox.enqueueMany(chunk, null, cliActor)) {
          if (r.status !== 202 || !('messageId' in r)) throw new Error(`scale-out: enqueue refused: ${JSON.stringify(r)}`);
          ids.add(r.messageId);
          rowIds.push(r.id);
        }
      }
      await db.updateTable('outgoing_mails').set({ next_attempt_at: Date.now() + 86_400_000 }).where('state', '=', 'queued').execute();
      planned.push({ firstId: Math.min(...rowIds), lastId: Math.max(...rowIds), ids });
    }
    for (const [run, w] of plan.entries()) {
      const { firstId, lastId, ids } = planned[run]!;
      // The workers of the previous run stay: only the missing ones start (a start costs about a second of CPU),
      // and the extra ones stop (a new cycle starts again at one worker).
      await stopWorkers(workers.splice(w));
      workers.push(...(await Promise.all(Array.from({ length: w - workers.length }, () => startWorker(env, nodeArgs)))));
      // A worker logs that it started before its dispatcher runs and its LISTEN connection is open: wait until
      // every worker listens (as a worker that has been running does), or t0 could find one still connecting.
      await until(async () => (await listeningWorkers(db)) === workers.length, `${workers.length} workers listening for due mail`, 30_000, 10);
      if (warm) await warmUp(t.app, workers, batchSize);
      const sinkBefore = sink.messages.length;
      const cpuBefore = workers.map((wp) => cpuSecondsOf(wp.child.pid));
      const benchCpuBefore = process.cpuUsage();
      const loopDelay = monitorEventLoopDelay({ resolution: 10 });
      loopDelay.enable();
      const t0 = Date.now();
      await db.updateTable('outgoing_mails').set({ next_attempt_at: t0 }).where('id', '>=', firstId).where('id', '<=', lastId).execute();
      // What an enqueue, a batch or Retry Now does once its write committed: wake the dispatchers, this
      // process's (none here) and, through PostgreSQL's NOTIFY, the workers'.
      t.app.services.outbox.wake();
      // When each worker first claimed (held a lease on, or sent) a mail of this run: how long waking it took,
      // apart from its first send (a new worker opens its SMTP connections then).
      const firstClaim = new Map<string, number>();
      const claimProbe = (async () => {
        while (firstClaim.size < workers.length && Date.now() - t0 < 10_000) {
          const owners = await db.selectFrom('outgoing_mails').select(sql<string | null>`coalesce(lease_owner, sent_by)`.as('o')).distinct().where('id', '>=', firstId).where('id', '<=', lastId).execute();
          const at = Date.now();
          for (const { o } of owners) if (o && !firstClaim.has(o)) firstClaim.set(o, at);
          await new Promise((res) => setTimeout(res, 5));
        }
      })();
      // What one database round trip costs meanwhile: on a shared machine it grows with the load, and every
      // claim and every joint write of sent mails pays it.
      const roundTrips: number[] = [];
      let probing = true;
      const probe = (async () => {
        while (probing) {
          const start = process.hrtime.bigint();
          await sql`select 1`.execute(db);
          roundTrips.push(Number(process.hrtime.bigint() - start) / 1e6);
          await new Promise((res) => setTimeout(res, 50));
        }
      })();
      const sentOfRun = async () =>
        Number((await db.selectFrom('outgoing_mails').select(sql<number>`count(*)`.as('n')).where('id', '>=', firstId).where('id', '<=', lastId).where('state', '=', 'sent').executeTakeFirstOrThrow()).n);
      await until(async () => (await sentOfRun()) >= n, `${n} mails sent by ${w} worker(s)`, 600_000, 20);
      await claimProbe;
      const workerCpu = workers.reduce((a, wp, i) => a + cpuSecondsOf(wp.child.pid) - cpuBefore[i]!, 0);
      const benchCpu = process.cpuUsage(benchCpuBefore);
      const load = os.loadavg()[0]!;
      loopDelay.disable();
      probing = false;
      await probe;
      roundTrips.sort((a, b) => a - b);
      const rows = await db.selectFrom('outgoing_mails').select(['sent_at', 'sent_by', 'attempts']).where('id', '>=', firstId).where('id', '<=', lastId).where('state', '=', 'sent').execute();
      const byWorker = new Map<string, number[]>(workers.map((wp) => [wp.owner, []]));
      for (const r of rows) {
        const list = byWorker.get(r.sent_by ?? '');
        if (!list) throw new Error(`scale-out: a mail was recorded sent by ${r.sent_by}, none of this run's workers`);
        list.push(Number(r.sent_at));
      }
      const times = rows.map((r) => Number(r.sent_at));
      const last = Math.max(...times);
      const lists = [...byWorker.values()];
      const joined = Math.max(...lists.map((l) => (l.length ? Math.min(...l) : Infinity)));
      const firstDone = Math.min(...lists.map((l) => (l.length ? Math.max(...l) : -Infinity)));
      const inWindow = times.filter((x) => x >= joined && x <= firstDone).length;
      const arrived = sink.messages.slice(sinkBefore).map(messageIdOf);
      const distinct = new Set(arrived);
      const missing = [...ids].filter((id) => !distinct.has(id)).length;
      if (missing > 0) throw new Error(`scale-out: ${missing} mails never reached the sink`);
      runs.push({
        workers: w,
        mails: rows.length,
        seconds: (last - t0) / 1000,
        rate: rows.length / ((last - t0) / 1000),
        allActiveRate: firstDone > joined ? inWindow / ((firstDone - joined) / 1000) : NaN,
        shares: lists.map((l) => l.length),
        atSink: arrived.length,
        distinctAtSink: distinct.size,
        cpu: { workers: workerCpu, bench: (benchCpu.user + benchCpu.system) / 1e6 },
        load,
        dbP50: percentile(roundTrips, 50),
        dbP95: percentile(roundTrips, 95),
        loopP50: loopDelay.percentile(50) / 1e6,
        loopP99: loopDelay.percentile(99) / 1e6,
        claimsPerMail: rows.reduce((a, r) => a + r.attempts, 0) / rows.length,
        startSeconds: (joined - t0) / 1000,
        claimedSeconds: firstClaim.size === workers.length ? (Math.max(...firstClaim.values()) - t0) / 1000 : NaN,
        tailSeconds: (last - firstDone) / 1000,
      });
      // The cycle's baseline once its 4-worker run is done (the workers idle meanwhile, polling once a second).
      if (w === WORKER_COUNTS[WORKER_COUNTS.length - 1]) {
        const before = sink.messages.length;
        for (const p of WORKER_COUNTS) raw.push(await rawRun(sink.port, n, p));
        if (sink.messages.length - before !== n * WORKER_COUNTS.length) throw new Error(`scale-out raw: expected ${n * WORKER_COUNTS.length} messages at the sink, got ${sink.messages.length - before}`);
      }
    }
    return { runs, raw };
  } finally {
    await stopWorkers(workers);
    await sink.stop();
    await t.close();
  }
}

export function printScaleOut(f: ScaleOutFigures): void {
  for (const r of f.runs) {
    // Each connection carries one message at a time: its time per message is the sink's 20 ms plus the SMTP
    // round trips (MAIL, RCPT, DATA, the body) and every wait for a CPU or the database on either side.
    const perConnectionMs = (r.workers * POOL * 1000) / r.rate;
    const shares = r.shares.map((s) => `${((100 * s) / r.mails).toFixed(0)}%`).join(' / ');
    console.log(
      `scale-out postgres, ${r.workers} worker${r.workers > 1 ? 's' : ''} (${POOL} connections each, sink ${SINK_DELAY_MS} ms a message): ${r.mails} mails in ${r.seconds.toFixed(2)} s = ${r.rate.toFixed(0)} mails/s` +
        ` (all workers active: ${Number.isFinite(r.allActiveRate) ? `${r.allActiveRate.toFixed(0)} mails/s` : 'no common window'}; every worker claimed within ${r.claimedSeconds.toFixed(2)} s, sent within ${r.startSeconds.toFixed(2)} s, tail ${r.tailSeconds.toFixed(2)} s); shares ${shares}; sink: ${r.atSink} messages, ${r.distinctAtSink} distinct Message-IDs, ${r.atSink - r.distinctAtSink} sent twice; ${r.claimsPerMail.toFixed(2)} claims a mail;` +
        ` ${perConnectionMs.toFixed(0)} ms a message per connection; database round trip p50 ${r.dbP50.toFixed(1)} ms, p95 ${r.dbP95.toFixed(1)} ms;` +
        ` sink's event-loop delay p50 ${r.loopP50.toFixed(1)} ms, p99 ${r.loopP99.toFixed(1)} ms;` +
        ` CPU ${((1000 * r.cpu.workers) / r.mails).toFixed(2)} ms a mail in the workers: ${r.cpu.workers.toFixed(1)} s workers + ${r.cpu.bench.toFixed(1)} s sink process (${((r.cpu.workers + r.cpu.bench) / r.seconds).toFixed(2)} cores), load ${r.load.toFixed(1)}`,
    );
  }
  // Ratios within each cycle (1, 2, 4 workers run one after the other, under about the same load), then their
  // median: the machine's load moves between cycles more than between the runs of one cycle.
  const cycles: ScaleOutRun[][] = [];
  for (let i = 0; i < f.runs.length; i += WORKER_COUNTS.length) cycles.push(f.runs.slice(i, i + WORKER_COUNTS.length));
  const ratios = (w: number, pick: (r: ScaleOutRun) => number) => cycles.map((c) => pick(c.find((r) => r.workers === w)!) / pick(c.find((r) => r.workers === 1)!));
  const median = (xs: number[]) => {
    const finite = xs.filter(Number.isFinite).sort((a, b) => a - b);
    if (finite.length === 0) return 'n/a';
    const m = finite.length % 2 ? finite[(finite.length - 1) / 2]! : (finite[finite.length / 2 - 1]! + finite[finite.length / 2]!) / 2;
    return `${m.toFixed(2)}x`;
  };
  const list = (xs: number[]) => xs.map((x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')).join(', ');
  if (cycles.length > 1) {
    console.log(`scale-out postgres, each cycle: 2w/1w ${list(ratios(2, (r) => r.rate))}; 4w/1w ${list(ratios(4, (r) => r.rate))}; all workers active 2w/1w ${list(ratios(2, (r) => r.allActiveRate))}; 4w/1w ${list(ratios(4, (r) => r.allActiveRate))}`);
  }
  const rawCycles: RawRun[][] = [];
  for (let i = 0; i < f.raw.length; i += WORKER_COUNTS.length) rawCycles.push(f.raw.slice(i, i + WORKER_COUNTS.length));
  const rawRatios = (p: number) => rawCycles.map((c) => c.find((r) => r.processes === p)!.rate / c.find((r) => r.processes === 1)!.rate);
  for (const [i, c] of rawCycles.entries()) {
    console.log(`scale-out baseline, cycle ${i + 1}: raw nodemailer (${POOL} connections a process, same sink) in ${c.map((r) => `${r.processes} process${r.processes > 1 ? 'es' : ''} ${r.rate.toFixed(0)} mails/s (${((1000 * r.cpu) / f.runs[0]!.mails).toFixed(2)} ms CPU a mail)`).join(', ')}`);
  }
  const idle = f.runs.filter((r) => r.shares.some((x) => x === 0)).length;
  console.log(
    `ratio scale-out postgres: 2w/1w ${median(ratios(2, (r) => r.rate))} (target >= 1.8x), 4w/1w ${median(ratios(4, (r) => r.rate))} (target >= 3.2x); all workers active ${median(ratios(2, (r) => r.allActiveRate))}, ${median(ratios(4, (r) => r.allActiveRate))}; median of ${cycles.length} cycle${cycles.length > 1 ? 's' : ''}; raw nodemailer 2p/1p ${median(rawRatios(2))}, 4p/1p ${median(rawRatios(4))}; runs where a worker sent nothing ${idle}; sent twice ${f.runs.reduce((a, r) => a + r.atSink - r.distinctAtSink, 0)}`,
  );
}
