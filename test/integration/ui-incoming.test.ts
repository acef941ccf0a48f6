// The Incoming Mail Servers and Inbox pages driven as a browser without JavaScript would, against a real
// Dovecot: the Outlook Oauth Authentication checkbox and its preset, Test and Confirm (refused, then
// confirmed), Fetch Now of a message delivered over LMTP, and the Inbox showing it with its hostile HTML
// kept out of Juniper's page. SQLite: the pages add no SQL of their own.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { Ingest } from '../../src/mailbox/ingest.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const MAILBOX = 'orders@example.test';
const MAILBOX_PASSWORD = 'orders-imap-password-42';
const CLIENT_ID = '6c1d3f0e-2b7a-4e55-9a10-7f3e2d1c0b9a';
const CRLF = '\r\n';

/** A message whose text and HTML both carry a script, plus an attachment: what a hostile sender would send. */
function hostileMessage(): string {
  return [
    'From: "Mallory <script>" <mallory@client.test>',
    `To: ${MAILBOX}`,
    'Subject: Invoice <b>overdue</b>',
    'Date: Tue, 04 Mar 2025 10:00:00 +0000',
    'Message-ID: <hostile-1@client.test>',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="mix"',
    '',
    '--mix',
    'Content-Type: multipart/alternative; boundary="alt"',
    '',
    '--alt',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Please pay <script>alert("text")</script> today.',
    '--alt',
    'Content-Type: text/html; charset=utf-8',
    '',
    '<p>Please pay</p><script>alert("html")</script><img src="https://tracker.example/p.gif">',
    '--alt--',
    '--mix',
    'Content-Type: text/plain; name="notes.txt"',
    'Content-Disposition: attachment; filename="notes.txt"',
    '',
    'attached notes',
    '--mix--',
    '',
  ].join(CRLF);
}

describe('Incoming Mail Servers and Inbox pages (real Dovecot)', () => {
  let t: TestApp;
  let http: FastifyInstance;
  let idp: IdentityServer;
  let dovecot: Dovecot;
  let admin: FormBrowser;
  let user: FormBrowser;
  let serverId: number;

  const passwordServer = (overrides: Record<string, string> = {}) => ({
    name: 'Orders',
    host: '127.0.0.1',
    port: String(dovecot.imapsPort),
    security: 'ssl',
    username: MAILBOX,
    password: MAILBOX_PASSWORD,
    folder: 'INBOX',
    intervalMinutes: '5',
    priority: '10',
    keepAttachments: 'on',
    active: 'on',
    allowSelfSigned: 'on',
    ...overrides,
  });

  before(async () => {
    idp = await startIdentityServer();
    [dovecot, t] = await Promise.all([startDovecot({ identityUrl: idp.url, users: { [MAILBOX]: MAILBOX_PASSWORD } }), startTestApp('sqlite')]);
    http = await t.app.http();
    const a = await t.createUser('admin', 'admin');
    const u = await t.createUser('jane', 'user');
    admin = new FormBrowser(http);
    user = new FormBrowser(http);
    await admin.signIn('admin', a.password);
    await user.signIn('jane', u.password);
  });
  after(async () => {
    await t.close();
    await dovecot.stop();
    await idp.stop();
  });

  it('renders the list, the new form and the Inbox, linked from the navigation and from Settings', async () => {
    const pages: [string, RegExp][] = [
      ['/incoming-servers', /<h1>Incoming Mail Servers<\/h1>/],
      ['/incoming-servers/new', /New Incoming Mail Server/],
      ['/inbox', /<h1>Inbox<\/h1>/],
    ];
    for (const [url, expected] of pages) {
      const res = await admin.get(url);
      assert.equal(res.statusCode, 200, `${url}: ${res.body}`);
      assert.equal(res.headers['cache-control'], 'no-store', url);
      assert.match(res.body, expected, url);
      assert.match(res.body, /<a href="\/incoming-servers"[^>]*>Incoming Mail Servers<\/a>/, `${url}: nav`);
      assert.match(res.body, /<a href="\/inbox"[^>]*>Inbox<\/a>/, `${url}: nav`);
    }
    const form = await admin.get('/incoming-servers/new');
    assert.match(form.body, /Outlook Oauth Authentication/);
    assert.match(form.body, /id="folder" name="folder" value="INBOX"/);
    assert.match((await admin.get('/settings')).body, /<a href="\/outgoing-servers">Outgoing Email Servers<\/a> · <a href="\/incoming-servers">Incoming Mail Servers<\/a>/);
    assert.match((await user.get('/incoming-servers')).body, /You see your personal servers/);
  });

  it('creates an Outlook server from the checkbox with the outlook.office365.com:993 SSL preset and offers Connect', async () => {
    // Microsoft Outlook is installed in Apps first: without it, an Outlook server is refused.
    await t.app.services.settings.update({ outlook: { enabled: true } }, cliActor);
    await admin.get('/incoming-servers/new');
    const res = await admin.post('/incoming-servers/new', { name: 'Support <M365>', outlook: 'on', host: '', port: '', security: 'ssl', username: 'Support@Example.com', folder: 'INBOX', intervalMinutes: '5', priority: '10', active: 'on' });
    assert.equal(res.statusCode, 200, res.body);
    const server = (await t.app.services.incomingServers.list()).find((s) => s.name === 'Support <M365>');
    assert.ok(server);
    assert.deepEqual([server.auth, server.host, server.port, server.security, server.username, server.password_enc, server.state], ['outlook', 'outlook.office365.com', 993, 'ssl', 'Support@example.com', null, 'draft']);
    assert.match(res.body, /Server Support &lt;M365&gt; created\. Now click Connect your Outlook account/);
    assert.match(res.body, /Outlook Token Missing/);
    assert.match(res.body, /Connect your Outlook account/);
    assert.match(res.body, /<span class="tag tag-amber">Draft<\/span>/);
    assert.match(res.body, /id="password-field" hidden/, 'no password for Outlook');
    assert.match(res.body, /Outlook needs the Outlook Credentials/);

    // Without credentials, Connect explains what is missing on the server's page (after a redirect: a reload repeats nothing).
    const refused = await admin.post(`/incoming-servers/${server.id}/outlook/connect`, {}, { follow: false });
    assert.equal(refused.statusCode, 303, refused.body);
    assert.equal(refused.headers.location, `/incoming-servers/${server.id}`);
    assert.match((await admin.get(`/incoming-servers/${server.id}`)).body, /flash-error[^>]*>[^<]*(Outlook Credentials|Client ID)/);

    // With them, Connect sends the browser to Microsoft asking for IMAP access to this mailbox.
    await t.app.services.settings.update({ customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: 'ui-incoming-secret-0123456789' } }, cliActor);
    // At another host than web.base.url's, the form links to the page there and Connect stops before Microsoft.
    await t.app.services.parameters.set('web.base.url', 'https://juniper.example.com', cliActor);
    const away = await admin.get(`/incoming-servers/${server.id}`);
    assert.match(away.body, new RegExp(`id="connect-address">Open this page at <a href="https://juniper\\.example\\.com/incoming-servers/${server.id}">`));
    const stopped = await admin.post(`/incoming-servers/${server.id}/outlook/connect`, {}, { follow: false });
    assert.equal(stopped.statusCode, 303, stopped.body);
    assert.equal(stopped.headers.location, `/incoming-servers/${server.id}`, 'back to the server page, not to Microsoft');
    assert.match((await admin.get(`/incoming-servers/${server.id}`)).body, /flash-error[^>]*>Not sent to Microsoft: it would send you back to https:\/\/juniper\.example\.com/);
    // web.base.url is where this browser is (inject's localhost): Connect goes to Microsoft.
    await t.app.services.parameters.set('web.base.url', 'http://localhost', cliActor);
    await admin.get(`/incoming-servers/${server.id}`);
    const connect = await admin.post(`/incoming-servers/${server.id}/outlook/connect`, {}, { follow: false });
    assert.equal(connect.statusCode, 303, connect.body);
    const url = new URL(String(connect.headers.location));
    assert.equal(url.origin + url.pathname, 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize');
    assert.equal(url.searchParams.get('scope'), 'offline_access openid email https://outlook.office.com/IMAP.AccessAsUser.All');
    assert.equal(url.searchParams.get('login_hint'), 'Support@example.com');

    const list = await admin.get('/incoming-servers');
    assert.match(list.body, /Support &lt;M365&gt;/);
    assert.doesNotMatch(list.body, /<M365>/);
  });

  it('Test and Confirm shows the refusal with the server reply, then "Server confirmed" against Dovecot', async () => {
    await admin.get('/incoming-servers/new');
    const created = await admin.post('/incoming-servers/new', passwordServer({ password: 'wrong-password' }));
    assert.equal(created.statusCode, 200, created.body);
    assert.ok(!created.body.includes('wrong-password'), 'the password is not in the page');
    assert.match(created.body, /a password is stored/);
    serverId = Number(/action="\/incoming-servers\/(\d+)\/test"/.exec(created.body)?.[1]);
    assert.ok(serverId > 0);
    assert.doesNotMatch(created.body, /Fetch Now/, 'a draft is not fetched');

    const failed = await admin.post(`/incoming-servers/${serverId}/test`, {});
    assert.equal(failed.statusCode, 200);
    assert.match(failed.body, /flash-error[^>]*>Test and Confirm failed: Authentication refused for orders@example\.test: &quot;NO \[AUTHENTICATIONFAILED\]/);
    assert.match(failed.body, /<span class="tag tag-amber">Draft<\/span>/);

    // Saving with the right password (the empty field would keep the wrong one) and testing again confirms it.
    await admin.post(`/incoming-servers/${serverId}`, passwordServer());
    const confirmed = await admin.post(`/incoming-servers/${serverId}/test`, {});
    assert.match(confirmed.body, /flash-success[^>]*>Server confirmed: Connected to 127\.0\.0\.1:\d+ \(SSL\/TLS\), logged in as orders@example\.test, opened the folder &quot;INBOX&quot;/);
    assert.match(confirmed.body, /<span class="tag tag-green">Confirmed<\/span>/);
    assert.match(confirmed.body, /Fetch Now/);
    assert.equal((await t.app.services.incomingServers.get(serverId)).state, 'confirmed');

    // An empty password field keeps the stored one: the server stays confirmed.
    const kept = await admin.post(`/incoming-servers/${serverId}`, passwordServer({ password: '' }));
    assert.match(kept.body, /Server Orders saved\./);
    assert.equal((await t.app.services.incomingServers.get(serverId)).state, 'confirmed');

    // Another port with the field empty: the form asks for the password beside it and keeps what was typed.
    const moved = await admin.post(`/incoming-servers/${serverId}`, passwordServer({ password: '', port: String(dovecot.imapPort), security: 'starttls' }));
    assert.equal(moved.statusCode, 400, moved.body);
    assert.match(moved.body, /aria-describedby="password-error" autofocus>\s*<p class="help error-text" id="password-error" role="alert">Enter the password again to change the port and security: /);
    assert.match(moved.body, new RegExp(`id="port" name="port" value="${dovecot.imapPort}"`));
    assert.equal((await t.app.services.incomingServers.get(serverId)).port, dovecot.imapsPort, 'nothing was saved');
  });

  it('Fetch Now stores a delivered message and the Inbox shows it with its HTML escaped or sandboxed', async () => {
    await dovecot.deliver(MAILBOX, hostileMessage());
    await admin.get(`/incoming-servers/${serverId}`);
    const fetched = await admin.post(`/incoming-servers/${serverId}/fetch`, {});
    assert.equal(fetched.statusCode, 200, fetched.body);
    assert.match(fetched.body, /flash-success[^>]*>Fetched 1 message: 1 stored, 0 duplicates, 0 quarantined\./);
    assert.match(fetched.body, /<dt>Last fetch<\/dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d UTC/);

    const inbox = await admin.get('/inbox');
    assert.match(inbox.body, /Invoice &lt;b&gt;overdue&lt;\/b&gt;/);
    assert.match(inbox.body, /Mallory &lt;script&gt;/);
    assert.match(inbox.body, /2025-03-04 10:00 UTC/);
    assert.match(inbox.body, new RegExp(`<a href="/inbox\\?serverId=${serverId}">Orders</a>`));
    const id = Number(/<a href="\/inbox\/(\d+)">Invoice/.exec(inbox.body)?.[1]);
    const threadId = /<a href="\/inbox\?threadId=(\d+)">thread<\/a>/.exec(inbox.body)?.[1];
    assert.ok(id > 0 && threadId);
    assert.match((await admin.get(`/inbox?threadId=${threadId}`)).body, /Invoice &lt;b&gt;overdue/);

    const message = await admin.get(`/inbox/${id}`);
    assert.equal(message.statusCode, 200);
    assert.doesNotMatch(message.body, /<script>alert/, 'no script from the message reaches the page');
    assert.doesNotMatch(message.body, /tracker\.example/, 'nor its remote image');
    assert.match(message.body, /<pre class="mail-text">Please pay &lt;script&gt;alert\(&quot;text&quot;\)&lt;\/script&gt; today\./);
    assert.match(message.body, new RegExp(`<iframe class="mail-html" src="/inbox/${id}/html" sandbox=""`));
    const attachment = /<a href="(\/api\/v1\/messages\/\d+\/attachments\/\d+)" download>notes\.txt<\/a>/.exec(message.body)?.[1];
    assert.ok(attachment, message.body);

    // The HTML lives on its own URL under a CSP sandbox: no scripts and no same-origin access even when opened directly.
    const frame = await admin.get(`/inbox/${id}/html`);
    assert.equal(frame.statusCode, 200);
    const csp = String(frame.headers['content-security-policy']);
    assert.match(csp, /^sandbox;/);
    assert.match(csp, /default-src 'none'/);
    assert.doesNotMatch(csp, /allow-scripts|allow-same-origin/);
    assert.equal(frame.headers['x-content-type-options'], 'nosniff');
    assert.match(frame.body, /<p>Please pay<\/p>/);

    const download = await admin.get(attachment);
    assert.equal(download.statusCode, 200);
    assert.equal(download.body.trim(), 'attached notes');
    assert.match(String(download.headers['content-disposition']), /^attachment; filename="notes\.txt"/);
  });

  it('the Inbox shows quarantined messages alone with Show: Quarantined only (where docs/troubleshooting.md sends admins)', async () => {
    const server = await t.app.database.db.selectFrom('incoming_servers').selectAll().where('id', '=', serverId).executeTakeFirstOrThrow();
    const raw = Buffer.from('Message-ID: <held@client.test>\r\nFrom: a@client.test\r\nSubject: Held back\r\n\r\nbody\r\n');
    await t.app.database.db.transaction().execute((trx) => new Ingest(t.app.services.blobs).quarantine(trx, { server, uid: 9001, uidvalidity: 1, raw, error: 'could not store: test' }));
    const all = await admin.get('/inbox');
    assert.match(all.body, /<option value="1">Quarantined only<\/option>/);
    assert.match(all.body, /Held back<\/a> <span class="tag tag-red">Quarantined<\/span>/);
    assert.match(all.body, /Invoice &lt;b&gt;overdue/);
    const held = await admin.get('/inbox?quarantined=1');
    assert.equal(held.statusCode, 200);
    assert.match(held.body, /<option value="1" selected>Quarantined only<\/option>/);
    assert.match(held.body, /Held back/);
    assert.doesNotMatch(held.body, /Invoice &lt;b&gt;overdue/, 'only quarantined messages');
    assert.match((await admin.get(`/inbox?quarantined=1&serverId=${serverId + 1000}`)).body, /No messages match these filters/);
  });

  it("keeps a user out of the admin's server and its messages (404, not 403)", async () => {
    const [message] = await t.app.services.messages.list({ userId: 0, admin: true });
    assert.ok(message);
    assert.doesNotMatch((await user.get('/inbox')).body, /Invoice/);
    assert.equal((await user.get(`/inbox/${message.id}`)).statusCode, 404);
    assert.equal((await user.get(`/inbox/${message.id}/html`)).statusCode, 404);
    assert.equal((await user.get(`/incoming-servers/${serverId}`)).statusCode, 404);
    assert.doesNotMatch((await user.get('/incoming-servers')).body, /Orders/);
    await user.get('/incoming-servers');
    assert.equal((await user.post(`/incoming-servers/${serverId}/fetch`, {}, { follow: false })).statusCode, 404);
  });

  it('shows the last fetch error with since when, refuses Fetch Now for a draft, and archives', async () => {
    await t.app.services.fetchState.recordFetch(serverId, { ok: false, error: 'Connection to 127.0.0.1 refused <ECONNREFUSED>' }, Date.parse('2025-03-04T11:00:00Z'));
    const page = await admin.get(`/incoming-servers/${serverId}`);
    assert.match(page.body, /<dt>Last error<\/dt><dd><span class="error-text">Connection to 127\.0\.0\.1 refused &lt;ECONNREFUSED&gt;<\/span><span class="help">Failing since 2025-03-04 11:00 UTC\.<\/span>/);
    assert.match((await admin.get('/incoming-servers')).body, /failing since 2025-03-04 11:00 UTC/);

    // A new folder is another connection: the server becomes a draft and Fetch Now says why it refuses.
    const moved = await admin.post(`/incoming-servers/${serverId}`, passwordServer({ password: '', folder: 'Archive' }));
    assert.match(moved.body, /It is a draft again: click Test and Confirm\./);
    const refused = await admin.post(`/incoming-servers/${serverId}/fetch`, {});
    assert.match(refused.body, /flash-error[^>]*>Fetch failed: Incoming server &quot;Orders&quot; \(id \d+\) is a draft: run Test &amp; Confirm first\./);

    const archived = await admin.post(`/incoming-servers/${serverId}/archive`, {});
    assert.match(archived.body, /Server Orders archived\./);
    assert.doesNotMatch(archived.body, /href="\/incoming-servers\/\d+"><strong>Orders</);
    assert.match((await admin.get('/incoming-servers?archived=1')).body, /<strong>Orders<\/strong>/);
    assert.match((await admin.get('/inbox')).body, /Invoice &lt;b&gt;overdue/, 'its messages stay');
  });
});
