// Scale-out: 1, 2 and 4 `juniper worker` processes on one PostgreSQL against an smtp-server sink that takes
// 20 ms per message, so each worker's throughput is bounded by its connections, not by the CPU: adding workers
// should add throughput. Each run:
// - N mails are enqueued (not timed) and held back (due in a day), then the workers missing for W start (the
//   previous run's stay); once every worker has logged that it started, one UPDATE makes the mails due (t0);
// - throughput = N / (last sent_at − t0); "all active" = the mails recorded between the moment the last worker
//   recorded its first mail and the moment the first worker recorded its last, over that window (the rate
//   while every worker takes part: the workers' poll phases, up to 1 s, and the tail of the last batches
//   fall outside it);
// - each worker's share comes from sent_by; the sink counts the Message-IDs it received (no mail twice).
import { sql } from 'kysely';
import { cliActor } from '../src/audit/audit-log.js';
import { cliPrincipal } from '../src/cli/principal.js';
import { startTestApp } from '../test/helpers/app.js';
import { startSmtpSink, type SinkMessage } from '../test/peers/smtp-sink.js';
import { until } from './outlook-setup.js';
import os from 'node:os';
import { cpuSecondsOf, startWorker, stopWorkers, workerEnv, type WorkerProcess } from './worker-processes.js';

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
}

export interface ScaleOutFigures {
  runs: ScaleOutRun[];
}

/** The Message-ID header of a raw message (the sink keeps raw bytes; parsing thousands with mailparser would cost more than the run). */
export function messageIdOf(m: SinkMessage): string {
  const head = m.raw.subarray(0, Math.max(0, m.raw.indexOf('\r\n\r\n'))).toString('latin1');
  return /^message-id:\s*(<[^>\r\n]*>)/im.exec(head)?.[1] ?? '';
}

export async function scaleOut(n: number, batchSize: number): Promise<ScaleOutFigures> {
  const t = await startTestApp('postgres', { logLevel: 'warn' });
  const sink = await startSmtpSink({ auth: 'password', passwords: { [MAILBOX]: 'pw' }, delayMs: SINK_DELAY_MS });
  const runs: ScaleOutRun[] = [];
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
    for (const w of WORKER_COUNTS) {
      const firstId = Number((await db.selectFrom('outgoing_mails').select(sql<number>`coalesce(max(id), 0)`.as('m')).executeTakeFirstOrThrow()).m) + 1;
      const ids = new Set<string>();
      for (let i = 0; i < n; i += 1000) {
        const chunk = Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ from: MAILBOX, to: [`r${i + j}@client.test`], subject: `scale ${w} ${i + j}`, text: 'hello\n' }));
        for (const r of await t.app.services.outbox.enqueueMany(chunk, null, cliActor)) {
          if (r.status !== 202 || !('messageId' in r)) throw new Error(`scale-out: enqueue refused: ${JSON.stringify(r)}`);
          ids.add(r.messageId);
        }
      }
      // Held back until every worker runs, so a worker's start-up (about a second) is not measured.
      await db.updateTable('outgoing_mails').set({ next_attempt_at: Date.now() + 86_400_000 }).where('state', '=', 'queued').execute();
      // The workers of the previous run stay: only the missing ones start (a start costs about a second of CPU).
      workers.push(...(await Promise.all(Array.from({ length: w - workers.length }, () => startWorker(env, nodeArgs)))));
      const sinkBefore = sink.messages.length;
      const cpuBefore = workers.map((wp) => cpuSecondsOf(wp.child.pid));
      const benchCpuBefore = process.cpuUsage();
      const t0 = Date.now();
      await db.updateTable('outgoing_mails').set({ next_attempt_at: t0 }).where('state', '=', 'queued').execute();
      const sentOfRun = async () =>
        Number((await db.selectFrom('outgoing_mails').select(sql<number>`count(*)`.as('n')).where('id', '>=', firstId).where('state', '=', 'sent').executeTakeFirstOrThrow()).n);
      await until(async () => (await sentOfRun()) >= n, `${n} mails sent by ${w} worker(s)`, 600_000, 20);
      const workerCpu = workers.reduce((a, wp, i) => a + cpuSecondsOf(wp.child.pid) - cpuBefore[i]!, 0);
      const benchCpu = process.cpuUsage(benchCpuBefore);
      const load = os.loadavg()[0]!;
      const rows = await db.selectFrom('outgoing_mails').select(['sent_at', 'sent_by']).where('id', '>=', firstId).where('state', '=', 'sent').execute();
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
      });
    }
    return { runs };
  } finally {
    await stopWorkers(workers);
    await sink.stop();
    await t.close();
  }
}

export function printScaleOut(f: ScaleOutFigures): void {
  for (const r of f.runs) {
    const shares = r.shares.map((s) => `${((100 * s) / r.mails).toFixed(0)}%`).join(' / ');
    console.log(
      `scale-out postgres, ${r.workers} worker${r.workers > 1 ? 's' : ''} (${POOL} connections each, sink ${SINK_DELAY_MS} ms a message): ${r.mails} mails in ${r.seconds.toFixed(2)} s = ${r.rate.toFixed(0)} mails/s` +
        ` (all workers active: ${Number.isFinite(r.allActiveRate) ? `${r.allActiveRate.toFixed(0)} mails/s` : 'no common window'}); shares ${shares}; sink: ${r.atSink} messages, ${r.distinctAtSink} distinct Message-IDs, ${r.atSink - r.distinctAtSink} sent twice;` +
        ` CPU ${r.cpu.workers.toFixed(1)} s workers + ${r.cpu.bench.toFixed(1)} s sink process (${((r.cpu.workers + r.cpu.bench) / r.seconds).toFixed(2)} cores), load ${r.load.toFixed(1)}`,
    );
  }
  const one = f.runs.find((r) => r.workers === 1)!;
  const ratio = (w: number, pick: (r: ScaleOutRun) => number) => {
    const x = pick(f.runs.find((r) => r.workers === w)!) / pick(one);
    return Number.isFinite(x) ? `${x.toFixed(2)}x` : 'n/a';
  };
  console.log(
    `ratio scale-out postgres: 2w/1w ${ratio(2, (r) => r.rate)} (target >= 1.8x), 4w/1w ${ratio(4, (r) => r.rate)} (target >= 3.2x); all workers active ${ratio(2, (r) => r.allActiveRate)}, ${ratio(4, (r) => r.allActiveRate)}; sent twice ${f.runs.reduce((a, r) => a + r.atSink - r.distinctAtSink, 0)}`,
  );
}
