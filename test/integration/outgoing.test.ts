// Outgoing mail end to end on both databases: servers created through the API, mails enqueued through
// the API, the real dispatcher, a real SMTP server (smtp-server) on loopback.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { headersOf, testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { replySequence, startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const passwords = { 'john@example.com': 'john-pw', 'jane@example.com': 'jane-pw', 'notifications@example.com': 'notif-pw', 'bulk@example.com': 'bulk-pw' };

for (const dialect of dialects) {
  describe(`outgoing mail through a real SMTP server (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    let sink: SmtpSink;
    let d: TestDispatcher;

    const api = async (method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: object) => {
      const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
      return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
    };
    const server = async (username: keyof typeof passwords, fromFilter: string | null, extra: object = {}) => {
      const r = await api('POST', '/api/v1/outgoing-servers', {
        name: username, host: '127.0.0.1', port: sink.port, security: 'starttls', allowSelfSigned: true,
        auth: 'password', username, password: passwords[username], fromFilter, ...extra,
      });
      assert.equal(r.status, 201, r.text);
      return r.body.id as number;
    };
    const send = async (payload: object) => {
      const r = await api('POST', '/api/v1/mails', { to: ['customer@client.test'], subject: 'hello', text: 'body', ...payload });
      assert.equal(r.status, 202, r.text);
      return r.body as { id: number; messageId: string };
    };
    const mail = async (id: number) => (await api('GET', `/api/v1/mails/${id}`)).body;
    const reset = async () => {
      for (const s of (await api('GET', '/api/v1/outgoing-servers')).body as unknown as { id: number }[]) await api('DELETE', `/api/v1/outgoing-servers/${s.id}`);
    };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
      sink = await startSmtpSink({ auth: 'password', passwords, tls: 'starttls' });
      d = testDispatcher(t.app);
      for (const [k, v] of Object.entries({ 'mail.catchall.domain': 'example.com', 'mail.default.from': 'notifications', 'mail.bounce.alias': 'bounce' })) {
        assert.equal((await api('PUT', `/api/v1/parameters/${k}`, { value: v })).status, 200);
      }
    });
    after(async () => {
      await d.close();
      await sink.stop();
      await t.close();
    });

    it("single server (seed): John's mail leaves as \"John Doe\" <notifications@example.com> with Reply-To john", async () => {
      const before = sink.messages.length;
      await server('notifications@example.com', 'notifications@example.com');
      const { id, messageId } = await send({ from: '"John Doe" <john@example.com>' });
      assert.equal(await d.drain(), 1);
      const m = await mail(id);
      assert.equal(m.state, 'sent', JSON.stringify(m));
      const got = sink.messages[before]!;
      assert.equal(got.user, 'notifications@example.com', 'sent through the notifications server');
      const h = await headersOf(got.raw);
      assert.equal(h.from, '"John Doe" <notifications@example.com>');
      assert.match(h.replyTo, /john@example\.com/);
      assert.equal(h.messageId, messageId, 'the Message-ID given at enqueue is the one sent');
      assert.equal(got.from, 'notifications@example.com', 'envelope sender is the rewritten From');
      assert.deepEqual(got.to, ['customer@client.test']);
      assert.equal(m.effectiveFrom, '"John Doe" <notifications@example.com>');
      await reset();
    });

    it('multi-user (seed): john and jane send through their own servers unchanged, bob through notifications', async () => {
      await server('john@example.com', 'john@example.com');
      await server('jane@example.com', 'jane@example.com');
      await server('notifications@example.com', 'notifications@example.com');
      const start = sink.messages.length;
      await send({ from: 'John Doe <john@example.com>', subject: 'from john' });
      await send({ from: 'jane@example.com', subject: 'from jane' });
      await send({ from: 'Bob <bob@example.com>', subject: 'from bob' });
      assert.equal(await d.drain(), 3);
      const got = new Map<string, { user: string | null; from: string | undefined; replyTo: string }>();
      for (const msg of sink.messages.slice(start)) {
        const h = await headersOf(msg.raw);
        got.set(h.subject, { user: msg.user, from: h.from, replyTo: h.replyTo });
      }
      assert.deepEqual(got.get('from john'), { user: 'john@example.com', from: '"John Doe" <john@example.com>', replyTo: '' });
      assert.deepEqual(got.get('from jane'), { user: 'jane@example.com', from: 'jane@example.com', replyTo: '' });
      assert.equal(got.get('from bob')?.user, 'notifications@example.com');
      assert.equal(got.get('from bob')?.from, '"Bob" <notifications@example.com>');
      assert.match(got.get('from bob')!.replyTo, /bob@example\.com/);
      await reset();
    });

    it('sends mass mailings through the dedicated server even with an empty From filter', async () => {
      await server('notifications@example.com', 'notifications@example.com');
      const bulk = await server('bulk@example.com', null, { priority: 50 });
      assert.equal((await api('PUT', '/api/v1/settings', { massMailing: { dedicatedServer: true, serverId: bulk } })).status, 200);
      const start = sink.messages.length;
      const { id } = await send({ from: 'Marketing <news@example.com>', massMailing: true });
      const normal = await send({ from: 'Marketing <news@example.com>' });
      assert.equal(await d.drain(), 2);
      const users = sink.messages.slice(start).map((m) => m.user).sort();
      assert.deepEqual(users, ['bulk@example.com', 'notifications@example.com']);
      assert.equal((await mail(id)).serverId, bulk);
      assert.notEqual((await mail(normal.id)).serverId, bulk);
      const massFrom = sink.messages.slice(start).find((m) => m.user === 'bulk@example.com')!;
      assert.equal((await headersOf(massFrom.raw)).from, '"Marketing" <news@example.com>', 'mass mail keeps its From');
      assert.equal((await api('PUT', '/api/v1/settings', { massMailing: { dedicatedServer: false } })).status, 200);
      await reset();
    });

    it('retries 451 twice, then sends on the third attempt', async () => {
      await server('notifications@example.com', null);
      sink.setBehaviour({ data: replySequence({ code: 451, message: '4.3.0 Try again later' }, { code: 451, message: '4.3.0 Try again later' }) });
      const { id } = await send({ from: 'notifications@example.com' });
      await d.drain();
      let m = await mail(id);
      assert.equal(m.state, 'queued');
      assert.equal(m.attempts, 1);
      assert.match(String(m.failureReason), /451/);
      assert.equal(await d.drain(), 0, 'not due before its backoff');
      d.advance(60 * 60 * 1000);
      await d.drain();
      assert.equal((await mail(id)).attempts, 2);
      d.advance(60 * 60 * 1000);
      await d.drain();
      m = await mail(id);
      assert.equal(m.state, 'sent', JSON.stringify(m));
      assert.equal(m.attempts, 3);
      sink.setBehaviour({});
      await reset();
    });

    it("fails a 550 with the server's words, and one refused recipient does not stop the others", async () => {
      await server('notifications@example.com', null);
      sink.setBehaviour({ data: () => ({ code: 550, message: '5.7.1 Message rejected as spam' }) });
      const { id } = await send({ from: 'notifications@example.com' });
      await d.drain();
      const m = await mail(id);
      assert.equal(m.state, 'failed');
      assert.match(String(m.failureReason), /5\.7\.1 Message rejected as spam/);
      assert.ok(m.failureType);

      sink.setBehaviour({ rcptTo: (to) => (to === 'nobody@client.test' ? { code: 550, message: '5.1.1 User unknown' } : undefined) });
      const start = sink.messages.length;
      const partial = await send({ from: 'notifications@example.com', to: ['customer@client.test', 'nobody@client.test', 'other@client.test'] });
      await d.drain();
      const p = await mail(partial.id);
      assert.equal(p.state, 'sent');
      assert.deepEqual(sink.messages[start]!.to, ['customer@client.test', 'other@client.test']);
      const rejected = p.rejectedRecipients as { address: string; response: string }[];
      assert.equal(rejected.length, 1);
      assert.equal(rejected[0]!.address, 'nobody@client.test');
      assert.match(rejected[0]!.response, /5\.1\.1 User unknown/);
      sink.setBehaviour({});
      await reset();
    });

    it('writes concurrent single enqueues together, each answered with its own mail; a row that cannot be stored fails alone', async () => {
      const { outbox, queue } = t.app.services;
      const mailTo = (i: number) => ({ from: 'john@example.com', to: [`r${i}@client.test`], subject: `together ${i}`, text: 'body' });
      const actor = { userId: null, label: 'test' };
      // A warm parameter snapshot, so the ten reach the gatherer in the same few milliseconds even on a busy machine.
      await t.app.services.parameters.snapshot();
      const together = await Promise.all(Array.from({ length: 10 }, (_, i) => outbox.enqueue(mailTo(i), null, actor)));
      assert.equal(new Set(together.map((r) => r.id)).size, 10, 'ten mails, ten ids');
      const rows = await Promise.all(together.map((r) => queue.get(r.id)));
      rows.forEach((row, i) => {
        assert.equal(row.message_id, together[i]!.messageId, 'each request is answered with its own mail');
        assert.equal(row.subject, `together ${i}`);
      });
      // One statement on a quiet machine; on a loaded one a late request may miss it, so ask only that they were grouped.
      assert.ok(new Set(rows.map((r) => r.created_at)).size < rows.length, 'written together, not one statement each');
      // A user id that does not exist breaks the foreign key: only that mail is refused.
      const mixed = await Promise.allSettled([0, 1, 2, 3, 4, 5].map((i) => outbox.enqueue(mailTo(i), null, i === 3 ? { userId: 999_999, label: 'gone' } : actor)));
      assert.equal(mixed[3]!.status, 'rejected');
      const stored = mixed.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      assert.equal(stored.length, 5);
      for (const r of stored) assert.equal((await queue.get(r.id)).state, 'queued');
      // Out of the queue before the next test counts what its rounds send.
      await d.drain();
    });

    it('stores a body with a NUL character (PostgreSQL text cannot hold it) instead of failing with a 500', async () => {
      const r = await api('POST', '/api/v1/mails', { from: 'notifications@example.com', to: ['customer@client.test'], subject: 'nul', text: 'a\u0000b' });
      assert.equal(r.status, 202, r.text);
      await api('POST', `/api/v1/mails/${String(r.body.id)}/cancel`);
    });

    it('fails a mail with no outgoing server with failure type no_server', async () => {
      const { id } = await send({ from: 'notifications@example.com' });
      await d.drain();
      const m = await mail(id);
      assert.equal(m.state, 'failed');
      assert.equal(m.failureType, 'no_server');
      assert.match(String(m.failureReason), /outgoing mail server/i);
    });

    it('Test Connection reaches DATA and sends nothing; a refused sender is shown with the server reply', async () => {
      const id = await server('notifications@example.com', 'notifications@example.com');
      const start = sink.messages.length;
      const ok = await api('POST', `/api/v1/outgoing-servers/${id}/test`);
      assert.equal(ok.status, 200);
      assert.equal(ok.body.ok, true, ok.text);
      sink.setBehaviour({ mailFrom: () => ({ code: 550, message: '5.7.60 SMTP; Client does not have permissions to send as this sender' }) });
      const refused = await api('POST', `/api/v1/outgoing-servers/${id}/test`);
      assert.equal(refused.body.ok, false);
      assert.match(String(refused.body.message), /5\.7\.60/);
      assert.equal(sink.messages.length, start, 'Test Connection delivered nothing');
      const view = (await api('GET', `/api/v1/outgoing-servers/${id}`)).body as { lastTest: { ok: boolean; message: string } };
      assert.equal(view.lastTest.ok, false);
      sink.setBehaviour({});
      await reset();
    });

    it('explains a routing decision through the API', async () => {
      const id = await server('john@example.com', 'john@example.com');
      await server('notifications@example.com', 'notifications@example.com');
      const r = await api('GET', `/api/v1/route?from=${encodeURIComponent('Bob <bob@example.com>')}`);
      assert.equal(r.status, 200);
      assert.equal(r.body.rule, 3);
      assert.equal(r.body.from, '"Bob" <notifications@example.com>');
      assert.equal(r.body.envelopeFrom, 'notifications@example.com');
      assert.ok((r.body.explanation as string[]).some((line) => line.includes(`id ${id}`)));
      await reset();
    });

    it("sends a stored password only where it was entered for: the owner's (or an admin's) move to another host, port or security is refused and no AUTH reaches it; a new password moves with it", async () => {
      // The review's attack: a user owns a server whose password an admin typed in (the user sees hasPassword: true only),
      // points it at a listener of their own and presses Test.
      const trap = await startSmtpSink({ auth: 'password', passwords: { 'relay-svc': 'users-own-pw' }, tls: 'none' });
      try {
        assert.equal((await api('PUT', '/api/v1/parameters/mail.server.allowed_private_hosts', { value: '127.0.0.1' })).status, 200);
        // The sinks listen on ports the system picked: the admin allows those two, as an admin would a relay's own port.
        assert.equal((await api('PUT', '/api/v1/parameters/mail.server.allowed_ports', { value: `587, ${sink.port}, ${trap.port}` })).status, 200);
        const owner = await t.createUser('relay-owner', 'user');
        const asOwner = async (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) => {
          const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${owner.apiKey}` } });
          return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
        };
        const id = await server('notifications@example.com', 'relay-owner@example.com', { ownerUserId: owner.id });
        const url = `/api/v1/outgoing-servers/${id}`;
        const stored = (await asOwner('GET', url)).body;
        assert.equal(stored.hasPassword, true);

        for (const [who, call] of [['owner', asOwner], ['admin', api]] as const) {
          for (const move of [{ host: 'localhost' }, { port: trap.port, security: 'none' }, { port: trap.port }, { security: 'none' }]) {
            const refused = await call('PATCH', url, move);
            assert.equal(refused.status, 400, `${who} ${JSON.stringify(move)}: ${refused.text}`);
            const error = refused.body.error as { code: string; message: string };
            assert.equal(error.code, 'JUNIPER_ERR_VALIDATION');
            assert.match(error.message, /^Enter the password again to change the (host|port|security|port and security): a stored password is only sent to the host, port and security it was entered for\.$/);
          }
        }
        // Certificate checks: turning them off is a move too; turning them on narrows where the password can go.
        assert.equal((await asOwner('PATCH', url, { allowSelfSigned: false })).status, 200);
        const selfSigned = await asOwner('PATCH', url, { allowSelfSigned: true });
        assert.equal(selfSigned.status, 400, selfSigned.text);
        assert.match((selfSigned.body.error as { message: string }).message, /^Enter the password again to allow self-signed certificates: .* with the certificate check it was entered with\.$/);
        assert.equal((await asOwner('PATCH', url, { allowSelfSigned: true, password: 'notif-pw' })).status, 200);

        const unchanged = (await asOwner('GET', url)).body;
        assert.deepEqual([unchanged.host, unchanged.port, unchanged.security, unchanged.allowSelfSigned], ['127.0.0.1', sink.port, 'starttls', true], 'nothing of a refused move was stored');
        const test = await asOwner('POST', `${url}/test`);
        assert.equal(test.body.ok, true, test.text);
        assert.equal(trap.authAttempts.length, 0, 'no AUTH reached the new host');

        // An update that leaves the endpoint as it is works as before, the stored password kept.
        const renamed = await asOwner('PATCH', url, { name: 'relay renamed', host: '127.0.0.1', port: sink.port, security: 'starttls', priority: 5 });
        assert.equal(renamed.status, 200, renamed.text);
        assert.equal(renamed.body.hasPassword, true);

        // A move with a new password (the owner's own account at their own server) is theirs to make.
        const moved = await asOwner('PATCH', url, { port: trap.port, security: 'none', username: 'relay-svc', password: 'users-own-pw' });
        assert.equal(moved.status, 200, moved.text);
        const before = sink.authAttempts.length;
        assert.equal((await asOwner('POST', `${url}/test`)).body.ok, true);
        assert.deepEqual(trap.authAttempts.map((a) => [a.method, a.user, a.ok]), [['PLAIN', 'relay-svc', true]], 'the new password, to the new host');
        assert.equal(sink.authAttempts.length, before);
      } finally {
        await trap.stop();
        await reset();
      }
    });

    it('keeps server passwords out of API responses and logs', async () => {
      await server('john@example.com', 'john@example.com');
      const list = await api('GET', '/api/v1/outgoing-servers');
      assert.ok(!list.text.includes('john-pw'));
      assert.match(list.text, /"hasPassword":true/);
      for (const pw of Object.values(passwords)) assert.ok(!t.logs().includes(pw), 'a password reached the log');
      await reset();
    });
  });
}
