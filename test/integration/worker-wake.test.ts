// Cross-process wake-up on PostgreSQL (src/db/wake-channel.ts): a mail queued through one app's API is sent by
// the dispatcher of another app on the same database at once, not at its next poll. That dispatcher polls only
// once a minute here, and every wait below ends well within that minute, so only the notification can explain
// a send. The listening connection comes back after PostgreSQL kills it, and closing the app ends it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { describeDatabase } from '../../src/db/database.js';
import { LISTENER_APPLICATION_NAME, openWakeChannel, WAKE_CHANNEL } from '../../src/db/wake-channel.js';
import { createLogger } from '../../src/lib/logger.js';
import { createWorkers, type Workers } from '../../src/worker/workers.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const POLL_MS = 60_000;
/** Every wait for a send: well under POLL_MS, so a send within it was not found by polling. */
const WITHIN_MS = 20_000;

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = WITHIN_MS): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('workers woken by PostgreSQL notifications', () => {
  let api: TestApp;
  let worker: TestApp;
  let workers: Workers;
  let sink: SmtpSink;
  let key: string;
  let sent = 0;
  let workerClosed = false;
  const closeWorker = async () => {
    if (workerClosed) return;
    workerClosed = true;
    await workers.stop();
    await worker.app.close();
  };

  before(async () => {
    api = await startTestApp('postgres');
    // The second app: the same database and data dir (hence the vault key), its own pool, as `juniper worker`.
    worker = await startTestApp('postgres', { database: api.config.database, dataDir: api.config.dataDir });
    sink = await startSmtpSink({ auth: 'password', passwords: { 'notifications@example.com': 'pw' } });
    await api.app.services.outgoingServers.create(
      { name: 'sink', host: '127.0.0.1', port: sink.port, security: 'starttls', auth: 'password', username: 'notifications@example.com', password: 'pw', fromFilter: null, priority: 10, active: true, allowSelfSigned: true },
      cliPrincipal,
      cliActor,
    );
    ({ apiKey: key } = await api.createUser('sender', 'admin'));
    workers = createWorkers(worker.app, { pollMs: POLL_MS });
    workers.start();
  });

  after(async () => {
    await closeWorker();
    await sink.stop();
    await api.close();
  });

  /** The backends LISTENing for due mail on this test's database (the worker app's listener). */
  const listeners = async () =>
    (
      await sql<{ pid: number }>`select pid from pg_stat_activity where datname = current_database() and application_name = ${LISTENER_APPLICATION_NAME} and state = 'idle' and query = ${`LISTEN ${WAKE_CHANNEL}`}`.execute(api.app.database.db)
    ).rows.map((r) => r.pid);

  /** Queues one mail through the API app's REST API and waits until it is sent and recorded; resolves to its sender. */
  async function sendThroughApi(): Promise<string> {
    const http = await api.app.http();
    const res = await http.inject({ method: 'POST', url: '/api/v1/mails', headers: { authorization: `Bearer ${key}` }, payload: { from: 'notifications@example.com', to: ['r@client.test'], subject: `wake ${sent}`, text: 'hello' } });
    assert.equal(res.statusCode, 202, res.body);
    const { id } = res.json<{ id: number }>();
    sent++;
    await until(async () => (await api.app.services.queue.get(id)).state === 'sent', `mail ${id} to be sent`);
    assert.equal(sink.messages.length, sent);
    return (await api.app.services.queue.get(id)).sent_by ?? '';
  }

  it('sends a mail queued by another app at once, long before its poll', async () => {
    await until(async () => (await listeners()).length === 1, 'the worker app to listen');
    // The first may be found by the dispatcher's first round at start; after it the dispatcher sleeps a minute.
    assert.equal(await sendThroughApi(), workers.dispatcher.owner);
    assert.equal(await sendThroughApi(), workers.dispatcher.owner);
    assert.equal(await sendThroughApi(), workers.dispatcher.owner);
  });

  it('listens again after PostgreSQL killed its connection, and a later enqueue still wakes the worker', async () => {
    const [old] = await listeners();
    assert.ok(old !== undefined);
    await sql`select pg_terminate_backend(${old})`.execute(api.app.database.db);
    await until(async () => {
      const now = await listeners();
      return now.length === 1 && now[0] !== old;
    }, 'a new listening connection');
    assert.equal((worker.logs().match(/lost the PostgreSQL connection that listens for due mail/g) ?? []).length, 1, 'one warning for the outage');
    const where = describeDatabase(worker.config.database);
    assert.ok(
      worker.logs().includes(`lost the PostgreSQL connection that listens for due mail on ${where}; reconnecting, and meanwhile the dispatcher polls for due mail every 60 s`),
      `names the database and the poll: ${worker.logs()}`,
    );
    assert.doesNotMatch(worker.logs(), /could not start listening/, 'it had been listening: this is a lost connection');
    // The first may be the catch-up look after reconnecting; the second only a notification can explain.
    await sendThroughApi();
    await sendThroughApi();
  });

  it('keeps a wake-up that comes while the dispatcher is claiming: the mail is not left for the next poll', async () => {
    const http = await worker.app.http();
    const { queue } = worker.app.services;
    const claim = queue.claimBatch.bind(queue);
    let queuedDuringClaim: number | undefined;
    // The next claim round, after its statement ran: a mail is queued in this process (its outbox nudges the
    // dispatcher at once, while the round is still under way), so only a kept nudge gets it sent within the minute.
    queue.claimBatch = async (...args) => {
      const round = await claim(...args);
      if (queuedDuringClaim === undefined) {
        queuedDuringClaim = -1;
        const res = await http.inject({ method: 'POST', url: '/api/v1/mails', headers: { authorization: `Bearer ${key}` }, payload: { from: 'notifications@example.com', to: ['r@client.test'], subject: 'during a claim', text: 'hello' } });
        assert.equal(res.statusCode, 202, res.body);
        queuedDuringClaim = res.json<{ id: number }>().id;
      }
      return round;
    };
    try {
      // A mail from the API app starts a claim round (by its notification); the mail queued during it must follow.
      const res = await (await api.app.http()).inject({ method: 'POST', url: '/api/v1/mails', headers: { authorization: `Bearer ${key}` }, payload: { from: 'notifications@example.com', to: ['r@client.test'], subject: 'starts a claim', text: 'hello' } });
      assert.equal(res.statusCode, 202, res.body);
      await until(() => queuedDuringClaim !== undefined && queuedDuringClaim > 0, 'a mail queued during a claim');
      for (const id of [res.json<{ id: number }>().id, queuedDuringClaim!]) await until(async () => (await api.app.services.queue.get(id)).state === 'sent', `mail ${id} to be sent`);
      sent += 2;
      assert.equal(sink.messages.length, sent);
    } finally {
      queue.claimBatch = claim;
    }
  });

  it('stops listening when the app closes', async () => {
    await closeWorker();
    await until(async () => (await listeners()).length === 0, 'the listening connection to end');
    // Closed for good: no reconnection after the first reconnect delay (1 s) has passed either.
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(await listeners(), [], 'a closed listener does not come back');
  });
});

describe('a wake listener that cannot start', () => {
  it('says it could not start listening, on which database, that sending polls meanwhile, and warns once while it retries', async () => {
    const t = await startTestApp('postgres');
    let captured = '';
    const log = createLogger('info', { write: (line: string) => void (captured += line) });
    // The same real PostgreSQL, a database it does not have: every connection is refused after the startup packet.
    const url = new URL(t.config.database.kind === 'postgres' ? t.config.database.url : '');
    url.password = 'wake-listener-secret-pw';
    url.pathname = '/juniper_no_such_database';
    const config = { kind: 'postgres' as const, url: url.toString() };
    const channel = openWakeChannel(config, t.app.database.db, log);
    try {
      const stop = channel.listen(() => undefined, { pollMs: 2500 });
      await until(() => captured.includes('could not start listening'), 'the warning', 10_000);
      // The reconnection attempts after 1 s and 2 s fail too: still the one warning.
      await new Promise((r) => setTimeout(r, 3500));
      await stop();
      const warnings = captured.split('\n').filter((l) => l.includes('"op":"wake.listen"'));
      assert.equal(warnings.length, 1, captured);
      const expected = `could not start listening for notifications of due mail on ${describeDatabase(config)}; sending still works: the dispatcher polls for due mail every 2.5 s; retrying`;
      assert.ok(warnings[0]!.includes(expected), warnings[0]);
      assert.match(warnings[0]!, /PostgreSQL 127\.0\.0\.1:\d+\/juniper_no_such_database/);
      assert.doesNotMatch(captured, /lost the PostgreSQL connection/);
      assert.doesNotMatch(captured, /wake-listener-secret-pw/, 'never the password');
    } finally {
      await channel.close();
      await t.close();
    }
  });
});

describe('the wake channel on SQLite', () => {
  it('is inert: no connection, no notifications', async () => {
    const t = await startTestApp('sqlite');
    try {
      const channel = openWakeChannel(t.config.database, t.app.database.db, createLogger('silent'));
      let woken = 0;
      const stop = channel.listen(() => woken++);
      channel.notify();
      await stop();
      await channel.close();
      assert.equal(woken, 0);
    } finally {
      await t.close();
    }
  });
});
