// A user other than an admin names no one else as the sender of their mail. Routing may send a user's mail as
// the notifications address, keeping its display name, with the Reply-To as the one trace of who wrote it; a
// free display name and Reply-To let a user send "Payroll <payroll@example.com>" <notifications@example.com>
// answering to an outside address (hostile review 16). So a user's Reply-To is their own address and their
// From's display name is not an address (RFC 2047 encoded or not); admins keep both. Real SMTP sink, both
// databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { headersOf, testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

for (const dialect of dialects) {
  describe(`a user's mail names no other sender (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let admin: string;
    let jane: string;
    let sink: SmtpSink;
    let d: TestDispatcher;

    const post = async (key: string, url: string, payload: object) => {
      const res = await http.inject({ method: 'POST', url, payload, headers: { authorization: `Bearer ${key}` } });
      return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
    };
    const mail = (extra: object) => ({ to: ['victim@client.test'], subject: 'Your payslip', text: 'see attached', ...extra });
    const queued = async () => (await t.app.services.queue.list()).length;

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      admin = (await t.createUser('admin', 'admin')).apiKey;
      jane = (await t.createUser('jane', 'user')).apiKey;
      sink = await startSmtpSink({ auth: 'password', passwords: { 'notifications@example.com': 'notif-pw' }, tls: 'starttls' });
      d = testDispatcher(t.app);
      for (const [k, v] of Object.entries({ 'mail.catchall.domain': 'example.com', 'mail.default.from': 'notifications' })) {
        const r = await http.inject({ method: 'PUT', url: `/api/v1/parameters/${k}`, payload: { value: v }, headers: { authorization: `Bearer ${admin}` } });
        assert.equal(r.statusCode, 200, r.body);
      }
      // The seed's single server: it lists only the notifications address, so a user's mail is rewritten to it.
      const s = await post(admin, '/api/v1/outgoing-servers', {
        name: 'Notifications', host: '127.0.0.1', port: sink.port, security: 'starttls', allowSelfSigned: true,
        auth: 'password', username: 'notifications@example.com', password: 'notif-pw', fromFilter: 'notifications@example.com',
      });
      assert.equal(s.status, 201, s.text);
    });
    after(async () => {
      await d.close();
      await sink.stop();
      await t.close();
    });

    it('refuses a display name that is an address, plain or RFC 2047 encoded, and a Reply-To of someone else, queueing nothing', async () => {
      const before = await queued();
      const refused: [string, object][] = [
        ['replyTo', mail({ from: '"Payroll" <jane@example.com>', replyTo: 'payroll@attacker.test' })],
        ['from', mail({ from: '"Payroll <payroll@example.com>" <jane@example.com>' })],
        ['from', mail({ from: 'payroll@example.com <jane@example.com>' })],
        ['from', mail({ from: '"payroll \uff20 example.com" <jane@example.com>' })],
        // "CEO <ceo@example.com>", base64-encoded: what mail clients show.
        ['from', mail({ from: '"=?utf-8?B?Q0VPIDxjZW9AZXhhbXBsZS5jb20+?=" <jane@example.com>' })],
        // Her own address as Reply-To, under someone else's.
        ['replyTo', mail({ from: '"Jane" <jane@example.com>', replyTo: '"payroll@example.com" <jane@example.com>' })],
      ];
      for (const [field, payload] of refused) {
        const r = await post(jane, '/api/v1/mails', payload);
        assert.equal(r.status, 403, `${JSON.stringify(payload)}: ${r.text}`);
        assert.equal((r.body.error as { field?: string }).field, field, r.text);
      }
      const batch = await post(jane, '/api/v1/mails/batch', { mails: refused.map(([, p]) => p) });
      assert.equal(batch.status, 200, batch.text);
      assert.deepEqual((batch.body.results as { status: number }[]).map((x) => x.status), [403, 403, 403, 403, 403, 403]);
      assert.equal(await queued(), before, 'nothing was queued');
    });

    it("still sends a user's own name and Reply-To: rewritten to the notifications address, the Reply-To names the user", async () => {
      const first = sink.messages.length;
      for (const extra of [{ from: '"Jane Doe" <jane@example.com>' }, { from: 'Jane <jane@example.com>', replyTo: 'Jane <JANE@example.com>' }, { from: '"=?utf-8?Q?Jane_D=C3=B6e?=" <jane@example.com>' }]) {
        const r = await post(jane, '/api/v1/mails', mail(extra));
        assert.equal(r.status, 202, r.text);
      }
      assert.equal(await d.drain(), 3);
      const sent = await Promise.all(sink.messages.slice(first).map((m) => headersOf(m.raw)));
      assert.deepEqual(sent.map((h) => h.from), ['"Jane Doe" <notifications@example.com>', '"Jane" <notifications@example.com>', '"Jane Döe" <notifications@example.com>']);
      for (const h of sent) assert.match(h.replyTo, /jane@example\.com/i, 'the Reply-To is the user who wrote it');
    });

    it('an admin still sets any display name and Reply-To', async () => {
      const first = sink.messages.length;
      const r = await post(admin, '/api/v1/mails', mail({ from: '"Payroll <payroll@example.com>" <admin@example.com>', replyTo: 'payroll@partner.test' }));
      assert.equal(r.status, 202, r.text);
      assert.equal(await d.drain(), 1);
      const h = await headersOf(sink.messages[first]!.raw);
      assert.equal(h.replyTo, 'payroll@partner.test');
    });
  });
}
