// The admin pages driven as a browser without JavaScript would: GET a page, POST its form with the hidden
// CSRF field, follow the 303. Proves access rules, that secrets never reach the HTML, the Outlook preset,
// Test Connection against a real SMTP sink, and developer mode. SQLite: the pages add no SQL of their own.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const CLIENT_ID = '1b4f9c5e-0000-4000-8000-123456789abc';
const SECRET = 'Qz8~ui-page-secret-value.0123456789';
const SINK_PASSWORD = 'sink-password-4711';


describe('admin pages (server-rendered forms)', () => {
  let t: TestApp;
  let http: FastifyInstance;
  let admin: FormBrowser;
  let user: FormBrowser;
  let sink: SmtpSink;

  before(async () => {
    t = await startTestApp('sqlite');
    http = await t.app.http();
    sink = await startSmtpSink({ auth: 'password', passwords: { 'relay@example.com': SINK_PASSWORD }, tls: 'starttls' });
    const a = await t.createUser('admin', 'admin');
    const u = await t.createUser('jane', 'user');
    admin = new FormBrowser(http);
    user = new FormBrowser(http);
    await admin.signIn('admin', a.password);
    await user.signIn('jane', u.password);
  });
  after(async () => {
    await sink.stop();
    await t.close();
  });

  it('renders every page for an admin as uncached HTML', async () => {
    const pages: [string, RegExp][] = [
      ['/', /Welcome, admin/],
      ['/settings', /General Settings/],
      ['/outgoing-servers', /Outgoing Email Servers/],
      ['/outgoing-servers/new', /New Outgoing Email Server/],
      ['/outbox', /<h1>Outbox<\/h1>/],
      ['/parameters?debug=1', /<h1>System Parameters<\/h1>/],
    ];
    for (const [url, expected] of pages) {
      const res = await admin.get(url);
      assert.equal(res.statusCode, 200, `${url}: ${res.body}`);
      assert.match(String(res.headers['content-type']), /^text\/html/);
      assert.equal(res.headers['cache-control'], 'no-store', url);
      assert.match(res.body, expected, url);
    }
    await admin.get('/?debug=0');
  });

  it('answers 403 to a user on the admin-only Settings and System Parameters pages', async () => {
    for (const url of ['/settings', '/parameters', '/parameters?debug=1']) {
      const res = await user.get(url);
      assert.equal(res.statusCode, 403, url);
      assert.match(res.body, /Only an admin may do this/);
    }
    await user.get('/');
    const post = await user.post('/settings', { customEmailServers: 'on' }, { follow: false });
    assert.equal(post.statusCode, 403);
    assert.equal((await t.app.services.settings.get()).customEmailServers, false);
    const home = await user.get('/');
    assert.doesNotMatch(home.body, /href="\/settings"/, 'a user has no Settings link');
  });

  it('refuses a form posted without the CSRF field', async () => {
    await admin.get('/settings');
    const res = await admin.post('/settings', { customEmailServers: 'on', clientId: CLIENT_ID }, { csrf: false, follow: false });
    assert.equal(res.statusCode, 403);
    assert.match(res.body, /security token/);
    assert.equal((await t.app.services.settings.get()).outlook.clientId, null);
  });

  it('saves the Outlook Credentials and never puts the client secret in the page', async () => {
    // Microsoft Outlook is installed in Apps, as the procedure does first; the Settings form has no switch for it.
    await admin.get('/apps?filter=none&q=Outlook');
    assert.match((await admin.post('/apps/microsoft_outlook/install', { filter: 'none', q: 'Outlook' })).body, /Microsoft Outlook installed\./);
    const form = await admin.get('/settings');
    assert.match(form.body, /id="outlook-credentials" hidden/, 'Outlook Credentials wait for Custom Email Servers');
    const saved = await admin.post('/settings', { customEmailServers: 'on', clientId: CLIENT_ID, clientSecret: SECRET, clientSecretExpiresAt: '2099-12-31', cloud: 'global', tenant: 'common' });
    assert.equal(saved.statusCode, 200);
    assert.match(saved.body, /Settings saved\./);
    assert.match(saved.body, /a secret is stored/);
    assert.doesNotMatch(saved.body, /id="outlook-credentials" hidden/);
    assert.ok(saved.body.includes(CLIENT_ID));
    assert.ok(!saved.body.includes(SECRET), 'the secret is not in the page');
    assert.match(saved.body, /<code>web\.base\.url<\/code>\) is not set/, 'says the Redirect URI shown is not yet the stored one');
    assert.match(saved.body, /<code id="redirect-uri">http:\/\/localhost:80\/microsoft_outlook\/confirm<\/code>/, 'shows a Redirect URI all the same');

    // A refused save shows what was entered (not the secret) and keeps the stored secret.
    const refused = await admin.post('/settings', { customEmailServers: 'on', clientId: 'not-a-guid', clientSecret: `${SECRET}-new`, cloud: 'global', tenant: 'common' });
    assert.equal(refused.statusCode, 400);
    assert.match(refused.body, /GUID/);
    assert.match(refused.body, /value="not-a-guid"/);
    assert.ok(!refused.body.includes(SECRET));
    assert.equal((await t.app.services.settings.outlookCredentials())?.clientSecret, SECRET);

    // An empty secret field keeps the stored secret; the Redirect URI appears once web.base.url is set.
    await t.app.services.parameters.set('web.base.url', 'https://juniper.example.com', cliActor);
    const kept = await admin.post('/settings', { customEmailServers: 'on', clientId: CLIENT_ID, clientSecret: '', cloud: 'global', tenant: 'organizations' });
    assert.match(kept.body, /<code id="redirect-uri">https:\/\/juniper\.example\.com\/microsoft_outlook\/confirm<\/code>/);
    assert.match(kept.body, /https:\/\/login\.microsoftonline\.com\/organizations\/oauth2\/v2\.0\//);
    assert.equal((await t.app.services.settings.outlookCredentials())?.clientSecret, SECRET);
    assert.ok(!t.logs().includes(SECRET), 'nor in the logs');
  });

  it('creates an Outlook server from the checkbox with the smtp.office365.com:587 preset and offers Connect', async () => {
    await admin.get('/outgoing-servers/new');
    const res = await admin.post('/outgoing-servers/new', { name: 'Notifications <M365>', outlook: 'on', auth: 'password', host: '', port: '', security: 'starttls', username: 'Notifications@Example.com', fromFilter: '', priority: '10', active: 'on' });
    assert.equal(res.statusCode, 200, res.body);
    const [server] = await t.app.services.outgoingServers.list();
    assert.ok(server);
    assert.deepEqual([server.auth, server.host, server.port, server.security, server.username, server.from_filter], ['outlook', 'smtp.office365.com', 587, 'starttls', 'Notifications@example.com', null], 'an empty From Filter stays empty, as the procedure allows');
    assert.match(res.body, /Outlook Token Missing/);
    assert.match(res.body, /Connect your Outlook account/);
    assert.match(res.body, /Notifications &lt;M365&gt;/, 'the name is escaped');

    // This browser is at localhost, web.base.url (set above) is juniper.example.com: Microsoft would send it back
    // there, without this session. Connect stays here and links to the page at web.base.url.
    const elsewhere = await admin.post(`/outgoing-servers/${server.id}/outlook/connect`, {}, { follow: false });
    assert.equal(elsewhere.statusCode, 303, elsewhere.body);
    assert.equal(elsewhere.headers.location, `/outgoing-servers/${server.id}`, 'back to the server page, not to Microsoft');
    const there = await admin.get(`/outgoing-servers/${server.id}`);
    assert.match(there.body, /flash-error[^>]*>Not sent to Microsoft: it would send you back to https:\/\/juniper\.example\.com \(web\.base\.url\)/);
    assert.match(there.body, new RegExp(`Open this page at <a href="https://juniper\\.example\\.com/outgoing-servers/${server.id}">`));

    // At web.base.url, Connect sends the browser to Microsoft's authorize endpoint (the credentials are set above).
    await t.app.services.parameters.set('web.base.url', 'http://localhost', cliActor);
    const connect = await admin.post(`/outgoing-servers/${server.id}/outlook/connect`, {}, { follow: false });
    assert.equal(connect.statusCode, 303, connect.body);
    assert.match(String(connect.headers.location), /^https:\/\/login\.microsoftonline\.com\/organizations\/oauth2\/v2\.0\/authorize\?/);
    assert.match(String(connect.headers.location), /login_hint=Notifications%40example\.com/);

    const list = await admin.get('/outgoing-servers');
    assert.match(list.body, /Notifications &lt;M365&gt;/);
    assert.doesNotMatch(list.body, /<M365>/);
  });

  it('shows "Connection Test Successful!" after Test Connection against a real SMTP server', async () => {
    await admin.get('/outgoing-servers/new');
    const created = await admin.post('/outgoing-servers/new', { name: 'Relay', auth: 'password', host: '127.0.0.1', port: String(sink.port), security: 'starttls', username: 'relay@example.com', password: SINK_PASSWORD, fromFilter: 'example.com', priority: '20', active: 'on', allowSelfSigned: 'on' });
    assert.equal(created.statusCode, 200, created.body);
    assert.match(created.body, /a password is stored/);
    assert.ok(!created.body.includes(SINK_PASSWORD));
    const id = /action="\/outgoing-servers\/(\d+)\/test"/.exec(created.body)?.[1];
    assert.ok(id);
    const tested = await admin.post(`/outgoing-servers/${id}/test`, {});
    assert.equal(tested.statusCode, 200);
    assert.match(tested.body, /flash-success[^>]*>Connection Test Successful!/);
    assert.equal(sink.messages.length, 0, 'a test sends nothing');

    // Saving with an empty password field keeps the stored password; a wrong one fails the test in red.
    await admin.post(`/outgoing-servers/${id}`, { name: 'Relay', auth: 'password', host: '127.0.0.1', port: String(sink.port), security: 'starttls', username: 'relay@example.com', password: '', fromFilter: 'example.com', priority: '20', active: 'on', allowSelfSigned: 'on' });
    assert.match((await admin.post(`/outgoing-servers/${id}/test`, {})).body, /Connection Test Successful!/);
    await admin.post(`/outgoing-servers/${id}`, { name: 'Relay', auth: 'password', host: '127.0.0.1', port: String(sink.port), security: 'starttls', username: 'relay@example.com', password: 'wrong-password', fromFilter: 'example.com', priority: '20', active: 'on', allowSelfSigned: 'on' });
    const failed = await admin.post(`/outgoing-servers/${id}/test`, {});
    assert.match(failed.body, /flash-error[^>]*>Connection Test Failed\./);
  });

  it('re-renders a refused server with the message and the entered values', async () => {
    await admin.get('/outgoing-servers/new');
    const res = await admin.post('/outgoing-servers/new', { name: 'Broken', auth: 'password', host: 'smtp.example.com', port: '465', security: 'starttls', username: 'x@example.com', password: 'pw-not-shown', fromFilter: 'example.com', priority: '10' });
    assert.equal(res.statusCode, 400);
    assert.match(res.body, /Port 465 expects SSL\/TLS/);
    assert.match(res.body, /value="Broken"/);
    assert.ok(!res.body.includes('pw-not-shown'));
  });

  it('asks for the password again beside its field when an edit moves the server to another port, keeping what was typed', async () => {
    const relay = { name: 'Moving relay', auth: 'password', host: '127.0.0.1', port: String(sink.port), security: 'starttls', username: 'relay@example.com', fromFilter: 'example.com', priority: '20', active: 'on', allowSelfSigned: 'on' };
    await admin.get('/outgoing-servers/new');
    const created = await admin.post('/outgoing-servers/new', { ...relay, password: SINK_PASSWORD });
    const id = /action="\/outgoing-servers\/(\d+)\/test"/.exec(created.body)?.[1];
    assert.ok(id, created.body);

    const refused = await admin.post(`/outgoing-servers/${id}`, { ...relay, name: 'Moved relay', port: '2525', security: 'none', password: '' });
    assert.equal(refused.statusCode, 400, refused.body);
    assert.match(
      refused.body,
      /<input type="password" id="password" name="password" value="" autocomplete="new-password" aria-invalid="true" aria-describedby="password-error" autofocus>\s*<p class="help error-text" id="password-error" role="alert">Enter the password again to change the port and security: a stored password is only sent to the host, port and security it was entered for\.<\/p>/,
      'the message stands beside the password input, which takes the focus',
    );
    assert.doesNotMatch(refused.body, /class="flash flash-error"/, 'not a second time at the top');
    assert.doesNotMatch(refused.body, /Leave the field empty to keep it/, 'nor the advice it contradicts');
    assert.match(refused.body, /id="name" name="name" value="Moved relay"/, 'what was typed stays');
    assert.match(refused.body, /id="port" name="port" value="2525"/);
    assert.match(refused.body, /<option value="none" selected>/);
    const stored = await t.app.services.outgoingServers.get(Number(id));
    assert.deepEqual([stored.name, stored.port, stored.security], ['Moving relay', sink.port, 'starttls'], 'nothing was saved');

    // Typed again with the move, it is saved.
    const saved = await admin.post(`/outgoing-servers/${id}`, { ...relay, port: '2525', security: 'none', password: SINK_PASSWORD });
    assert.match(saved.body, /Server Moving relay saved\./);
    assert.equal((await t.app.services.outgoingServers.get(Number(id))).port, 2525);
  });

  it("shows a user's server on a port off the list refused beside the port input, and saves it once an admin adds the port on System Parameters", async () => {
    await t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
    const relay = { name: 'Jane relay', auth: 'password', host: '127.0.0.1', port: String(sink.port), security: 'starttls', allowSelfSigned: 'on', username: 'relay@example.com', password: SINK_PASSWORD, fromFilter: 'jane@example.com', priority: '10', active: 'on' };
    await user.get('/outgoing-servers/new');
    const refused = await user.post('/outgoing-servers/new', relay);
    assert.equal(refused.statusCode, 400, refused.body);
    assert.match(
      refused.body,
      new RegExp(`<input type="number" id="port" name="port" value="${sink.port}" min="1" max="65535" aria-invalid="true" aria-describedby="port-error" autofocus>\\s*<p class="help error-text" id="port-error" role="alert">The outgoing mail server uses port ${sink.port}, which a server of a user other than an admin may not use \\(allowed: 25, 143, 465, 587, 993, 2525\\)\\. Use 587 \\(SMTP submission\\) or 465 \\(SMTP over TLS\\), or ask an admin to add port ${sink.port} to the system parameter mail\\.server\\.allowed_ports\\.</p>`),
      'the message stands beside the port input, which takes the focus',
    );
    assert.doesNotMatch(refused.body, /class="flash flash-error"/, 'not a second time at the top');
    assert.match(refused.body, /id="name" name="name" value="Jane relay"/, 'what was typed stays');
    await user.get('/incoming-servers/new');
    const refusedIn = await user.post('/incoming-servers/new', { name: 'Jane inbox', host: '127.0.0.1', port: '8080', security: 'none', username: 'jane@example.com', password: 'pw-0123456789', folder: 'INBOX', intervalMinutes: '5', priority: '10' });
    assert.equal(refusedIn.statusCode, 400, refusedIn.body);
    assert.match(refusedIn.body, /aria-describedby="port-error" autofocus>\s*<p class="help error-text" id="port-error" role="alert">The incoming mail server uses port 8080, /);

    // The admin sees the parameter with its default on System Parameters and adds the port there.
    await admin.get('/?debug=1');
    const params = await admin.get('/parameters');
    assert.match(params.body, /<code>mail\.server\.allowed_ports<\/code><span class="sub">Ports that mail servers of users other than admins may use: /);
    assert.match(params.body, /name="value" value="25, 143, 465, 587, 993, 2525" aria-label="Value of mail\.server\.allowed_ports" spellcheck="false">\s*<span class="sub">default value<\/span>/);
    const bad = await admin.post('/parameters', { key: 'mail.server.allowed_ports', value: '587, 80x' });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.body, /mail\.server\.allowed_ports must be comma-separated ports and ranges .*&quot;80x&quot; is not a port/);
    const added = await admin.post('/parameters', { key: 'mail.server.allowed_ports', value: `587, 993, ${sink.port}` });
    assert.match(added.body, /mail\.server\.allowed_ports saved\./);

    const saved = await user.post('/outgoing-servers/new', relay);
    assert.match(saved.body, /Server Jane relay created\./, saved.body.slice(0, 2000));
    const reset = await admin.post('/parameters/delete', { key: 'mail.server.allowed_ports' });
    assert.match(reset.body, /mail\.server\.allowed_ports reset to its default\./);
    await admin.get('/?debug=0');
    await t.app.services.parameters.unset('mail.server.allowed_private_hosts', cliActor);
  });

  it('lists mails in the Outbox and cancels one', async () => {
    const { id } = await t.app.services.outbox.enqueue({ from: 'admin@example.com', to: ['bob@example.org'], subject: 'Quarterly <report>', text: 'hi' }, null, cliActor);
    const page = await admin.get('/outbox?state=queued');
    assert.match(page.body, /Quarterly &lt;report&gt;/);
    assert.match(page.body, new RegExp(`action="/outbox/${id}/cancel"`));
    const cancelled = await admin.post(`/outbox/${id}/cancel`, { back: '/outbox?state=queued' });
    assert.match(cancelled.body, new RegExp(`Mail ${id} cancelled\\.`));
    assert.equal((await t.app.services.queue.get(id)).state, 'cancelled');
    assert.doesNotMatch((await user.get('/outbox')).body, /Quarterly/, "a user sees only the mails they enqueued");
  });

  it('shows System Parameters only in developer mode (?debug=1 on, ?debug=0 off) and edits them', async () => {
    assert.doesNotMatch((await admin.get('/')).body, /System Parameters/);
    const hint = await admin.get('/parameters');
    assert.match(hint.body, /Activate developer mode/);
    const on = await admin.get('/?debug=1');
    assert.match(on.body, /<a href="\/parameters">System Parameters<\/a>/);
    assert.match((await admin.get('/outbox')).body, /System Parameters/, 'the mode sticks (cookie)');

    const params = await admin.get('/parameters');
    assert.match(params.body, /mail\.catchall\.domain/);
    const added = await admin.post('/parameters', { add: '1', key: 'mail.catchall.domain', value: 'Example.COM' });
    assert.match(added.body, /mail\.catchall\.domain saved\./);
    assert.equal(await t.app.services.parameters.value('mail.catchall.domain'), 'example.com');
    const refused = await admin.post('/parameters', { add: '1', key: 'mail.catchall.domain', value: 'not a domain' });
    assert.equal(refused.statusCode, 400);
    assert.match(refused.body, /value="not a domain"/);
    const deleted = await admin.post('/parameters/delete', { key: 'mail.catchall.domain' });
    assert.match(deleted.body, /mail\.catchall\.domain deleted\./);
    assert.equal(await t.app.services.parameters.value('mail.catchall.domain'), undefined);

    const off = await admin.get('/?debug=0');
    assert.doesNotMatch(off.body, /System Parameters/);
    assert.doesNotMatch((await admin.get('/outbox')).body, /System Parameters/);
  });
});
