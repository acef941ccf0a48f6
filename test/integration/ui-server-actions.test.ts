// Post/Redirect/Get on the server forms, driven as a browser without JavaScript would, against a real SMTP
// server and a real Dovecot: every button of the outgoing and incoming server forms answers its POST with a
// 303 to the server's page, so the browser's reload shows the page again instead of creating a second server,
// testing twice or fetching twice; the click's answer is shown once; a refused create keeps what was typed.
// Also the Outlook status a reconnect-needing token gives the form and the lists. On both databases.
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { dialects } from '../helpers/databases.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { seedConnection } from '../helpers/oauth-connections.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const MAILBOX = 'orders@example.test';
const MAILBOX_PASSWORD = 'orders-prg-password-42';
const SMTP_USER = 'relay@example.test';
const SMTP_PASSWORD = 'relay-prg-password-42';
// What the token store records for AADSTS9002313 (humanOAuthMessage): its own action, then the code.
const RECONNECT_MESSAGE =
  'Microsoft found the request malformed, or the stored token unusable. Click Connect your Outlook account on this server again. If it persists, check that microsoft_outlook.endpoint ends with /oauth2/v2.0/. (Microsoft: invalid_grant, AADSTS9002313)';

const count = (body: string, re: RegExp): number => body.match(new RegExp(re.source, 'g'))?.length ?? 0;

for (const dialect of dialects) {
  describe(`server forms redirect after each action (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let idp: IdentityServer;
    let dovecot: Dovecot;
    let sink: SmtpSink;
    let admin: FormBrowser;

    const outgoingRows = async () => (await t.app.services.outgoingServers.list({ includeArchived: true })).length;
    const incomingRows = async () => (await t.app.services.incomingServers.list({ includeArchived: true })).length;
    const fetchRuns = async (serverId: number) =>
      (await t.app.database.db.selectFrom('jobs').select('id').where('target', '=', `incoming_server:${serverId}`).execute()).length;
    const imapLogins = () => count(dovecot.logTail(100_000), /imap-login: Info: Login: user=<orders@example\.test>/);

    const smtpServer = (overrides: Record<string, string> = {}) => ({
      name: `Relay ${dialect}`,
      auth: 'password',
      host: '127.0.0.1',
      port: String(sink.port),
      security: 'none',
      username: SMTP_USER,
      password: SMTP_PASSWORD,
      fromFilter: 'example.test',
      priority: '10',
      active: 'on',
      ...overrides,
    });
    const imapServer = (overrides: Record<string, string> = {}) => ({
      name: `Orders ${dialect}`,
      host: '127.0.0.1',
      port: String(dovecot.imapsPort),
      security: 'ssl',
      username: MAILBOX,
      password: MAILBOX_PASSWORD,
      folder: 'INBOX',
      intervalMinutes: '5',
      priority: '10',
      active: 'on',
      allowSelfSigned: 'on',
      ...overrides,
    });

    before(async () => {
      idp = await startIdentityServer();
      [dovecot, sink, t] = await Promise.all([
        startDovecot({ identityUrl: idp.url, users: { [MAILBOX]: MAILBOX_PASSWORD } }),
        startSmtpSink({ auth: 'password', tls: 'none', passwords: { [SMTP_USER]: SMTP_PASSWORD } }),
        startTestApp(dialect),
      ]);
      http = await t.app.http();
      const a = await t.createUser('admin', 'admin');
      admin = new FormBrowser(http);
      await admin.signIn('admin', a.password);
      // Microsoft Outlook installed (Apps), without credentials: Outlook servers may be created.
      await t.app.services.settings.update({ outlook: { enabled: true } }, cliActor);
    });
    after(async () => {
      await t.close();
      await Promise.all([dovecot.stop(), sink.stop(), idp.stop()]);
    });

    it('a refused create re-renders the form with the typed values (400, nothing saved, no redirect)', async () => {
      await admin.get('/outgoing-servers/new');
      const before = await outgoingRows();
      const refused = await admin.post('/outgoing-servers/new', smtpServer({ name: '', host: 'typed.example.test', fromFilter: 'typed.example' }), { follow: false });
      assert.equal(refused.statusCode, 400, refused.body);
      assert.match(refused.body, /id="host" name="host" value="typed\.example\.test"/);
      assert.match(refused.body, /id="fromFilter" name="fromFilter" value="typed\.example"/);
      assert.equal(await outgoingRows(), before, 'nothing was saved');
    });

    it('Connect on a new Outlook server without credentials: saved once, the error on its page, a reload creates nothing', async () => {
      await admin.get('/outgoing-servers/new');
      const before = await outgoingRows();
      const posted = await admin.post('/outgoing-servers/new', { name: `M365 ${dialect}`, outlook: 'on', host: '', port: '', security: 'starttls', username: 'notify@example.test', fromFilter: 'notify@example.test', priority: '10', active: 'on', connect: '1' }, { follow: false });
      assert.equal(posted.statusCode, 303, posted.body);
      const row = (await t.app.services.outgoingServers.list()).find((s) => s.name === `M365 ${dialect}`);
      assert.ok(row);
      assert.equal(posted.headers.location, `/outgoing-servers/${row.id}`);
      const page = await admin.get(String(posted.headers.location));
      assert.equal(count(page.body, /Server M365 \w+ created\. Not connected yet: /), 1, page.body);
      assert.match(page.body, /flash-error/);

      const reloaded = await admin.reload();
      assert.equal(reloaded.statusCode, 200);
      assert.equal(await outgoingRows(), before + 1, 'one server, however often the page is reloaded');
      assert.doesNotMatch(reloaded.body, /created\. Not connected yet/, 'the outcome is shown once');

      // Connect from the stored server's form (a save): the same, and the reload saves nothing again.
      const saved = await admin.post(`/outgoing-servers/${row.id}`, { name: `M365 ${dialect}`, outlook: 'on', host: row.host, port: String(row.port), security: row.security, username: 'notify@example.test', fromFilter: 'notify@example.test', priority: '10', active: 'on', connect: '1' });
      assert.equal(count(saved.body, /saved\. Not connected yet: /), 1, saved.body);
      assert.doesNotMatch((await admin.reload()).body, /Not connected yet: /);
      const connect = await admin.post(`/outgoing-servers/${row.id}/outlook/connect`, {}, { follow: false });
      assert.equal(connect.statusCode, 303, connect.body);
      assert.equal(connect.headers.location, `/outgoing-servers/${row.id}`);
    });

    it('outgoing create, save and Test Connection: a reload after each repeats nothing', async () => {
      await admin.get('/outgoing-servers/new');
      const before = await outgoingRows();
      const created = await admin.post('/outgoing-servers/new', smtpServer());
      assert.equal(count(created.body, /Server Relay \w+ created\./), 1);
      await admin.reload();
      await admin.reload();
      assert.equal(await outgoingRows(), before + 1);
      const id = Number(/action="\/outgoing-servers\/(\d+)\/test"/.exec(created.body)?.[1]);
      assert.ok(id > 0);

      const saved = await admin.post(`/outgoing-servers/${id}`, smtpServer({ priority: '20' }));
      assert.equal(count(saved.body, /Server Relay \w+ saved\./), 1);
      assert.doesNotMatch((await admin.reload()).body, /saved\./);

      const logins = sink.authAttempts.length;
      const tested = await admin.post(`/outgoing-servers/${id}/test`, {});
      assert.equal(tested.statusCode, 200);
      assert.equal(count(tested.body, /Connection Test Successful!/), 1, tested.body);
      assert.equal(sink.authAttempts.length, logins + 1, 'one test, one login');
      const reloaded = await admin.reload();
      assert.equal(sink.authAttempts.length, logins + 1, 'the reload did not test again');
      assert.doesNotMatch(reloaded.body, /Connection Test Successful!/, 'the outcome is shown once');
      assert.match(reloaded.body, /Last connection test \d{4}-\d\d-\d\d \d\d:\d\d UTC: succeeded\./);

      const archived = await admin.post(`/outgoing-servers/${id}/archive`, {});
      assert.equal(count(archived.body, /archived\./), 1);
      const restored = await admin.post(`/outgoing-servers/${id}/unarchive`, {});
      assert.equal(count(restored.body, /restored\./), 1);
      assert.doesNotMatch((await admin.reload()).body, /restored\./);
    });

    it('incoming create, Test and Confirm and Fetch Now: a reload after each repeats nothing', async () => {
      await admin.get('/incoming-servers/new');
      const before = await incomingRows();
      const created = await admin.post('/incoming-servers/new', imapServer());
      assert.equal(count(created.body, /Server Orders \w+ created\./), 1);
      await admin.reload();
      assert.equal(await incomingRows(), before + 1);
      const id = Number(/action="\/incoming-servers\/(\d+)\/test"/.exec(created.body)?.[1]);
      assert.ok(id > 0);

      const logins = imapLogins();
      const confirmed = await admin.post(`/incoming-servers/${id}/test`, {});
      assert.equal(count(confirmed.body, /Server confirmed: /), 1, confirmed.body);
      assert.equal(imapLogins(), logins + 1, 'one Test and Confirm, one IMAP login');
      const again = await admin.reload();
      assert.doesNotMatch(again.body, /Server confirmed: /, 'the outcome is shown once');
      assert.equal(imapLogins(), logins + 1, 'the reload did not test again');

      await dovecot.deliver(MAILBOX, ['From: a@client.test', `To: ${MAILBOX}`, 'Subject: PRG', 'Message-ID: <prg-1@client.test>', '', 'hello', ''].join('\r\n'));
      const fetched = await admin.post(`/incoming-servers/${id}/fetch`, {});
      assert.equal(fetched.statusCode, 200);
      assert.equal(count(fetched.body, /Fetched 1 message: 1 stored/), 1, fetched.body);
      assert.equal(await fetchRuns(id), 1);
      const reloaded = await admin.reload();
      assert.equal(await fetchRuns(id), 1, 'the reload did not fetch again');
      assert.doesNotMatch(reloaded.body, /Fetched 1 message/);
    });

    it('a long answer (a mail server reply) reaches the page whole and stays out of the cookie', async () => {
      // A server that refuses with a 5 KB greeting: more than a cookie can hold.
      const refusing = net.createServer((socket) => socket.end(`554 Access denied ${'x'.repeat(5000)} end-of-reply\r\n`));
      await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
      try {
        const port = String((refusing.address() as AddressInfo).port);
        const created = await admin.post('/outgoing-servers/new', smtpServer({ name: `Long ${dialect}`, port }));
        const id = Number(/action="\/outgoing-servers\/(\d+)\/test"/.exec(created.body)?.[1]);
        const posted = await admin.post(`/outgoing-servers/${id}/test`, {}, { follow: false });
        assert.equal(posted.statusCode, 303);
        const cookie = String(posted.headers['set-cookie'] ?? '');
        assert.ok(cookie.length < 300 && !cookie.includes('Access'), cookie);
        const page = await admin.get(`/outgoing-servers/${id}`);
        assert.match(page.body, /Connection Test Failed\.[^<]*end-of-reply/);
      } finally {
        await new Promise((resolve) => refusing.close(resolve));
      }
    });

    it('a token needing reconnection: the form says the code and the action once, the lists do not say "Test passed"', async () => {
      await admin.get('/outgoing-servers/new');
      const created = await admin.post('/outgoing-servers/new', { name: `Stale ${dialect}`, outlook: 'on', host: '', port: '', security: 'starttls', username: 'stale@example.test', fromFilter: 'stale@example.test', priority: '10', active: 'on' });
      const id = Number(/action="\/outgoing-servers\/(\d+)\/test"/.exec(created.body)?.[1]);
      await seedConnection(t.app.database.db, t.app.vault, 'outgoing', id, null, { status: 'needs_reconnect', error_code: 'AADSTS9002313', error_message: RECONNECT_MESSAGE });
      await t.app.database.db.updateTable('outgoing_servers').set({ last_test_at: Date.now() - 86_400_000, last_test_ok: 1 }).where('id', '=', id).execute();

      const page = await admin.get(`/outgoing-servers/${id}`);
      const note = /<p class="flash flash-error">([^<]*AADSTS9002313[^<]*)<\/p>/.exec(page.body)?.[1] ?? '';
      assert.equal(count(note, /AADSTS9002313/), 1, note);
      assert.equal(count(note, /Connect your Outlook account/), 1, note);

      const list = await admin.get('/outgoing-servers');
      const row = new RegExp(`<tr>\\s*<td><a href="/outgoing-servers/${id}">[\\s\\S]*?</tr>`).exec(list.body)?.[0] ?? '';
      assert.match(row, /Outlook Token: reconnect needed/);
      assert.match(row, /Reconnect needed/);
      assert.doesNotMatch(row, /Test passed/, row);

      await admin.get('/incoming-servers/new');
      const inc = await admin.post('/incoming-servers/new', { name: `Stale in ${dialect}`, outlook: 'on', host: '', port: '', security: 'ssl', username: 'stale@example.test', folder: 'INBOX', intervalMinutes: '5', priority: '10', active: 'on' });
      const incId = Number(/action="\/incoming-servers\/(\d+)\/test"/.exec(inc.body)?.[1]);
      await seedConnection(t.app.database.db, t.app.vault, 'incoming', incId, null, { status: 'needs_reconnect', error_code: 'AADSTS9002313', error_message: RECONNECT_MESSAGE });
      const incList = await admin.get('/incoming-servers');
      const incRow = new RegExp(`<tr>\\s*<td><a href="/incoming-servers/${incId}">[\\s\\S]*?</tr>`).exec(incList.body)?.[0] ?? '';
      assert.match(incRow, /<span class="sub error-text">Reconnect needed<\/span>/, incRow);
    });
  });
}
