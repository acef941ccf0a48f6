// A user's own mail that fails or waits on the organisation's shared outgoing server does not show them that
// server's internals (hostile review 16): in the API and on the outbox pages the reasons say what happened and
// what to do without its host, port or IP addresses, and the relay's replies are reduced to their codes; the
// admin reads the stored text, and so does the owner of a personal server about their own server. On both
// databases, against a real closed loopback port and a real smtp-server relay answering with internal names.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { testDispatcher } from '../helpers/outgoing.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

/** What the relay puts in its replies and what no user of it may read: its names, addresses and queue ids. */
const INTERNAL = ['relay7.corp.internal', '10.0.0.5', 'Q7731', '4BcD1'];

/** A loopback port nothing listens on (bound, then closed): connecting there is refused at once. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Mail {
  id: number;
  state: string;
  failureType: string | null;
  failureReason: string | null;
  smtpResponse: string | null;
  rejectedRecipients: { address: string; response: string }[];
}

for (const dialect of dialects) {
  describe(`mail reasons: a shared server's internals stay with the admin (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let relay: SmtpSink;
    let deadPort: number;
    let sharedId: number;
    const keys: Record<'admin' | 'jane' | 'pat', string> = { admin: '', jane: '', pat: '' };
    const browsers = {} as Record<'admin' | 'jane' | 'pat', FormBrowser>;
    const mails: Record<'unreachable' | 'refused' | 'sent' | 'personal', number> = { unreachable: 0, refused: 0, sent: 0, personal: 0 };

    const api = async (who: keyof typeof keys, url: string) => {
      const res = await http.inject({ method: 'GET', url, headers: { authorization: `Bearer ${keys[who]}` } });
      assert.equal(res.statusCode, 200, res.body);
      return res.body;
    };
    const send = async (who: 'jane' | 'pat', payload: object): Promise<number> => {
      const res = await http.inject({ method: 'POST', url: '/api/v1/mails', headers: { authorization: `Bearer ${keys[who]}` }, payload: { from: `${who}@example.com`, text: 'body', ...payload } });
      assert.equal(res.statusCode, 202, res.body);
      return res.json<{ id: number }>().id;
    };
    const drain = async () => {
      const d = testDispatcher(t.app);
      try {
        await d.drain();
      } finally {
        await d.close();
      }
    };
    const page = async (who: keyof typeof browsers, url: string) => {
      const res = await browsers[who].get(url);
      assert.equal(res.statusCode, 200, res.body);
      return res.body;
    };
    const leaks = (text: string): string[] => [...INTERNAL, '127.0.0.1', `:${deadPort}`, `:${relay.port}`].filter((s) => text.includes(s));

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      deadPort = await closedPort();
      relay = await startSmtpSink({
        auth: 'none',
        tls: 'none',
        behaviour: {
          rcptTo: (to) => (to === 'nobody@client.test' ? { code: 550, message: '5.1.1 <nobody@client.test>: rejected by relay7.corp.internal [10.0.0.5]' } : undefined),
          data: (m) =>
            m.raw.toString().includes('Subject: refuse me')
              ? { code: 554, message: '5.7.1 relay7.corp.internal [10.0.0.5]: message refused, queue id Q7731' }
              : { code: 250, message: '2.0.0 Ok: queued as 4BcD1 on relay7.corp.internal' },
        },
      });
      const { parameters, outgoingServers } = t.app.services;
      // A user's server may be on loopback and on these test ports (the host and port policies; an admin's choice).
      await parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
      await parameters.set('mail.server.allowed_ports', `25, 143, 465, 587, 993, 2525, ${deadPort}`, cliActor);
      const users = { admin: await t.createUser('admin', 'admin'), jane: await t.createUser('jane', 'user'), pat: await t.createUser('pat', 'user') };
      for (const who of ['admin', 'jane', 'pat'] as const) {
        keys[who] = users[who].apiKey;
        browsers[who] = new FormBrowser(http);
        await browsers[who].signIn(who, users[who].password);
      }
      const server = { auth: 'none', host: '127.0.0.1', port: deadPort, security: 'none', priority: 10, active: true, allowSelfSigned: false } as const;
      sharedId = (await outgoingServers.create({ ...server, name: 'Shared relay', fromFilter: null }, cliPrincipal, cliActor)).id;
      await outgoingServers.create({ ...server, name: 'Pat mailbox', fromFilter: 'pat@example.com', ownerUserId: users.pat.id }, cliPrincipal, cliActor);

      // The shared server unreachable: jane's mail is retried; pat's goes through his own (as unreachable) server.
      mails.unreachable = await send('jane', { to: ['customer@client.test'], subject: 'unreachable' });
      mails.personal = await send('pat', { to: ['customer@client.test'], subject: 'personal' });
      await drain();
      // Then the shared server points at the relay: one mail refused for good, one sent with a recipient refused.
      await outgoingServers.update(sharedId, { port: relay.port }, cliPrincipal, cliActor);
      mails.refused = await send('jane', { to: ['customer@client.test'], subject: 'refuse me' });
      mails.sent = await send('jane', { to: ['customer@client.test', 'nobody@client.test'], subject: 'partly' });
      await drain();
    });
    after(async () => {
      await relay?.stop();
      await t?.close();
    });

    it('jane reads what happened on the shared server, with its name and the failure type, but no host, port or reply text (API)', async () => {
      const body = await api('jane', `/api/v1/mails/${mails.unreachable}`);
      const m = JSON.parse(body) as Mail;
      assert.deepEqual([m.state, m.failureType], ['queued', 'connection'], 'retried, and jane can tell');
      assert.equal(m.failureReason, `The organisation's mail server "Shared relay" could not be reached. Juniper tries again later by itself. An admin has the details (mail ${mails.unreachable}).`);
      assert.deepEqual(leaks(body), []);

      const refused = JSON.parse(await api('jane', `/api/v1/mails/${mails.refused}`)) as Mail;
      assert.deepEqual([refused.state, refused.failureType], ['failed', 'rejected']);
      assert.equal(refused.failureReason, `The organisation's mail server "Shared relay" refused the mail. Ask an admin why before sending it again. An admin has the details (mail ${mails.refused}).`);

      const sent = JSON.parse(await api('jane', `/api/v1/mails/${mails.sent}`)) as Mail;
      assert.equal(sent.state, 'sent');
      assert.equal(sent.smtpResponse, '250 2.0.0', 'accepted, in standard terms');
      assert.deepEqual(sent.rejectedRecipients, [{ address: 'nobody@client.test', response: '550 5.1.1' }], 'which recipient, and why in standard terms');

      const list = await api('jane', '/api/v1/mails');
      assert.equal((JSON.parse(list) as Mail[]).length, 3);
      assert.deepEqual(leaks(list), [], 'nor in the list');
      assert.deepEqual(leaks(await api('jane', `/api/v1/mails/${mails.refused}`)), []);
      assert.deepEqual(leaks(await api('jane', `/api/v1/mails/${mails.sent}`)), []);
    });

    it('nor on the outbox pages: the list, each mail and its attempt history', async () => {
      const outbox = await page('jane', '/outbox');
      assert.match(outbox, new RegExp(`could not be reached\\. Juniper tries again later by itself\\. An admin has the details \\(mail ${mails.unreachable}\\)\\.`));
      assert.deepEqual(leaks(outbox), []);
      for (const id of [mails.unreachable, mails.refused, mails.sent]) assert.deepEqual(leaks(await page('jane', `/outbox/${id}`)), [], `mail ${id}`);
      const refused = await page('jane', `/outbox/${mails.refused}`);
      assert.match(refused, /<strong>rejected<\/strong>: The organisation&#39;s mail server &quot;Shared relay&quot; refused the mail\./);
      assert.match(await page('jane', `/outbox/${mails.sent}`), /<code>250 2\.0\.0<\/code>/);
    });

    it('the admin reads the full text: host and port, and the relay\'s own words', async () => {
      const unreachable = JSON.parse(await api('admin', `/api/v1/mails/${mails.unreachable}`)) as Mail;
      assert.match(unreachable.failureReason ?? '', new RegExp(`Nothing listens on 127\\.0\\.0\\.1:${deadPort} \\(connection refused\\)`));
      const refused = JSON.parse(await api('admin', `/api/v1/mails/${mails.refused}`)) as Mail;
      assert.match(refused.failureReason ?? '', /relay7\.corp\.internal \[10\.0\.0\.5\]: message refused, queue id Q7731/);
      const sent = JSON.parse(await api('admin', `/api/v1/mails/${mails.sent}`)) as Mail;
      assert.match(sent.smtpResponse ?? '', /queued as 4BcD1 on relay7\.corp\.internal/);
      assert.match(sent.rejectedRecipients[0]?.response ?? '', /rejected by relay7\.corp\.internal/);
      const pageText = await page('admin', `/outbox/${mails.refused}`);
      assert.match(pageText, /queue id Q7731/);
      assert.match(await page('admin', `/outbox/${mails.unreachable}`), new RegExp(`127\\.0\\.0\\.1:${deadPort}`), 'the attempt history too');
      // The log keeps it as well, for the admin to follow "an admin has the details (mail N)".
      assert.match(t.logs(), new RegExp(`"mail":${mails.refused}[^\\n]*Q7731`));
    });

    it("a personal server's owner reads its reasons in full: the server is theirs", async () => {
      const body = await api('pat', `/api/v1/mails/${mails.personal}`);
      const m = JSON.parse(body) as Mail;
      assert.deepEqual([m.state, m.failureType], ['queued', 'connection']);
      assert.match(m.failureReason ?? '', new RegExp(`Nothing listens on 127\\.0\\.0\\.1:${deadPort}`));
      assert.match(await page('pat', `/outbox/${mails.personal}`), new RegExp(`127\\.0\\.0\\.1:${deadPort}`));
    });
  });
}
