// The outgoing queue under faults, on both databases, against a real SMTP server: a mail whose worker keeps
// stopping without a result fails as `crashed` after the maximum of attempts (others still flow); a failed
// bookkeeping write does not end a round while its other mails are still being sent; retry and cancel
// racing a claim answer 409, never 500; a manual retry restarts a waiting mail's maximum age.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { MAX_ATTEMPTS } from '../../src/lib/backoff.js';
import { crashedReason } from '../../src/outgoing/delivery-failure.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { headersOf, testDispatcher } from '../helpers/outgoing.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const passwords = { 'john@example.com': 'john-pw', 'jane@example.com': 'jane-pw' };
const DAY = 86_400_000;

for (const dialect of dialects) {
  describe(`outgoing queue under faults (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    let sink: SmtpSink;

    const api = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) => {
      const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
      return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
    };
    const server = async (username: keyof typeof passwords, password: string = passwords[username]) => {
      const r = await api('POST', '/api/v1/outgoing-servers', {
        name: username, host: '127.0.0.1', port: sink.port, security: 'starttls', allowSelfSigned: true,
        auth: 'password', username, password, fromFilter: username,
      });
      assert.equal(r.status, 201, r.text);
      return r.body.id as number;
    };
    const send = async (from: string, subject: string) => {
      const r = await api('POST', '/api/v1/mails', { from, to: ['customer@client.test'], subject, text: 'body' });
      assert.equal(r.status, 202, r.text);
      return (r.body as { id: number }).id;
    };
    const mail = async (id: number) => (await api('GET', `/api/v1/mails/${id}`)).body;
    const row = (id: number) => t.app.database.db.selectFrom('outgoing_mails').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const subjects = async () => Promise.all(sink.messages.map(async (m) => (await headersOf(m.raw)).subject));
    /** Nothing left due from an earlier test. */
    const settleQueue = () => t.app.database.db.updateTable('outgoing_mails').set({ state: 'cancelled' }).where('state', 'in', ['queued', 'sending']).execute();
    const reset = async () => {
      await settleQueue();
      for (const s of (await api('GET', '/api/v1/outgoing-servers')).body as unknown as { id: number }[]) await api('DELETE', `/api/v1/outgoing-servers/${s.id}`);
    };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
      sink = await startSmtpSink({ auth: 'password', passwords, tls: 'starttls' });
    });
    after(async () => {
      await sink.stop();
      await t.close();
    });

    it(`a mail whose worker stops without a result ${MAX_ATTEMPTS} times fails as crashed at the next claim; the other mails still go out`, async () => {
      await server('john@example.com');
      const poison = await send('john@example.com', 'poison');
      // Dead workers: each claims the mail (the oldest due) and vanishes before recording anything.
      const start = Date.now();
      for (let i = 1; i <= MAX_ATTEMPTS; i++) {
        const got = await t.app.services.queue.claim(`dead-worker-${i}`, 1, 1000, start + i * 2000);
        assert.deepEqual(got.map((m) => m.id), [poison], `claim ${i} takes the mail again (its lease expired)`);
        assert.equal(got[0]!.attempts, i);
      }
      const others = [await send('john@example.com', 'other 1'), await send('john@example.com', 'other 2'), await send('john@example.com', 'other 3')];
      const d = testDispatcher(t.app, 'live-worker');
      try {
        d.advance(MAX_ATTEMPTS * 2000 + 5000);
        await d.drain();
      } finally {
        await d.close();
      }
      const m = await mail(poison);
      assert.equal(m.state, 'failed', JSON.stringify(m));
      assert.equal(m.failureType, 'crashed');
      assert.equal(m.attempts, MAX_ATTEMPTS, 'the crash claim is not another attempt');
      assert.equal(m.failureReason, crashedReason(MAX_ATTEMPTS), 'the reason written in SQL is the one of crashedReason()');
      assert.match(String(m.failureReason), new RegExp(`stopped without a result in ${MAX_ATTEMPTS} of its ${MAX_ATTEMPTS} attempts`));
      const r = await row(poison);
      assert.equal(r.lease_owner, null);
      assert.equal(r.lost_leases, MAX_ATTEMPTS);
      for (const id of others) assert.equal((await mail(id)).state, 'sent', `mail ${id}`);
      const got = await subjects();
      assert.ok(!got.includes('poison'), 'the crashed mail was never sent');
      for (const s of ['other 1', 'other 2', 'other 3']) assert.ok(got.includes(s), s);
      assert.match(t.logs(), /"failureType":"crashed"/);

      // A manual retry gives it a fresh round of attempts and a clean crash count.
      const retried = await api('POST', `/api/v1/mails/${poison}/retry`);
      assert.equal(retried.status, 200, retried.text);
      assert.equal((await row(poison)).lost_leases, 0);
      await settleQueue();
      await reset();
    });

    it('a failed bookkeeping write for one mail ends the round only after every other send settled; that mail keeps its lease', async () => {
      await server('jane@example.com');
      const failing = await send('jane@example.com', 'write fails');
      const rest = [await send('jane@example.com', 'rest 1'), await send('jane@example.com', 'rest 2'), await send('jane@example.com', 'rest 3'), await send('jane@example.com', 'rest 4')];
      // A real write failure from the database: a trigger refuses to record this one mail as sent.
      const { db } = t.app.database;
      if (dialect === 'sqlite') {
        await sql`create trigger fail_sent before update on outgoing_mails when new.state = 'sent' and new.id = ${sql.lit(failing)} begin select raise(abort, 'simulated write failure'); end`.execute(db);
      } else {
        await sql`create function fail_sent() returns trigger as $$ begin raise exception 'simulated write failure'; end $$ language plpgsql`.execute(db);
        await sql`create trigger fail_sent before update on outgoing_mails for each row when (new.state = 'sent' and new.id = ${sql.lit(failing)}) execute function fail_sent()`.execute(db);
      }
      const d = testDispatcher(t.app, 'bookkeeping-worker');
      try {
        await assert.rejects(d.dispatcher.runOnce(), (err: Error) => {
          assert.match(err.message, /1 of 5 mails of this round could not be recorded/);
          return true;
        });
        // When the round ended, every other mail's outcome was already recorded.
        for (const id of rest) assert.equal((await row(id)).state, 'sent', `mail ${id} settled before the round ended`);
        const stuck = await row(failing);
        assert.equal(stuck.state, 'sending');
        assert.equal(stuck.lease_owner, 'bookkeeping-worker');
        assert.ok(stuck.lease_expires_at! > Date.now(), 'its lease is still held');
        assert.deepEqual(await t.app.services.queue.claim('other-worker', 10, 60_000), [], 'no other worker can claim it while the lease holds');

        await sql`drop trigger fail_sent${sql.raw(dialect === 'postgres' ? ' on outgoing_mails' : '')}`.execute(db);
        // After the lease expires the mail is sent again (at-least-once) and recorded.
        d.advance(t.config.send.leaseMs + 1000);
        assert.equal(await d.drain(), 1);
        const again = await row(failing);
        assert.equal(again.state, 'sent');
        assert.equal(again.attempts, 2);
        assert.equal((await subjects()).filter((s) => s === 'write fails').length, 2, 'delivered twice: the first delivery could not be recorded');
      } finally {
        await d.close();
      }
      await reset();
    });

    it('retry and cancel: 404 for no mail, 409 with the reason for a mail being sent or already sent', async () => {
      const serverId = await server('john@example.com');
      const id = await send('john@example.com', 'conflicts');
      assert.equal((await t.app.services.queue.claim('holder', 10, 60_000)).length, 1);
      for (const action of ['retry', 'cancel']) {
        const busy = await api('POST', `/api/v1/mails/${id}/${action}`);
        assert.equal(busy.status, 409, busy.text);
        assert.equal((busy.body.error as { code: string }).code, 'JUNIPER_ERR_CONFLICT');
        assert.equal((busy.body.error as { message: string }).message, `Mail ${id} is being sent right now; try again when it has finished.`);
        const missing = await api('POST', `/api/v1/mails/999999/${action}`);
        assert.equal(missing.status, 404, missing.text);
      }
      await t.app.services.queue.markSent(id, 'holder', { serverId, effectiveFrom: 'john@example.com', envelopeFrom: 'john@example.com', response: '250 ok', rejected: [] });
      const sent = await api('POST', `/api/v1/mails/${id}/retry`);
      assert.equal(sent.status, 409);
      assert.match((sent.body.error as { message: string }).message, /is sent and cannot be retried/);
      await reset();
    });

    it('retry racing a claim answers 200 or 409, never 500, and leaves the mail in one consistent state', async () => {
      await server('john@example.com');
      const statuses = new Set<number>();
      // The claim starts a little later each round, so that some rounds land it inside the retry's own steps.
      const later = async (turns: number) => {
        for (let k = 0; k < turns; k++) await new Promise((r) => setImmediate(r));
      };
      for (let i = 0; i < 40; i++) {
        const id = await send('john@example.com', `race ${i}`);
        const [res, claimed] = await Promise.all([
          api('POST', `/api/v1/mails/${id}/retry`),
          later(i).then(() => t.app.services.queue.claim(`racer-${i}`, 1, 60_000)),
        ]);
        statuses.add(res.status);
        assert.ok(res.status === 200 || res.status === 409, `round ${i}: ${res.status} ${res.text}`);
        if (res.status === 409) assert.match((res.body.error as { message: string }).message, /is being sent right now/);
        const r = await row(id);
        assert.ok(r.state === 'sending' || r.state === 'queued', r.state);
        if (r.state === 'sending') assert.equal(r.lease_owner, `racer-${i}`);
        assert.ok(claimed.length <= 1);
        await settleQueue();
      }
      assert.ok(statuses.size >= 1);
      await reset();
    });

    it('a manual retry of a waiting mail restarts its maximum age; an old waiting mail not retried fails', async () => {
      await server('jane@example.com', 'wrong-password');
      const retried = await send('jane@example.com', 'waits, retried');
      const left = await send('jane@example.com', 'waits, left alone');
      const d = testDispatcher(t.app, 'wait-worker');
      try {
        await d.drain();
        for (const id of [retried, left]) {
          const m = await mail(id);
          assert.equal(m.state, 'queued', JSON.stringify(m));
          assert.match(String(m.waitingReason), /username and password/);
        }
        // Both have waited four days (more than the three-day maximum) and are due to look again.
        const { db } = t.app.database;
        await db.updateTable('outgoing_mails').set({ created_at: Date.now() - 4 * DAY, next_attempt_at: Date.now() }).where('id', 'in', [retried, left]).execute();
        assert.equal((await api('POST', `/api/v1/mails/${retried}/retry`)).status, 200);
        await d.drain();
        const again = await mail(retried);
        assert.equal(again.state, 'queued', `the retried mail waits again: ${JSON.stringify(again)}`);
        assert.match(String(again.waitingReason), /username and password/);
        const expired = await mail(left);
        assert.equal(expired.state, 'failed', JSON.stringify(expired));
        assert.match(String(expired.failureReason), /Gave up after waiting 3 days/);
      } finally {
        await d.close();
      }
      await reset();
    });

    it('a round that cannot read its servers gives the claimed mails back without counting an attempt', async () => {
      await reset();
      await server('john@example.com');
      const id = await send('john@example.com', 'setup fails');
      const d = testDispatcher(t.app, 'setup-fails');
      // The claim works (outgoing_mails), reading the servers does not: as when the database goes away mid-round.
      await sql`ALTER TABLE outgoing_servers RENAME TO outgoing_servers_away`.execute(t.app.database.db);
      try {
        await assert.rejects(d.dispatcher.runOnce());
      } finally {
        await sql`ALTER TABLE outgoing_servers_away RENAME TO outgoing_servers`.execute(t.app.database.db);
      }
      const given = await row(id);
      assert.deepEqual([given.state, given.attempts, given.lease_owner, given.lost_leases], ['queued', 0, null, 0]);
      assert.equal(await d.drain(), 1);
      assert.equal((await row(id)).state, 'sent');
      await d.close();
      await reset();
    });
  });
}
