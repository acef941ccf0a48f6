// Outbound: Juniper against raw nodemailer, side by side in one run on the same sink and the same tokens.
// - raw: one nodemailer pool per mailbox (pool: true, maxMessages: Infinity, as many connections per pool as
//   Juniper opens per server), every prebuilt message handed to sendMail at once;
// - juniper (queue → sent): the mails are enqueued first (not timed), then one dispatcher, running its own
//   loop as `juniper worker` does, sends them all, routing each by its From filter over XOAUTH2 with tokens
//   from the token store;
// - juniper (end to end): POST /api/v1/mails over real HTTP with 20 requests in flight while the workers send,
//   the workers on the API's thread as `juniper serve` runs them by default; then the same with the
//   workers in a thread of their own (`serve --workers-thread`), through POST /api/v1/mails/batch (100 mails a
//   request, 4 in flight), and with one `juniper worker` process beside the API. The API client runs in a
//   process of its own (http-client.ts; CLIENT=inprocess puts it on the benchmark's thread).
import nodemailer from 'nodemailer';
import { cliActor } from '../src/audit/audit-log.js';
import type { DialectName } from '../src/db/database.js';
import { testDispatcher } from '../test/helpers/outgoing.js';
import { createWorkers } from '../src/worker/workers.js';
import { startThreadWorkers } from '../src/worker/thread-workers.js';
import { benchMail, startHttpClient, type HttpClient } from './http-client.js';
import { startWorker, stopWorkers, workerEnv } from './worker-processes.js';
import { CONNECTIONS_PER_SERVER, percentile, profilePhase, secondsSince, startOutlookBench, until, type OutlookBench } from './outlook-setup.js';


/** One round's figures: every phase once, raw first. */
export interface OutboundRound {
  raw: number;
  juniper: number;
  /** End to end as `juniper serve` runs by default: the workers on the API's thread. */
  endToEnd: number;
  enqueuePerSecond: number;
  enqueueP50Ms: number;
  enqueueP99Ms: number;
  /** The same with the workers in a thread of their own (`serve --workers-thread`). */
  workersThread: { rate: number; enqueuePerSecond: number; p50: number; p99: number };
  batch: { rate: number; enqueuePerSecond: number; p50: number; p99: number };
  /** End to end with this process serving the API only (`juniper serve --no-workers`) and one `juniper worker` process sending. */
  apart: { rate: number; enqueuePerSecond: number; p50: number; p99: number };
  /** CPU time of this process (user + system) per mail in the raw and the queue → sent phases, in µs. */
  cpuPerMail: { raw: number; juniper: number };
  /** SINK=process only: the sink process's CPU per mail in the same phases, µs. */
  sinkCpuPerMail?: { raw: number; juniper: number };
}

interface PhaseRun {
  rate: number;
  cpu: number;
  sinkCpu?: number;
}

export interface OutboundFigures {
  dialect: DialectName;
  mails: number;
  servers: number;
  batchSize: number;
  batchInFlight: number;
  rounds: OutboundRound[];
}

/** A diagnostic, not a figure of the issue: this process's CPU per mail in the timed phase (PostgreSQL's own is not in it). */
function cpuMicros(since: NodeJS.CpuUsage, n: number): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / n;
}

/** SINK=process: the sink process's CPU per mail since `since` (its reading at the phase's start). */
async function sinkMicros(b: OutlookBench, since: number | undefined, n: number): Promise<number | undefined> {
  return since === undefined || !b.sinkCpu ? undefined : ((await b.sinkCpu()) - since) / n;
}

const mailFor = (b: OutlookBench, i: number) => benchMail(b.mailboxes, i);

async function rawRun(b: OutlookBench, n: number, profileAs?: string): Promise<PhaseRun> {
  const transports = await Promise.all(
    b.serverIds.map(async (id, i) => {
      const token = await b.t.app.services.tokens.accessToken('outgoing', id);
      return nodemailer.createTransport({
        host: '127.0.0.1',
        port: b.sink.port,
        secure: false,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        pool: true,
        maxConnections: CONNECTIONS_PER_SERVER,
        maxMessages: Infinity,
        auth: { type: 'OAuth2', user: b.mailboxes[i]!, accessToken: token.accessToken },
      });
    }),
  );
  const before = b.sink.messages.length;
  const stopProfile = await profilePhase(profileAs);
  const sinkCpu = await b.sinkCpu?.();
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: n }, (_, i) => transports[i % transports.length]!.sendMail(mailFor(b, i))));
  const seconds = secondsSince(start);
  const cpuPerMail = cpuMicros(cpu, n);
  const sinkPerMail = await sinkMicros(b, sinkCpu, n);
  await stopProfile();
  for (const t of transports) t.close();
  // A sink in its own process reports its count a moment after its replies (SINK=process).
  await until(async () => b.sink.messages.length - before >= n, `${n} raw mails counted at the sink`, 5_000, 1);
  if (b.sink.messages.length - before !== n) throw new Error(`raw: expected ${n} mails at the sink, got ${b.sink.messages.length - before}`);
  return { rate: n / seconds, cpu: cpuPerMail, ...(sinkPerMail === undefined ? {} : { sinkCpu: sinkPerMail }) };
}

async function juniperRun(b: OutlookBench, n: number, profileAs?: string): Promise<PhaseRun> {
  const { outbox, queue } = b.t.app.services;
  for (let i = 0; i < n; i++) await outbox.enqueue(mailFor(b, i), null, cliActor);
  const before = b.sink.messages.length;
  const sentBefore = (await queue.countByState()).sent;
  const d = testDispatcher(b.t.app, 'bench');
  const stopProfile = await profilePhase(profileAs);
  const sinkCpu = await b.sinkCpu?.();
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  // The dispatcher's own loop, as `juniper worker` runs it (pipelined claiming), until every mail is recorded.
  d.dispatcher.start();
  await until(async () => b.sink.messages.length - before >= n, `${n} mails at the sink`, 600_000, 5);
  await until(async () => (await queue.countByState()).sent >= sentBefore + n, `${n} mails recorded as sent`, 600_000, 5);
  const seconds = secondsSince(start);
  const cpuPerMail = cpuMicros(cpu, n);
  const sinkPerMail = await sinkMicros(b, sinkCpu, n);
  await stopProfile();
  await d.close();
  const sent = b.sink.messages.length - before;
  const states = await queue.countByState();
  if (sent !== n || states.queued + states.sending + states.failed > 0) throw new Error(`juniper: expected ${n} mails sent, got ${sent} (${JSON.stringify(states)})`);
  return { rate: n / seconds, cpu: cpuPerMail, ...(sinkPerMail === undefined ? {} : { sinkCpu: sinkPerMail }) };
}

interface EndToEnd {
  rate: number;
  enqueuePerSecond: number;
  p50: number;
  p99: number;
}

/**
 * Enqueues n mails over real HTTP while the workers send them: the API client (http-client.ts) sends mails
 * in requests of `perRequest`, `inFlight` at a time. Latencies are per request. The workers run on this thread
 * (serve's default) or in a thread of their own (`--workers-thread`; its start and a warm-up of 200 mails, the
 * new thread's JIT, connections and tokens, are not timed).
 */
async function endToEndRun(b: OutlookBench, client: HttpClient, address: string, n: number, inFlight: number, perRequest: number, workersIn: 'thread' | 'main', profileAs?: string): Promise<EndToEnd> {
  if (workersIn === 'main') {
    const workers = createWorkers(b.t.app);
    workers.start();
    try {
      return await timedEndToEnd(b, client, address, n, inFlight, perRequest, profileAs);
    } finally {
      await workers.stop();
    }
  }
  const workers = await startThreadWorkers(b.t.app);
  try {
    await timedEndToEnd(b, client, address, Math.min(200, n), inFlight, perRequest);
    return await timedEndToEnd(b, client, address, n, inFlight, perRequest, profileAs);
  } finally {
    await workers.stop();
  }
}

/**
 * The same with the web and the workers apart, as `juniper serve --no-workers` next to `juniper worker` runs them:
 * this process only answers the API (and hosts the sink and identity server), one worker process sends. Its
 * start and a warm-up of 200 mails (its JIT, its connections and tokens) are not timed.
 */
async function endToEndApartRun(b: OutlookBench, client: HttpClient, address: string, n: number, profileAs?: string): Promise<EndToEnd> {
  const worker = await startWorker(workerEnv(b.t.config));
  try {
    await timedEndToEnd(b, client, address, Math.min(200, n), 20, 1);
    return await timedEndToEnd(b, client, address, n, 20, 1, profileAs);
  } finally {
    await stopWorkers([worker]);
  }
}

async function timedEndToEnd(b: OutlookBench, client: HttpClient, address: string, n: number, inFlight: number, perRequest: number, profileAs?: string): Promise<EndToEnd> {
  const stopProfile = await profilePhase(profileAs);
  const before = b.sink.messages.length;
  const start = process.hrtime.bigint();
  const { seconds: enqueueSeconds, latencies } = await client.run({ address, apiKey: b.adminKey, mailboxes: b.mailboxes, n, inFlight, perRequest, batch: perRequest > 1 });
  await until(async () => b.sink.messages.length - before >= n, `${n} mails at the sink`);
  const seconds = secondsSince(start);
  await stopProfile();
  return { rate: n / seconds, enqueuePerSecond: n / enqueueSeconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** Mails per batch request and batch requests in flight in the batch end-to-end run. */
const BATCH_SIZE = 100;
const BATCH_IN_FLIGHT = 4;

/**
 * Every phase `rounds` times, raw first in each round, each Juniper phase's ratio taken against the raw run of
 * its own round. The same code's CPU a mail moved by a quarter between runs minutes apart on the quiet 2-core
 * machine (raw nodemailer 574–872 µs, 2 December), so one pair decided little; the median of the rounds' ratios
 * is the figure, and the spread is printed beside it.
 */
export async function outbound(dialect: DialectName, n: number, servers = 4, rounds = 1): Promise<OutboundFigures> {
  const b = await startOutlookBench(dialect, servers);
  const client = await startHttpClient();
  try {
    // A short warm-up on both sides, so TLS, JIT and token fetching are not counted against either.
    await rawRun(b, Math.min(200, n));
    await juniperRun(b, Math.min(200, n));
    const address = await b.http.listen({ host: '127.0.0.1', port: 0 });
    const figures: OutboundRound[] = [];
    for (let r = 0; r < rounds; r++) {
      // Profiles (OUTBOUND_PROFILE) of the first round only.
      const as = (phase: string) => (r === 0 ? `outbound-${phase}-${dialect}` : undefined);
      const raw = await rawRun(b, n, as('raw'));
      const juniper = await juniperRun(b, n, as('queue'));
      const e2e = await endToEndRun(b, client, address, n, 20, 1, 'main', as('single'));
      const workersThread = await endToEndRun(b, client, address, n, 20, 1, 'thread', as('workers-thread'));
      const batch = await endToEndRun(b, client, address, n, BATCH_IN_FLIGHT, BATCH_SIZE, 'main', as('batch'));
      const apart = await endToEndApartRun(b, client, address, n, as('apart'));
      figures.push({
        raw: raw.rate, juniper: juniper.rate, cpuPerMail: { raw: raw.cpu, juniper: juniper.cpu },
        ...(raw.sinkCpu !== undefined && juniper.sinkCpu !== undefined ? { sinkCpuPerMail: { raw: raw.sinkCpu, juniper: juniper.sinkCpu } } : {}),
        endToEnd: e2e.rate, enqueuePerSecond: e2e.enqueuePerSecond, enqueueP50Ms: e2e.p50, enqueueP99Ms: e2e.p99, workersThread, batch, apart,
      });
    }
    return { dialect, mails: n, servers, batchSize: BATCH_SIZE, batchInFlight: BATCH_IN_FLIGHT, rounds: figures };
  } finally {
    await client.close();
    await b.close();
  }
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** The median of the rounds' ratios, with their spread when there are several rounds. */
function ratio(rounds: OutboundRound[], of: (r: OutboundRound) => number): string {
  const each = rounds.map((r) => of(r) / r.raw);
  const spread = each.length > 1 ? ` (rounds ${Math.min(...each).toFixed(2)}–${Math.max(...each).toFixed(2)})` : '';
  return `${median(each).toFixed(2)}x${spread}`;
}

export function printOutbound(f: OutboundFigures): void {
  console.log(`outbound, ${f.dialect}, ${f.mails} mails over ${f.servers} Outlook servers (XOAUTH2, STARTTLS) → smtp-server sink, ${f.rounds.length} round${f.rounds.length === 1 ? '' : 's'} of every phase:`);
  f.rounds.forEach((r, i) => {
    console.log(`  round ${i + 1}:`);
    console.log(`    raw nodemailer pools (${f.servers} × ${CONNECTIONS_PER_SERVER} connections): ${r.raw.toFixed(0)} mails/s`);
    console.log(`    juniper queue → sent:             ${r.juniper.toFixed(0)} mails/s`);
    if (r.sinkCpuPerMail) {
      console.log(`    CPU per mail of this process (the sink apart: SINK=process; PostgreSQL's own not in it): raw ${r.cpuPerMail.raw.toFixed(0)} µs, queue → sent ${r.cpuPerMail.juniper.toFixed(0)} µs`);
      console.log(`    CPU per mail of the sink process: raw ${r.sinkCpuPerMail.raw.toFixed(0)} µs, queue → sent ${r.sinkCpuPerMail.juniper.toFixed(0)} µs`);
    } else console.log(`    CPU of this process per mail (sink and client included, PostgreSQL's own not): raw ${r.cpuPerMail.raw.toFixed(0)} µs, queue → sent ${r.cpuPerMail.juniper.toFixed(0)} µs`);
    console.log(`    juniper end to end (POST /api/v1/mails, 20 in flight, sending meanwhile): ${r.endToEnd.toFixed(0)} mails/s; enqueue ${r.enqueuePerSecond.toFixed(0)} req/s, p50 ${r.enqueueP50Ms.toFixed(1)} ms, p99 ${r.enqueueP99Ms.toFixed(1)} ms`);
    console.log(`    juniper end to end, workers in their own thread (serve --workers-thread; POST /api/v1/mails, 20 in flight): ${r.workersThread.rate.toFixed(0)} mails/s; enqueue ${r.workersThread.enqueuePerSecond.toFixed(0)} req/s, p50 ${r.workersThread.p50.toFixed(1)} ms, p99 ${r.workersThread.p99.toFixed(1)} ms`);
    console.log(`    juniper end to end (POST /api/v1/mails/batch, ${f.batchSize} mails a request, ${f.batchInFlight} in flight): ${r.batch.rate.toFixed(0)} mails/s; enqueue ${r.batch.enqueuePerSecond.toFixed(0)} mails/s, p50 ${r.batch.p50.toFixed(1)} ms, p99 ${r.batch.p99.toFixed(1)} ms a request`);
    console.log(`    juniper end to end, web and worker apart (serve --no-workers + 1 juniper worker process; POST /api/v1/mails, 20 in flight): ${r.apart.rate.toFixed(0)} mails/s; enqueue ${r.apart.enqueuePerSecond.toFixed(0)} req/s, p50 ${r.apart.p50.toFixed(1)} ms, p99 ${r.apart.p99.toFixed(1)} ms`);
  });
  console.log(`ratio outbound ${f.dialect}: juniper/raw ${ratio(f.rounds, (r) => r.juniper)}, end-to-end/raw ${ratio(f.rounds, (r) => r.endToEnd)}, end-to-end workers thread/raw ${ratio(f.rounds, (r) => r.workersThread.rate)}, batch end-to-end/raw ${ratio(f.rounds, (r) => r.batch.rate)}, end-to-end web+worker apart/raw ${ratio(f.rounds, (r) => r.apart.rate)}`);
}
