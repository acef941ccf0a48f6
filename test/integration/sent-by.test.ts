// `sent_by` (migration 011) names the worker that sent a mail, on both databases: two dispatchers with their
// own owner names send from one queue, and each sent row names the one whose connection delivered it, both
// through the group commit of sent mails (markSentMany) and through its one-mail fallback (markSent).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { headersOf, testDispatcher } from '../helpers/outgoing.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

for (const dialect of dialects) {
  describe(`sent_by (${dialect})`, () => {
    let t: TestApp;
    let sink: SmtpSink;
    let serverId: number;
    let adminKey: string;
    const enqueue = async (subject: string) =>
      (await t.app.services.outbox.enqueue({ from: 'notifications@example.com', to: ['customer@client.test'], subject, text: 'body' }, null, cliActor)).id;
    const sentBy = async () =>
      Object.fromEntries(
        (await t.app.database.db.selectFrom('outgoing_mails').select(['subject', 'sent_by', 'state']).execute()).map((r) => [r.subject, `${r.state} by ${r.sent_by}`]),
      );

    before(async () => {
      t = await startTestApp(dialect);
      adminKey = (await t.createUser('admin', 'admin')).apiKey;
      sink = await startSmtpSink({ auth: 'password', passwords: { 'notifications@example.com': 'pw' } });
      serverId = (
        await t.app.services.outgoingServers.create(
        { name: 'sink', host: '127.0.0.1', port: sink.port, security: 'starttls', auth: 'password', username: 'notifications@example.com', password: 'pw', fromFilter: null, priority: 10, active: true, allowSelfSigned: true },
          cliPrincipal,
          cliActor,
        )
      ).id;
    });
    after(async () => {
      await sink.stop();
      await t.close();
    });

    it('names the dispatcher that sent each mail', async () => {
      const a = testDispatcher(t.app, 'worker-a');
      const b = testDispatcher(t.app, 'worker-b');
      let lastId: number;
      try {
        await enqueue('a1');
        await enqueue('a2');
        assert.equal(await a.drain(), 2);
        lastId = await enqueue('b1');
        assert.equal(await b.drain(), 1);
      } finally {
        await a.close();
        await b.close();
      }
      assert.deepEqual(await sentBy(), { a1: 'sent by worker-a', a2: 'sent by worker-a', b1: 'sent by worker-b' });
      // The API view shows it too.
      const http = await t.app.http();
      const res = await http.inject({ method: 'GET', url: `/api/v1/mails/${lastId}`, headers: { authorization: `Bearer ${adminKey}` } });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json<{ sentBy: unknown }>().sentBy, 'worker-b');
      const arrived = await Promise.all(sink.messages.map(async (m) => (await headersOf(m.raw)).subject));
      assert.deepEqual(arrived.sort(), ['a1', 'a2', 'b1']);
    });

    it("shows the worker's name (host and process) to admins only: a user sees null for own mail", async () => {
      const ann = await t.createUser('ann', 'user');
      const http = await t.app.http();
      const posted = await http.inject({ method: 'POST', url: '/api/v1/mails', headers: { authorization: `Bearer ${ann.apiKey}` }, payload: { from: 'ann@example.com', to: ['customer@client.test'], subject: 'ann1', text: 'body' } });
      assert.equal(posted.statusCode, 202, posted.body);
      const id = posted.json<{ id: number }>().id;
      const d = testDispatcher(t.app, 'host-7:4242:abc');
      try {
        assert.equal(await d.drain(), 1);
      } finally {
        await d.close();
      }
      const as = async (key: string, url: string) => (await http.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } })).json<unknown>();
      const seen = (await as(adminKey, `/api/v1/mails/${id}`)) as { state: string; sentBy: unknown };
      assert.equal(seen.state, 'sent');
      assert.equal(seen.sentBy, 'host-7:4242:abc', 'an admin sees which worker sent it');
      const own = (await as(ann.apiKey, `/api/v1/mails/${id}`)) as { state: string; sentBy: unknown };
      assert.equal(own.state, 'sent');
      assert.equal(own.sentBy, null);
      const listed = (await as(ann.apiKey, '/api/v1/mails')) as { id: number; sentBy: unknown }[];
      assert.deepEqual(listed.map((m) => [m.id, m.sentBy]), [[id, null]]);
      assert.ok(!JSON.stringify(listed).includes('host-7'), 'nowhere in what the user gets');
    });

    it('is written by the one-mail path too, and only by the lease holder', async () => {
      const { queue } = t.app.services;
      const id = await enqueue('single');
      const [claimed] = await queue.claim('worker-c', 1, 60_000);
      assert.equal(claimed?.id, id);
      const outcome = { serverId, effectiveFrom: 'notifications@example.com', envelopeFrom: 'notifications@example.com', response: '250 ok', rejected: [] };
      // A worker without the lease records nothing, so it cannot claim the send as its own.
      await queue.markSent(id, 'worker-d', outcome);
      assert.equal((await sentBy()).single, 'sending by null');
      await queue.markSent(id, 'worker-c', outcome);
      assert.equal((await sentBy()).single, 'sent by worker-c');
    });
  });
}
