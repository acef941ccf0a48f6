// What inbound mail means once fetched, on both databases, with real Dovecot delivery: replies thread onto the
// mails Juniper sent, delivery-status reports and mail to the bounce address mark the original bounced,
// <alias>@<catch-all domain> is recorded as the mailbox, and users see only their own mailboxes' messages.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { FetchScheduler } from '../../src/incoming/scheduler.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { deliverAll, imapPeersForFile } from '../helpers/incoming.js';

const PASSWORD = 'imap-secret';
const users = ['catchall', 'carol'].flatMap((u) => dialects.map((d) => `${u}-${d}@example.test`));

const peers = imapPeersForFile(users, PASSWORD);

type Json = Record<string, unknown>;
const CRLF = '\r\n';

function reply(to: string, inReplyTo: string, subject: string, messageId = `<reply-${crypto.randomUUID()}@client.test>`): { raw: string; messageId: string } {
  return {
    messageId,
    raw: [`From: Customer <customer@client.test>`, `To: ${to}`, `Subject: ${subject}`, `Message-ID: ${messageId}`, `In-Reply-To: ${inReplyTo}`, `References: ${inReplyTo}`, '', 'Thanks, got it.', ''].join(CRLF),
  };
}

function dsn(to: string, originalId: string, action: 'failed' | 'delayed'): string {
  return [
    'From: Mail Delivery System <MAILER-DAEMON@mx.client.test>',
    `To: ${to}`,
    `Subject: ${action === 'failed' ? 'Undelivered Mail Returned to Sender' : 'Delayed Mail (still being retried)'}`,
    `Message-ID: <dsn-${crypto.randomUUID()}@mx.client.test>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="R"',
    '',
    '--R',
    'Content-Type: text/plain',
    '',
    'This is the mail system at host mx.client.test.',
    '',
    '--R',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.client.test',
    '',
    'Final-Recipient: rfc822; nobody@client.test',
    `Action: ${action}`,
    `Status: ${action === 'failed' ? '5.1.1' : '4.4.1'}`,
    'Diagnostic-Code: smtp; 550 5.1.1 <nobody@client.test>: Recipient address',
    '    rejected: User unknown',
    '',
    '--R',
    'Content-Type: text/rfc822-headers',
    '',
    'From: notifications@example.test',
    'To: nobody@client.test',
    'Subject: Your invoice',
    `Message-ID: ${originalId}`,
    '',
    '--R--',
    '',
  ].join(CRLF);
}

for (const dialect of dialects) {
  describe(`threading, bounces and mailboxes of fetched mail (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let admin: string;
    let carol: string;
    const catchall = `catchall-${dialect}@example.test`;
    let serverId: number;

    const api = async (method: 'GET' | 'POST' | 'PUT' | 'PATCH', url: string, payload?: object, key = admin) => {
      const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
      return { status: res.statusCode, body: res.json<Json>(), text: res.body };
    };
    const list = async (query: string, key = admin) => (await api('GET', `/api/v1/messages?limit=1000&${query}`, undefined, key)).body as unknown as Json[];
    const send = async (payload: object, key = admin) => {
      const r = await api('POST', '/api/v1/mails', { from: 'notifications@example.test', to: ['nobody@client.test'], subject: 'Your invoice', text: 'Invoice attached.', ...payload }, key);
      assert.equal(r.status, 202, r.text);
      return r.body as { id: number; messageId: string };
    };
    const server = async (user: string, key: string) => {
      const r = await api('POST', '/api/v1/incoming-servers', { name: user, host: '127.0.0.1', port: peers.dovecot.imapsPort, security: 'ssl', allowSelfSigned: true, username: user, password: PASSWORD }, key);
      assert.equal(r.status, 201, r.text);
      const id = r.body.id as number;
      assert.equal((await api('POST', `/api/v1/incoming-servers/${id}/test`, undefined, key)).body.ok, true);
      return id;
    };
    const fetchNow = async (id: number, key = admin) => {
      const r = await api('POST', `/api/v1/incoming-servers/${id}/fetch?wait=true`, undefined, key);
      assert.equal(r.status, 200, r.text);
      return r.body;
    };
    const bySubject = async (subject: string) => (await list(`serverId=${serverId}`)).find((m) => m.subject === subject)!;

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      admin = (await t.createUser('admin', 'admin')).apiKey;
      carol = (await t.createUser('carol', 'user')).apiKey;
      for (const [k, v] of Object.entries({ 'mail.catchall.domain': 'example.test', 'mail.bounce.alias': 'bounce', 'mail.default.from': 'notifications' })) {
        assert.equal((await api('PUT', `/api/v1/parameters/${k}`, { value: v })).status, 200);
      }
      serverId = await server(catchall, admin);
    });
    after(async () => t.close());

    it('a reply to a mail Juniper sent lands in that mail\'s thread, and a reply to the reply too', async () => {
      const sent = await send({ subject: 'Quote 42' });
      const first = reply(catchall, sent.messageId, 'Re: Quote 42');
      await deliverAll(peers.dovecot, catchall, [first.raw]);
      assert.equal((await fetchNow(serverId)).stored, 1);
      const received = await bySubject('Re: Quote 42');
      assert.ok(received.threadId);
      const thread = await list(`threadId=${received.threadId as number}`);
      assert.deepEqual(thread.map((m) => [m.direction, m.outgoingMailId ?? null, m.subject]), [['out', sent.id, 'Quote 42'], ['in', null, 'Re: Quote 42']]);

      await deliverAll(peers.dovecot, catchall, [reply(catchall, first.messageId, 'Re: Re: Quote 42').raw]);
      await fetchNow(serverId);
      assert.equal((await bySubject('Re: Re: Quote 42')).threadId, received.threadId);
      const threads = (await api('GET', '/api/v1/threads')).body as unknown as Json[];
      const t42 = threads.find((x) => x.id === received.threadId)!;
      assert.deepEqual([t42.subject, t42.messageCount], ['Quote 42', 3]);
    });

    it('a copy of a sent mail arriving in a fetched mailbox (e.g. Bcc) joins that mail\'s thread', async () => {
      const sent = await send({ subject: 'Copied' });
      await deliverAll(peers.dovecot, catchall, [['From: notifications@example.test', 'To: nobody@client.test', 'Subject: Copied', `Message-ID: ${sent.messageId}`, '', 'Invoice attached.', ''].join(CRLF)]);
      await fetchNow(serverId);
      const copy = await bySubject('Copied');
      const thread = await list(`threadId=${copy.threadId as number}`);
      assert.deepEqual(thread.map((m) => [m.direction, m.messageId]), [['out', sent.messageId], ['in', sent.messageId]]);
    });

    it('a delivery-status report to the bounce address marks the original bounced; a "delayed" report does not', async () => {
      const failed = await send({ subject: 'Bounces' });
      const delayed = await send({ subject: 'Only delayed' });
      await deliverAll(peers.dovecot, catchall, [dsn('bounce@example.test', failed.messageId, 'failed'), dsn('bounce@example.test', delayed.messageId, 'delayed')], 1);
      assert.equal((await fetchNow(serverId)).stored, 2);

      const bounced = (await api('GET', `/api/v1/mails/${failed.id}`)).body;
      assert.ok(bounced.bouncedAt, JSON.stringify(bounced));
      assert.match(String(bounced.bounceReason), /nobody@client\.test: 5\.1\.1 550 5\.1\.1 <nobody@client\.test>: Recipient address rejected: User unknown/);
      assert.equal(bounced.state, 'queued', 'the queue state is not rewritten');
      assert.equal((await api('GET', `/api/v1/mails/${delayed.id}`)).body.bouncedAt, null);

      const report = await bySubject('Undelivered Mail Returned to Sender');
      assert.deepEqual([report.isBounce, report.bouncedMailId, report.mailbox], [true, failed.id, 'bounce']);
      const thread = await list(`threadId=${report.threadId as number}`);
      assert.equal(thread[0]!.outgoingMailId, failed.id, 'the report joins the thread of the mail it reports on');
    });

    it('mail to the bounce address without a report (X-Failed-Recipients) marks the original; an auto-reply does not', async () => {
      const failed = await send({ subject: 'Old-style bounce' });
      const ooo = await send({ subject: 'Out of office' });
      const oldStyle = [`From: MAILER-DAEMON@old.client.test`, 'To: bounce@example.test', 'Subject: Mail delivery failed', 'X-Failed-Recipients: nobody@client.test', `In-Reply-To: ${failed.messageId}`, '', 'A message could not be delivered.', ''].join(CRLF);
      const autoReply = [`From: Away <away@client.test>`, 'To: bounce@example.test', 'Subject: Out of office: Out of office', 'Auto-Submitted: auto-replied', `In-Reply-To: ${ooo.messageId}`, '', 'I am away until Monday.', ''].join(CRLF);
      await deliverAll(peers.dovecot, catchall, [oldStyle, autoReply], 1);
      await fetchNow(serverId);
      assert.match(String((await api('GET', `/api/v1/mails/${failed.id}`)).body.bounceReason), /Delivery failed for nobody@client\.test/);
      assert.equal((await api('GET', `/api/v1/mails/${ooo.id}`)).body.bouncedAt, null);
    });

    it('records <alias>@<catch-all domain> as the mailbox and filters by it', async () => {
      await deliverAll(peers.dovecot, catchall, [['From: customer@client.test', 'To: Orders <Orders@example.test>', 'Subject: New order', 'Message-ID: <order-1@client.test>', '', 'Two boxes, please.', ''].join(CRLF)]);
      await fetchNow(serverId);
      const orders = await list('mailbox=orders');
      assert.deepEqual(orders.map((m) => m.subject), ['New order']);
    });

    it('the scheduler fetches confirmed, active servers whose interval has passed, and not again before the next one', async () => {
      const draft = await api('POST', '/api/v1/incoming-servers', { name: 'draft', host: '127.0.0.1', port: peers.dovecot.imapsPort, security: 'ssl', allowSelfSigned: true, username: catchall, password: PASSWORD });
      assert.equal(draft.status, 201);
      await t.app.database.db.updateTable('incoming_servers').set({ last_fetch_at: Date.now() - 6 * 60_000 }).where('id', '=', serverId).execute();
      await deliverAll(peers.dovecot, catchall, [['From: customer@client.test', `To: ${catchall}`, 'Subject: Scheduled', 'Message-ID: <scheduled-1@client.test>', '', 'Hello.', ''].join(CRLF)]);
      const scheduler = new FetchScheduler(t.app.services.incoming.fetcher(), t.app.services.fetchState, t.app.logger);
      assert.equal(await scheduler.runOnce(), 1, 'only the confirmed server is due');
      assert.ok(await bySubject('Scheduled'));
      assert.equal(await scheduler.runOnce(), 0, 'fetched a moment ago: not due for 5 minutes');
      await scheduler.stop();
    });

    it("users see only their own server's messages and the mails they sent; admins see all", async () => {
      const carolMailbox = `carol-${dialect}@example.test`;
      // Carol's personal server is the loopback Dovecot: only the allow-list an admin sets permits that.
      assert.equal((await api('PUT', '/api/v1/parameters/mail.server.allowed_private_hosts', { value: '127.0.0.1' })).status, 200);
      // And its port, which the system picked: the admin allows it, as an admin would a mail server's own port.
      assert.equal((await api('PUT', '/api/v1/parameters/mail.server.allowed_ports', { value: `993, ${peers.dovecot.imapsPort}` })).status, 200);
      const carolServer = await server(carolMailbox, carol);
      const sent = await send({ from: 'carol@example.com', subject: 'From Carol' }, carol);
      await deliverAll(peers.dovecot, carolMailbox, [reply(carolMailbox, sent.messageId, 'Re: From Carol').raw]);
      assert.equal((await fetchNow(carolServer, carol)).stored, 1);

      const mine = () => list('', carol);
      assert.deepEqual((await mine()).map((m) => [m.direction, m.subject]).sort(), [['in', 'Re: From Carol'], ['out', 'From Carol']]);
      const adminsMessage = (await list(`serverId=${serverId}`))[0]!;
      assert.equal((await api('GET', `/api/v1/messages/${adminsMessage.id as number}`, undefined, carol)).status, 404);
      assert.equal((await api('GET', `/api/v1/incoming-servers/${serverId}`, undefined, carol)).status, 404);
      assert.equal((await api('POST', `/api/v1/incoming-servers/${serverId}/fetch`, undefined, carol)).status, 404);
      // A report in Carol's mailbox about a mail someone else sent must not touch that mail.
      const others = await send({ subject: 'Not Carol\'s' });
      await deliverAll(peers.dovecot, carolMailbox, [dsn('bounce@example.test', others.messageId, 'failed')]);
      await fetchNow(carolServer, carol);
      assert.equal((await api('GET', `/api/v1/mails/${others.id}`)).body.bouncedAt, null);

      // A reply in Carol's mailbox to a message only the admin's mailbox holds starts a thread of her own.
      const adminOnly = (await list(`serverId=${serverId}`)).find((m) => m.direction === 'in')!;
      await deliverAll(peers.dovecot, carolMailbox, [reply(carolMailbox, adminOnly.messageId as string, 'Re: admin only').raw]);
      await fetchNow(carolServer, carol);
      const joined = (await mine()).find((m) => m.subject === 'Re: admin only')!;
      assert.notEqual(joined.threadId, adminOnly.threadId, "Carol's message does not join a thread she cannot see");

      // A reply to Carol's mail that reaches the admin's mailbox joins her thread (the admin may see it): her
      // thread list filtered by that server says nothing of it, since she cannot see that message.
      await deliverAll(peers.dovecot, catchall, [reply(catchall, sent.messageId, 'Re: From Carol, to the catch-all').raw]);
      assert.equal((await fetchNow(serverId)).stored, 1);
      assert.deepEqual((await api('GET', `/api/v1/threads?serverId=${serverId}`, undefined, carol)).body, [], "a server she cannot see is no filter that tells her what it holds");
      assert.equal(((await api('GET', `/api/v1/threads?serverId=${serverId}`)).body as unknown as Json[]).filter((x) => x.subject === 'From Carol').length, 1, 'the admin finds the thread by that server');

      const carolThreads = (await api('GET', '/api/v1/threads', undefined, carol)).body as unknown as Json[];
      assert.deepEqual(carolThreads.map((x) => [x.subject, x.messageCount]).sort(), [['From Carol', 2], ['Undelivered Mail Returned to Sender', 1], ['admin only', 1]]);
      assert.ok((await list('')).length > (await mine()).length, 'the admin sees every mailbox');
    });
  });
}
