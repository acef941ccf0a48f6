// Inbound: Juniper's fetch (XOAUTH2, parse, store, then \Seen) against raw imapflow fetching the same
// messages' source in one FETCH, side by side on the same Dovecot mailbox in one run. The raw client peeks
// (BODY.PEEK[]), so both read the same unseen mailbox.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { ImapFlow } from 'imapflow';
import { cliActor } from '../src/audit/audit-log.js';
import { loadConfig } from '../src/config.js';
import { sharedParseWorkers } from '../src/mailbox/parse-pool.js';
import type { DialectName } from '../src/db/database.js';
import { startTestApp } from '../test/helpers/app.js';
import { corpus, withMailbox } from '../test/helpers/incoming.js';
import { connectOutlook, signIn } from '../test/helpers/outlook.js';
import { startDovecot } from '../test/peers/dovecot.js';
import { startIdentityServer } from '../test/peers/identity-server.js';
import { secondsSince } from './outlook-setup.js';

const MAILBOX = 'inbound@example.test';
/** Messages each side fetches once before the measured run (fewer when the run itself is smaller). */
const WARMUP = 500;
const PASSWORD = 'bench-append-only';

export interface InboundFigures {
  dialect: DialectName;
  /** The parse budget the run had (JUNIPER_PARSE_BUDGET_SECONDS), ms; 0: none. */
  budgetMs: number;
  messages: number;
  bytes: number;
  raw: number;
  juniper: number;
  /** CPU of this process (user + system) per message in each run, µs: less at the mercy of the machine's load than throughput. */
  cpu: { raw: number; juniper: number };
  /**
   * One large message fetched and stored after the run: its size, the peak heap growth meanwhile (this thread's
   * heap and Buffers), and the peak growth of the resident size (the whole process: parse workers' heaps too).
   */
  big: { bytes: number; growth: number; rssGrowth: number };
}

/** A message of about `bytes` bytes: a line of text and one base64 attachment (random, so nothing compresses it away). */
function bigMessage(to: string, bytes: number): Buffer {
  const content = crypto.randomBytes(Math.floor((bytes * 3) / 4) - 1024).toString('base64').replace(/.{76}/g, '$&\r\n');
  const head = [`From: "Big Sender" <big@client.test>`, `To: ${to}`, 'Subject: the scanned contract', `Message-ID: <big-${crypto.randomUUID()}@client.test>`, 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="big"'];
  return Buffer.from(
    [...head, '', '--big', 'Content-Type: text/plain; charset=utf-8', '', 'The contract, scanned.', '--big', 'Content-Type: application/pdf; name="contract.pdf"', 'Content-Transfer-Encoding: base64', '', content, '--big--', ''].join('\r\n'),
  );
}

/**
 * Peak growth of the V8 heap plus Buffers outside it (process.memoryUsage heapUsed + external) while `run` runs,
 * from a collected start. One gc() is not a collected start: V8 frees the memory of dead Buffers after the
 * collection, on another thread. After the outbound runs, 365 MB of them were still counted right after gc()
 * and gone 5 ms later, which read as a growth of 0.2 MB for a 25.7 MB message. So it collects and waits until
 * the figure stops falling.
 */
async function peakGrowth(run: () => Promise<unknown>): Promise<{ growth: number; rssGrowth: number }> {
  const gc = vm.runInNewContext('gc') as () => void;
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  let base = Infinity;
  for (let round = 0; round < 20; round++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const now = used();
    if (base - now < 1024 * 1024) {
      base = Math.min(base, now);
      break;
    }
    base = now;
  }
  let peak = base;
  const rssBase = process.memoryUsage.rss();
  let rssPeak = rssBase;
  const sampler = setInterval(() => {
    peak = Math.max(peak, used());
    rssPeak = Math.max(rssPeak, process.memoryUsage.rss());
  }, 5);
  try {
    await run();
  } finally {
    clearInterval(sampler);
  }
  return { growth: Math.max(peak, used()) - base, rssGrowth: Math.max(rssPeak, process.memoryUsage.rss()) - rssBase };
}

export async function inbound(dialect: DialectName, n: number, bigBytes = 25 * 1024 * 1024): Promise<InboundFigures> {
  const idp = await startIdentityServer();
  const dovecot = await startDovecot({ identityUrl: idp.url, users: { [MAILBOX]: PASSWORD } });
  // JUNIPER_PARSE_WORKERS, JUNIPER_PARSE_BUDGET_SECONDS and JUNIPER_FETCH_BATCH_SIZE read and checked as a deployment's are (absent: the defaults).
  const { fetch } = loadConfig({ JUNIPER_PARSE_WORKERS: process.env.JUNIPER_PARSE_WORKERS, JUNIPER_PARSE_BUDGET_SECONDS: process.env.JUNIPER_PARSE_BUDGET_SECONDS, JUNIPER_FETCH_BATCH_SIZE: process.env.JUNIPER_FETCH_BATCH_SIZE });
  const t = await startTestApp(dialect, { logLevel: 'warn', fetch });
  try {
    const messages = corpus(n, MAILBOX);
    const bytes = messages.reduce((sum, m) => sum + m.raw.length, 0);
    // APPEND over one connection fills the mailbox far faster than n LMTP sessions.
    const append = (raws: Buffer[]) =>
      withMailbox(dovecot, MAILBOX, PASSWORD, 'INBOX', async (client) => {
        for (let i = 0; i < raws.length; i += 100) await Promise.all(raws.slice(i, i + 100).map((raw) => client.append('INBOX', raw)));
      });
    const warmup = corpus(Math.min(WARMUP, n), MAILBOX).map((m) => m.raw);
    await append(warmup);

    const http = await t.app.http();
    const admin = await t.createUser('admin', 'admin');
    const session = await signIn(http, 'admin', admin.password);
    const { parameters, settings, incomingServers, incoming, tokens } = t.app.services;
    await parameters.set('web.base.url', 'https://juniper.example.com', cliActor);
    await parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
    await settings.update({ customEmailServers: true, outlook: { enabled: true, clientId: '3f2504e0-4f89-41d3-9a0c-0305e82c3301', clientSecret: 'bench-secret-0123456789abcdefghij' } }, cliActor);
    const created = await http.inject({
      method: 'POST',
      url: '/api/v1/incoming-servers',
      headers: { cookie: session.cookie, 'x-csrf-token': session.csrfToken },
      payload: { name: 'bench', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: dovecot.imapsPort, security: 'ssl', allowSelfSigned: true },
    });
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json<{ id: number }>().id;
    assert.equal((await connectOutlook(http, session, 'incoming', id)).statusCode, 303);
    const confirmed = await incoming.testAndConfirm(await incomingServers.get(id));
    assert.ok(confirmed.ok, confirmed.message);

    const { accessToken } = await tokens.accessToken('incoming', id);
    const client = new ImapFlow({ host: '127.0.0.1', port: dovecot.imapsPort, secure: true, tls: { rejectUnauthorized: false }, auth: { user: MAILBOX, accessToken }, logger: false });
    await client.connect();
    await client.mailboxOpen('INBOX');
    const rawFetch = async (range: string) => {
      let seen = 0;
      for await (const m of client.fetch(range, { uid: true, source: true })) if (m.source) seen++;
      return seen;
    };
    // Warm-up, not measured: both sides fetch the first messages once, so the figures below are a running
    // worker's, not the JIT compiling the parsers and imapflow's response handling in a fresh process.
    if ((await rawFetch('1:*')) !== warmup.length) throw new Error('raw imapflow: the warm-up messages are not all there');
    const warm = await incoming.fetchNow(await incomingServers.get(id));
    if (warm.stored !== warmup.length) throw new Error(`juniper: the warm-up stored ${JSON.stringify(warm)}`);
    await append(messages.map((m) => m.raw));
    await client.noop();

    const rawStart = process.hrtime.bigint();
    const rawCpu = process.cpuUsage();
    const seen = await rawFetch(`${warmup.length + 1}:*`);
    const rawSeconds = secondsSince(rawStart);
    const rawCpuUs = cpuSince(rawCpu) / n;
    await client.logout();
    if (seen !== n) throw new Error(`raw imapflow: expected ${n} messages, got ${seen}`);

    const server = await incomingServers.get(id);
    const stopProfile = await profile(`inbound-${dialect}`);
    const start = process.hrtime.bigint();
    const cpu = process.cpuUsage();
    const counts = await incoming.fetchNow(server);
    const seconds = secondsSince(start);
    const juniperCpuUs = cpuSince(cpu) / n;
    await stopProfile();
    if (counts.stored + counts.duplicates + counts.quarantined !== n) throw new Error(`juniper: expected ${n} messages handled, got ${JSON.stringify(counts)}`);

    const big = bigMessage(MAILBOX, bigBytes);
    await withMailbox(dovecot, MAILBOX, PASSWORD, 'INBOX', (c) => c.append('INBOX', big));
    let bigCounts: Awaited<ReturnType<typeof incoming.fetchNow>> | undefined;
    const { growth, rssGrowth } = await peakGrowth(async () => (bigCounts = await incoming.fetchNow(await incomingServers.get(id))));
    if (bigCounts?.stored !== 1) throw new Error(`juniper: the large message was not stored: ${JSON.stringify(bigCounts)}`);
    return { dialect, budgetMs: fetch.parseBudgetMs ?? 0, messages: n, bytes, raw: n / rawSeconds, juniper: n / seconds, cpu: { raw: rawCpuUs, juniper: juniperCpuUs }, big: { bytes: big.length, growth, rssGrowth } };
  } finally {
    await t.close();
    await dovecot.stop();
    await idp.stop();
  }
}

/** Microseconds of this process's CPU since `start` (process.cpuUsage: the raw client, or Juniper and its database driver). */
function cpuSince(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return d.user + d.system;
}

/** INBOUND_PROFILE=<dir>: a CPU profile of Juniper's fetch alone (open it in Chrome DevTools or speedscope). */
async function profile(name: string): Promise<() => Promise<void>> {
  const dir = process.env.INBOUND_PROFILE;
  if (!dir) return async () => {};
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  return async () => {
    const { profile: p } = await session.post('Profiler.stop');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${name}.cpuprofile`), JSON.stringify(p));
    session.disconnect();
  };
}

const mbs = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;

// The collector is called before measuring, so the growth is this message's, not garbage left before it.
v8.setFlagsFromString('--expose-gc');

export function printInbound(f: InboundFigures): void {
  console.log(`inbound, ${f.dialect}, ${f.messages} messages (${(f.bytes / 1048576).toFixed(1)} MB) in Dovecot over XOAUTH2 (IMAPS):`);
  console.log(`  raw imapflow, source in one FETCH: ${f.raw.toFixed(0)} msgs/s`);
  console.log(`  juniper fetch (parse, store, \\Seen): ${f.juniper.toFixed(0)} msgs/s (parse workers: ${sharedParseWorkers() || 'none, parsed on the main thread'})`);
  console.log(`  CPU of this process a message: raw ${f.cpu.raw.toFixed(0)} µs, juniper ${f.cpu.juniper.toFixed(0)} µs (${(f.cpu.juniper / f.cpu.raw).toFixed(1)}x; Dovecot's and PostgreSQL's are not in it)`);
  console.log(`  memory: one ${mbs(f.big.bytes)} message fetched and stored: heap growth ${mbs(f.big.growth)}, ${(f.big.growth / f.big.bytes).toFixed(1)}x its size; resident size ${mbs(f.big.rssGrowth)}, ${(f.big.rssGrowth / f.big.bytes).toFixed(1)}x (parse budget: ${f.budgetMs ? `${f.budgetMs / 1000} s, so parsed on a worker` : 'none, parsed on the main thread'})`);
  console.log(`ratio inbound ${f.dialect}: juniper/raw ${(f.juniper / f.raw).toFixed(2)}x`);
}
