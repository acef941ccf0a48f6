// Peers going away and coming back. The SMTP server down for a while: mails are retried with growing
// backoff, stay queued with a reason that names the server, and all go out once it is back on its port
// (the dispatcher's clock is moved instead of waiting out the backoff). PostgreSQL restarted under load (a
// private cluster, never the shared one): running `juniper worker` and `juniper serve` processes recover by
// themselves, none exits, every mail is sent, the API answers again. Dovecot dropping the connection
// mid-fetch (its imap process SIGKILLed): the run fails and records why, the next run resumes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { cliActor } from '../../src/audit/audit-log.js';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { BASE_DELAY_MS, GROWTH_FACTOR, JITTER } from '../../src/lib/backoff.js';
import { createLogger } from '../../src/lib/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { cliEnv, projectRoot } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';
import { corpus, deliverAll, incomingApi, seenByUid } from '../helpers/incoming.js';
import { headersOf, testDispatcher } from '../helpers/outgoing.js';
import { sleep, startJuniper, until, type JuniperProcess } from '../helpers/processes.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { freePort } from '../peers/free-port.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const run = promisify(execFile);
const PASSWORDS = { 'notifications@example.com': 'pw' };

async function addSinkServer(app: TestApp['app'], port: number, name = 'Office relay'): Promise<number> {
  const server = await app.services.outgoingServers.create(
    { name, host: '127.0.0.1', port, security: 'starttls', auth: 'password', username: 'notifications@example.com', password: 'pw', fromFilter: null, priority: 10, active: true, allowSelfSigned: true },
    cliPrincipal,
    cliActor,
  );
  return server.id;
}

async function enqueue(app: TestApp['app'], n: number, parallel = 1): Promise<Set<string>> {
  const ids = new Set<string>();
  for (let i = 0; i < n; i += parallel) {
    const done = await Promise.all(
      Array.from({ length: Math.min(parallel, n - i) }, (_, k) =>
        app.services.outbox.enqueue({ from: 'notifications@example.com', to: [`r${i + k}@client.test`], subject: `outage ${i + k}`, text: 'hello' }, null, cliActor),
      ),
    );
    for (const r of done) ids.add(r.messageId);
  }
  return ids;
}

const arrivedIds = async (sink: SmtpSink) => Promise.all(sink.messages.map(async (m) => (await headersOf(m.raw)).messageId));

for (const dialect of dialects) {
  describe(`SMTP server down for a while (${dialect})`, () => {
    let t: TestApp;
    after(async () => t.close());

    it('mails are retried with growing backoff, stay queued naming the server, and all go out once it is back', async () => {
      t = await startTestApp(dialect);
      const first = await startSmtpSink({ auth: 'password', passwords: PASSWORDS });
      const port = first.port;
      await addSinkServer(t.app, port);
      const d = testDispatcher(t.app);
      try {
        // The server works, then goes away (its port closed).
        const early = await enqueue(t.app, 5);
        assert.equal(await d.drain(), 5);
        await first.stop();
        const during = await enqueue(t.app, 30);

        const t0 = Date.now();
        assert.equal(await d.dispatcher.runOnce(), 30);
        let rows = await t.app.database.db.selectFrom('outgoing_mails').selectAll().where('message_id', 'in', [...during]).execute();
        for (const r of rows) {
          assert.equal(r.state, 'queued', 'a connection failure keeps the mail queued');
          assert.equal(r.attempts, 1);
          assert.equal(r.failure_type, 'connection');
          assert.match(r.failure_reason ?? '', new RegExp(`127\\.0\\.0\\.1:${port}`), `the reason names the server: ${r.failure_reason}`);
          const wait = r.next_attempt_at - t0;
          assert.ok(wait >= BASE_DELAY_MS * (1 - JITTER) - 1000 && wait <= BASE_DELAY_MS * (1 + JITTER) + 1000, `first retry after about 30 s (${wait} ms)`);
        }
        const view = await t.app.services.queue.get(rows[0]!.id);
        assert.equal(view.waiting_reason, null, 'an outage is a retry, not a wait for an admin');
        assert.equal(await d.dispatcher.runOnce(), 0, 'nothing is due before its backoff');

        // Still down at the first retry: the next wait is longer.
        d.advance(BASE_DELAY_MS * (1 + JITTER) + 1000);
        const t1 = Date.now() + BASE_DELAY_MS * (1 + JITTER) + 1000;
        assert.equal(await d.dispatcher.runOnce(), 30);
        rows = await t.app.database.db.selectFrom('outgoing_mails').selectAll().where('message_id', 'in', [...during]).execute();
        for (const r of rows) {
          assert.equal(r.state, 'queued');
          assert.equal(r.attempts, 2);
          const wait = r.next_attempt_at - t1;
          assert.ok(wait >= BASE_DELAY_MS * GROWTH_FACTOR * (1 - JITTER) - 1000, `the second wait grows (${wait} ms)`);
        }

        // Back on the same port: everything due goes out, once.
        const second = await startSmtpSink({ auth: 'password', passwords: PASSWORDS, port });
        try {
          d.advance(BASE_DELAY_MS * GROWTH_FACTOR * (1 + JITTER) + 1000);
          assert.equal(await d.drain(), 30);
          const counts = await t.app.services.queue.countByState();
          assert.deepEqual(counts, { queued: 0, sending: 0, sent: 35, failed: 0, cancelled: 0 });
          const ids = await arrivedIds(second);
          assert.equal(ids.length, 30, 'each mail delivered once after the outage');
          assert.deepEqual(new Set(ids), during);
          for (const id of early) assert.ok(!ids.includes(id), 'mails sent before the outage are not sent again');
          const sent = await t.app.database.db.selectFrom('outgoing_mails').select(['failure_type', 'failure_reason', 'attempts']).where('message_id', 'in', [...during]).execute();
          assert.ok(sent.every((r) => r.failure_type === null && r.failure_reason === null && r.attempts === 3), 'the outage reason is cleared once sent');
        } finally {
          await second.stop();
        }
      } finally {
        await d.close();
      }
    });
  });
}

describe('PostgreSQL restarted under load', () => {
  // A private cluster of this test's own: the shared one serves every other test file.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-pg-restart-'));
  const processes: JuniperProcess[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  const pgScript = (name: string, ...args: string[]) => run('bash', [path.join(projectRoot, 'scripts/peers', name), dir, ...args]);
  after(async () => {
    await Promise.all(processes.map((w) => w.kill('SIGKILL')));
    for (const c of cleanups.reverse()) await c();
    await pgScript('postgres-stop.sh');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('running juniper worker and serve processes recover by themselves: none exits, every mail is sent, the API answers again', async () => {
    const started = Date.now();
    const port = String(await freePort());
    const adminUrl = (await pgScript('postgres-start.sh', port)).stdout.trim();
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query('CREATE DATABASE juniper');
    await admin.end();
    const url = adminUrl.replace(/\/postgres$/, '/juniper');
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-pg-restart-data-'));
    const env = { ...cliEnv(dataDir, url), JUNIPER_LOG_LEVEL: 'warn', JUNIPER_SEND_LEASE_SECONDS: '3', JUNIPER_SEND_BATCH_SIZE: '20' };
    // The test's own app shares the outage (it enqueues after the restart through the same kind of pool).
    const app = await createApp(loadConfig(env), { logger: createLogger('silent') });
    const sink = await startSmtpSink({ auth: 'password', passwords: PASSWORDS });
    cleanups.push(async () => {
      await sink.stop();
      await app.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    });
    await addSinkServer(app, sink.port);
    const before = await enqueue(app, 1500, 8);

    const httpPort = await freePort();
    processes.push(startJuniper(env, ['worker']), startJuniper(env, ['worker']), startJuniper({ ...env, JUNIPER_PORT: String(httpPort) }, ['serve']));
    await app.services.users.create({ login: 'admin', email: 'admin@example.com', password: 'pw-admin-0123456789', role: 'admin' }, cliActor);
    const { key } = await app.services.apiKeys.create(await app.services.users.requireByLogin('admin'), 'outage test', cliActor);
    // An API call that needs the database (the key is looked up, then the mails are listed).
    const apiStatus = async () => {
      try {
        return (await fetch(`http://127.0.0.1:${httpPort}/api/v1/mails?limit=1`, { headers: { authorization: `Bearer ${key}` } })).status;
      } catch {
        return 0;
      }
    };
    await until(async () => (await apiStatus()) === 200, 30_000, () => 'juniper serve to answer');
    await until(() => sink.messages.length >= 300, 60_000, () => `300 deliveries before the restart (have ${sink.messages.length})`);
    const atStop = sink.messages.length;
    await pgScript('postgres-stop.sh');
    // Down long enough for every worker round to fail on a refused connection.
    await sleep(1000);
    const whileDown = await apiStatus();
    await sleep(1000);
    await pgScript('postgres-start.sh', port);
    const down = sink.messages.length - atStop;
    assert.ok(whileDown >= 500, `the API answers an error while the database is away, it does not hang (${whileDown})`);
    await until(async () => (await apiStatus()) === 200, 20_000, () => 'the API to answer again after the restart');

    const afterRestart = await enqueue(app, 200, 8);
    await until(
      async () => (await app.services.queue.countByState()).sent === 1700,
      90_000,
      () => `every mail sent after the restart (sink has ${sink.messages.length}); ${processes.map((w) => w.output()).join('\n')}`,
    );
    for (const w of processes) assert.ok(w.child.exitCode === null && w.child.signalCode === null, `process ${w.pid} kept running through the restart:\n${w.output()}`);
    for (const w of processes) {
      const exit = await w.kill('SIGTERM');
      assert.equal(exit.code, 0, `process ${w.pid} stops cleanly:\n${w.output()}`);
    }

    const counts = await app.services.queue.countByState();
    assert.deepEqual(counts, { queued: 0, sending: 0, sent: 1700, failed: 0, cancelled: 0 });
    const arrived = await arrivedIds(sink);
    const unique = new Set(arrived);
    for (const id of [...before, ...afterRestart]) assert.ok(unique.has(id), `mail ${id} was lost`);
    assert.equal(unique.size, 1700);
    // Mails sent while the database was away could not be recorded: their leases expire and they go again.
    const duplicates = arrived.length - unique.size;
    assert.ok(duplicates <= 3 * 20, `at most the batch each process had in flight is repeated (${duplicates} duplicates)`);
    console.log(
      `[outages pg restart] 1,700 mails, 2 juniper worker + 1 juniper serve, PostgreSQL down 2 s: ${down} delivered while it was down, API status while down ${whileDown}, ${duplicates} duplicates, ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  });
});

/** SIGKILLs the imap processes of this Dovecot (children of its master): their clients' connections drop. */
function dropImapSessions(dovecot: Dovecot): number {
  const master = Number(fs.readFileSync(path.join(dovecot.dir, 'run', 'master.pid'), 'utf8').trim());
  let killed = 0;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // "pid (comm) state ppid …"
    const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
    if (m?.[1] === 'imap' && Number(m[2]) === master) {
      process.kill(Number(entry), 'SIGKILL');
      killed++;
    }
  }
  return killed;
}

describe('Dovecot dropping the connection mid-fetch', () => {
  const PASSWORD = 'imap-secret';
  const user = (dialect: string) => `dropped-${dialect}@example.test`;
  let idp: IdentityServer;
  let dovecot: Dovecot;
  before(async () => {
    idp = await startIdentityServer({});
    dovecot = await startDovecot({ identityUrl: idp.url, users: Object.fromEntries(dialects.map((d) => [user(d), PASSWORD])) });
  });
  after(async () => {
    await dovecot.stop();
    await idp.stop();
  });

  for (const dialect of dialects) {
    it(`the run fails and records why on the server, nothing unstored is \\Seen, the next run resumes and completes (${dialect})`, async () => {
      const t = await startTestApp(dialect);
      try {
        const http: FastifyInstance = await t.app.http();
        const key = (await t.createUser('admin', 'admin')).apiKey;
        const { confirmed, api } = incomingApi(() => ({ http, key }), () => dovecot, PASSWORD);
        const mailbox = user(dialect);
        const id = await confirmed(mailbox);
        const total = 300;
        await deliverAll(dovecot, mailbox, corpus(total, mailbox).map((m) => m.raw), 16);
        const { db } = t.app.database;
        const stored = async () => (await db.selectFrom('messages').select('uid').where('server_id', '=', id).execute()).map((r) => r.uid);

        const server = await t.app.services.incomingServers.get(id);
        const fetching = t.app.services.incoming.fetchNow(server, { batchSize: 50 });
        const outcome = fetching.then(
          () => 'completed',
          (err: unknown) => (err as Error).message,
        );
        await until(async () => (await stored()).length >= 80, 30_000, () => '80 stored messages');
        assert.ok(dropImapSessions(dovecot) >= 1, 'an imap session was dropped');
        const message = await outcome;
        assert.notEqual(message, 'completed', 'the run ends with the dropped connection');

        const storedUids = new Set(await stored());
        assert.ok(storedUids.size < total, `dropped mid-run (${storedUids.size} of ${total} stored)`);
        const flags = await seenByUid(dovecot, mailbox, PASSWORD);
        for (const [uid, seen] of flags) if (seen) assert.ok(storedUids.has(uid), `UID ${uid} is \\Seen but not stored`);
        const after1 = (await api('GET', `/api/v1/incoming-servers/${id}`)).body;
        assert.ok(typeof after1.lastError === 'string' && after1.lastError.length > 0, 'the failure is recorded on the server');

        const counts = await t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(id), { batchSize: 50 });
        assert.equal(counts.fetched, total - storedUids.size, 'the next run fetches only what was not stored');
        assert.equal(counts.duplicates, 0);
        const rows = await db.selectFrom('messages').select(['uid', 'dedupe_key']).where('server_id', '=', id).execute();
        assert.equal(rows.length, total);
        assert.equal(new Set(rows.map((r) => r.dedupe_key)).size, total, 'each message stored once');
        assert.ok([...(await seenByUid(dovecot, mailbox, PASSWORD)).values()].every(Boolean), 'every message \\Seen');
        assert.equal((await api('GET', `/api/v1/incoming-servers/${id}`)).body.lastError, null, 'the error clears with a good run');
        console.log(`[outages dovecot drop ${dialect}] dropped after ${storedUids.size} of ${total} stored; the run ended with: ${message}; last error: ${String(after1.lastError)}`);
      } finally {
        await t.close();
      }
    });
  }
});
