// A transaction the server accepts for some recipients and defers (4xx at RCPT TO) for others, on both
// databases, through a real SMTP server (smtp-server): Postfix past smtpd_recipient_limit answers "452 4.5.3
// Too many recipients", a greylisting server "450 4.2.0" for recipients it has not seen. The accepted recipients
// get the mail once and it is recorded sent to them; the deferred ones get it on a later attempt, through a
// follow-up mail of their own; a 5xx recipient stays refused; nobody gets it twice.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { MAX_ATTEMPTS } from '../../src/lib/backoff.js';
import { dialects } from '../helpers/databases.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { headersOf, testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { startSmtpSink, type SinkReply, type SmtpSink } from '../peers/smtp-sink.js';

const passwords = { 'notifications@example.com': 'notif-pw' };
const TOO_MANY: SinkReply = { code: 452, message: '4.5.3 Too many recipients' };
/** A deferral that is not the recipient limit: retried after the usual backoff, the attempt counted. */
const GREYLISTED: SinkReply = { code: 450, message: '4.2.0 Greylisted, try again later' };

interface View {
  id: number;
  state: string;
  messageId: string;
  attempts: number;
  to: string[];
  bcc: string[];
  followUpOf: number | null;
  envelopeTo: string[] | null;
  failureReason: string | null;
  rejectedRecipients: { address: string; response: string }[];
}

for (const dialect of dialects) {
  describe(`recipients deferred at RCPT TO while others were accepted (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    let browser: FormBrowser;
    let sink: SmtpSink;
    let d: TestDispatcher;

    const api = async (method: 'GET' | 'POST' | 'PUT', url: string, payload?: object) => {
      const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
      return { status: res.statusCode, body: res.json<unknown>(), text: res.body };
    };
    const mail = async (id: number) => (await api('GET', `/api/v1/mails/${id}`)).body as View;
    const followUpOf = async (id: number) => ((await api('GET', '/api/v1/mails?limit=1000')).body as View[]).filter((m) => m.followUpOf === id);
    /** Each address's deliveries among the messages the sink accepted since `start`. */
    const deliveries = (start: number) => {
      const count = new Map<string, number>();
      for (const m of sink.messages.slice(start)) for (const to of m.to) count.set(to, (count.get(to) ?? 0) + 1);
      return Object.fromEntries([...count].sort());
    };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      const admin = await t.createUser('admin', 'admin');
      key = admin.apiKey;
      browser = new FormBrowser(http);
      await browser.signIn('admin', admin.password);
      sink = await startSmtpSink({ auth: 'password', passwords, tls: 'starttls' });
      d = testDispatcher(t.app);
      const r = await api('POST', '/api/v1/outgoing-servers', { name: 'postfix', host: '127.0.0.1', port: sink.port, security: 'starttls', allowSelfSigned: true, auth: 'password', username: 'notifications@example.com', password: 'notif-pw', fromFilter: null });
      assert.equal(r.status, 201, r.text);
    });
    after(async () => {
      await d.close();
      await sink.stop();
      await t.close();
    });

    it('sends to the accepted recipients once, to the deferred ones (Bcc too) on a later attempt, and keeps a 5xx recipient refused', async () => {
      // The first RCPT TO of each deferred address gets 450, the next ones 250 (a greylisting server); nobody@ is
      // refused for good.
      const seen = new Set<string>();
      sink.setBehaviour({
        rcptTo: (to) => {
          if (to === 'nobody@client.test') return { code: 550, message: '5.1.1 User unknown' };
          if (!to.startsWith('later') || seen.has(to)) return undefined;
          seen.add(to);
          return GREYLISTED;
        },
      });
      const start = sink.messages.length;
      const sent = await api('POST', '/api/v1/mails', { from: 'notifications@example.com', to: ['customer@client.test', 'later@client.test', 'nobody@client.test'], bcc: ['later-hidden@client.test'], subject: 'partly', text: 'body' });
      assert.equal(sent.status, 202, sent.text);
      const { id, messageId } = sent.body as { id: number; messageId: string };

      assert.equal(await d.drain(), 1);
      assert.deepEqual(deliveries(start), { 'customer@client.test': 1 }, 'only the accepted recipient has it after the first attempt');
      const original = await mail(id);
      assert.equal(original.state, 'sent', JSON.stringify(original));
      assert.deepEqual(original.rejectedRecipients.map((r) => r.address), ['nobody@client.test'], 'only the 5xx recipient is refused; the deferred ones are not recorded as served');
      assert.match(original.rejectedRecipients[0]!.response, /550 5\.1\.1/);

      const [followUp, ...more] = await followUpOf(id);
      assert.ok(followUp, 'the deferred recipients have a follow-up mail');
      assert.equal(more.length, 0);
      assert.equal(followUp.state, 'queued');
      assert.equal(followUp.messageId, messageId, 'the same Message-ID');
      assert.deepEqual(followUp.envelopeTo, ['later@client.test', 'later-hidden@client.test']);
      assert.deepEqual(followUp.to, original.to, 'the headers stay the message\'s');
      assert.deepEqual(followUp.bcc, ['later-hidden@client.test']);
      assert.equal(followUp.attempts, 1, "the mail's attempts carry on");
      assert.match(String(followUp.failureReason), /450 4\.2\.0 Greylisted/);
      // The outbox links the two: the original names its deferred recipients and where they are retried.
      const page = (await browser.get(`/outbox/${id}`)).body;
      assert.match(page, new RegExp(`later@client\\.test, later-hidden@client\\.test: retried in <a href="/outbox/${followUp.id}">mail ${followUp.id}</a> \\(queued\\)`));
      assert.match((await browser.get(`/outbox/${followUp.id}`)).body, new RegExp(`Sent only to</dt><dd>later@client\\.test, later-hidden@client\\.test .*<a href="/outbox/${id}">mail ${id}</a>`));

      assert.equal(await d.drain(), 0, 'not due before its backoff');
      d.advance(60 * 60 * 1000);
      assert.equal(await d.drain(), 1);
      assert.deepEqual(deliveries(start), { 'customer@client.test': 1, 'later-hidden@client.test': 1, 'later@client.test': 1 }, 'each recipient has it once');
      const retried = sink.messages[start + 1]!;
      assert.deepEqual(retried.to, ['later@client.test', 'later-hidden@client.test'], 'the retry goes to the deferred addresses only');
      const h = await headersOf(retried.raw);
      assert.equal(h.messageId, messageId);
      assert.equal(h.to, 'customer@client.test, later@client.test, nobody@client.test', 'the same To header');
      assert.equal(h.bcc, '', 'no Bcc header over SMTP');
      const done = await mail(followUp.id);
      assert.equal(done.state, 'sent', JSON.stringify(done));
      assert.equal(done.attempts, 2);
      assert.deepEqual(done.rejectedRecipients, []);
      assert.equal((await mail(id)).state, 'sent');
      d.advance(24 * 60 * 60 * 1000);
      assert.equal(await d.drain(), 0, 'nothing left to send');
      assert.equal(sink.messages.length, start + 2);
      sink.setBehaviour({});
    });

    it('fails the deferred recipients with the server\'s reason when the mail\'s retry window ends, and never records them sent', async () => {
      sink.setBehaviour({ rcptTo: (to) => (to === 'greylisted@client.test' ? { code: 450, message: '4.2.0 Greylisted, try again later' } : undefined) });
      const start = sink.messages.length;
      const sent = await api('POST', '/api/v1/mails', { from: 'notifications@example.com', to: ['customer@client.test'], cc: ['greylisted@client.test'], subject: 'greylisted', text: 'body' });
      const { id } = sent.body as { id: number };
      await d.drain();
      const [followUp] = await followUpOf(id);
      assert.ok(followUp);
      for (let i = 0; i < MAX_ATTEMPTS + 2; i++) {
        d.advance(13 * 60 * 60 * 1000);
        await d.drain();
      }
      const failed = await mail(followUp.id);
      assert.equal(failed.state, 'failed', JSON.stringify(failed));
      assert.equal(failed.attempts, MAX_ATTEMPTS, 'the follow-up used what was left of the mail\'s attempts');
      assert.match(String(failed.failureReason), /450 4\.2\.0 Greylisted/);
      assert.match(String(failed.failureReason), /gave up/);
      assert.deepEqual(deliveries(start), { 'customer@client.test': 1 });
      assert.equal((await mail(id)).state, 'sent');
      sink.setBehaviour({});
    });

    it("a server's recipient limit (Postfix's smtpd_recipient_limit, 452 past it): each transaction's excess goes in a follow-up, a follow-up's too, until every recipient has it once", async () => {
      // Two recipients per transaction, as Postfix's 1,000 scaled down: the third RCPT TO and later get 452.
      sink.setBehaviour({ rcptTo: (_to, envelope) => (envelope.to.length >= 2 ? TOO_MANY : undefined) });
      const start = sink.messages.length;
      const to = ['r1@client.test', 'r2@client.test', 'r3@client.test'];
      const cc = ['r4@client.test'];
      const bcc = ['r5@client.test'];
      const sent = await api('POST', '/api/v1/mails', { from: 'notifications@example.com', to, cc, bcc, subject: 'many', text: 'body' });
      const { id, messageId } = sent.body as { id: number; messageId: string };
      const chain = [id];
      for (let round = 0; round < 4; round++) {
        await d.drain();
        d.advance(60 * 60 * 1000);
        const next = await followUpOf(chain[chain.length - 1]!);
        if (next.length) chain.push(next[0]!.id);
      }
      assert.equal(chain.length, 3, 'the mail, its follow-up and the follow-up\'s follow-up');
      assert.deepEqual(sink.messages.slice(start).map((m) => m.to), [['r1@client.test', 'r2@client.test'], ['r3@client.test', 'r4@client.test'], ['r5@client.test']]);
      for (const m of sink.messages.slice(start)) assert.equal((await headersOf(m.raw)).messageId, messageId);
      const views = await Promise.all(chain.map(mail));
      assert.deepEqual(views.map((v) => v.state), ['sent', 'sent', 'sent']);
      assert.deepEqual(views.map((v) => v.envelopeTo), [null, ['r3@client.test', 'r4@client.test', 'r5@client.test'], ['r5@client.test']]);
      assert.deepEqual(views.map((v) => v.followUpOf), [null, chain[0], chain[1]]);
      // Each transaction delivered what the limit let through: no follow-up used up the mail's attempts (a mail
      // to 3,000 recipients through a limit of 100 needs 30 transactions) or waited a backoff.
      assert.deepEqual(views.map((v) => v.attempts), [1, 1, 1]);
      for (const v of views) assert.deepEqual(v.rejectedRecipients, []);
      sink.setBehaviour({});
    });

    it('sends the follow-up of a mail with an attachment, and of a raw .eml, as the same message: the same bytes, the attachment, the Message-ID', async () => {
      const seen = new Set<string>();
      sink.setBehaviour({ rcptTo: (to) => (to.startsWith('later') && !seen.has(to) ? (seen.add(to), GREYLISTED) : undefined) });
      const start = sink.messages.length;
      const pdf = Buffer.alloc(70_000, 7);
      const built = await api('POST', '/api/v1/mails', { from: 'notifications@example.com', to: ['customer@client.test', 'later-a@client.test'], subject: 'with attachment', text: 'body', attachments: [{ filename: 'a.pdf', contentType: 'application/pdf', contentBase64: pdf.toString('base64') }] });
      assert.equal(built.status, 202, built.text);
      const eml = Buffer.from('Message-ID: <raw-partial@example.com>\r\nFrom: notifications@example.com\r\nTo: customer@client.test, later-b@client.test\r\nSubject: raw partly\r\n\r\nraw body\r\n');
      const raw = await t.app.services.outbox.enqueueRaw(eml, {}, null, { userId: null, label: 'test' });
      assert.equal(await d.drain(), 2);
      const followUps = [...(await followUpOf((built.body as { id: number }).id)), ...(await followUpOf(raw.id))];
      assert.equal(followUps.length, 2);
      assert.deepEqual(followUps.map((f) => f.envelopeTo), [['later-a@client.test'], ['later-b@client.test']]);
      // The Message-ID is still the original's: a second copy of the .eml is refused as the same mail.
      assert.equal(await t.app.services.queue.findByMessageId('<raw-partial@example.com>'), raw.id);
      d.advance(60 * 60 * 1000);
      assert.equal(await d.drain(), 2);
      assert.deepEqual(deliveries(start), { 'customer@client.test': 2, 'later-a@client.test': 1, 'later-b@client.test': 1 });
      const byRecipient = new Map(sink.messages.slice(start).map((m) => [m.to.join(','), m]));
      const laterA = byRecipient.get('later-a@client.test')!;
      const { simpleParser } = await import('mailparser');
      const parsedA = await simpleParser(laterA.raw);
      assert.equal(parsedA.messageId, (built.body as { messageId: string }).messageId);
      assert.deepEqual(parsedA.attachments[0]?.content, pdf, 'the follow-up carries the attachment');
      const laterB = byRecipient.get('later-b@client.test')!;
      assert.match(laterB.raw.toString('latin1'), /^Message-ID: <raw-partial@example\.com>\r\nFrom: notifications@example\.com\r\n/);
      assert.match(laterB.raw.toString('latin1'), /raw body/);
      for (const f of followUps) assert.equal((await mail(f.id)).state, 'sent');
      sink.setBehaviour({});
    });
  });
}
