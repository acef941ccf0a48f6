// The seed's "Configure incoming email server" end to end with nothing faked on Juniper's side: an Outlook
// incoming server, Connect your Outlook account against the loopback identity server (IMAP scope), "Outlook
// Token Valid" on the form, then Test and Confirm and a fetch over XOAUTH2 with the token from the real token
// store, checked by Dovecot's oauth2 passdb at that identity server. SQLite is enough: no SQL of its own.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { corpusMessage } from '../helpers/incoming.js';
import { authorize, confirm, signIn, startConnect, type BrowserSession } from '../helpers/outlook.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const CLIENT_ID = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d';
const CLIENT_SECRET = 'incoming-connect-secret~0123456789abcdef';
const MAILBOX = 'support@example.test';
// Only so the test can look at the mailbox; Juniper signs in with tokens.
const INSPECT_PASSWORD = 'inspect-only';
const IMAP_SCOPE = 'offline_access openid email https://outlook.office.com/IMAP.AccessAsUser.All';

describe('Connect your Outlook account for an incoming server, then Test and Confirm and fetch over XOAUTH2', () => {
  let idp: IdentityServer;
  let dovecot: Dovecot;
  let t: TestApp;
  let http: FastifyInstance;
  let session: BrowserSession;
  let page: FormBrowser;
  let serverId: number;

  const api = async (method: 'GET' | 'POST' | 'PUT', url: string, payload?: object) => {
    const res = await http.inject({ method, url, payload, headers: { cookie: session.cookie, 'x-csrf-token': session.csrfToken } });
    return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
  };

  before(async () => {
    idp = await startIdentityServer();
    [dovecot, t] = await Promise.all([startDovecot({ identityUrl: idp.url, users: { [MAILBOX]: INSPECT_PASSWORD } }), startTestApp('sqlite')]);
    http = await t.app.http();
    const admin = await t.createUser('admin', 'admin');
    session = await signIn(http, 'admin', admin.password);
    page = new FormBrowser(http);
    await page.signIn('admin', admin.password);
    // Where the FormBrowser is (inject's localhost): the page's Connect, started at another host, stops before Microsoft.
    await t.app.services.parameters.set('web.base.url', 'http://localhost', cliActor);
    await t.app.services.parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
    const settings = await api('PUT', '/api/v1/settings', { customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET } });
    assert.equal(settings.status, 200, settings.text);
    // The preset is outlook.office365.com; the test points the server at Dovecot's IMAPS port instead.
    const created = await api('POST', '/api/v1/incoming-servers', { name: 'Support', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: dovecot.imapsPort, security: 'ssl', allowSelfSigned: true });
    assert.equal(created.status, 201, created.text);
    serverId = created.body.id as number;
  });
  after(async () => {
    await t.close();
    await dovecot.stop();
    await idp.stop();
  });

  it('connects with the IMAP scope and lands on the form showing "Outlook Token Valid"', async () => {
    const url = new URL(await startConnect(http, session, 'incoming', serverId));
    assert.equal(url.origin + url.pathname, `${idp.url}/common/oauth2/v2.0/authorize`);
    assert.equal(url.searchParams.get('scope'), IMAP_SCOPE);
    assert.equal(url.searchParams.get('login_hint'), MAILBOX);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');

    const res = await confirm(http, session, await authorize(url.toString()));
    assert.equal(res.statusCode, 303, res.body);
    assert.equal(res.headers.location, `/incoming-servers/${serverId}?connected=1`);
    const token = (await api('GET', `/api/v1/incoming-servers/${serverId}`)).body.token as { status: string; account: string | null };
    assert.deepEqual([token.status, token.account], ['valid', MAILBOX]);
    assert.ok(idp.tokenRequests.some((r) => r.grantType === 'authorization_code'));

    const form = await page.get(`/incoming-servers/${serverId}?connected=1`);
    assert.equal(form.statusCode, 200, form.body);
    assert.match(form.body, /<span class="tag tag-green">Outlook Token Valid<\/span>/);
    assert.match(form.body, /Outlook account connected\. Now click Test and Confirm\./);
    assert.match(form.body, /Connected as <strong>support@example\.test<\/strong>/);
    assert.match(form.body, /<span class="tag tag-amber">Draft<\/span>/);
  });

  it('the page\'s Connect button starts the same flow (303 to the authorize URL with the IMAP scope)', async () => {
    await page.get(`/incoming-servers/${serverId}`);
    const res = await page.post(`/incoming-servers/${serverId}/outlook/connect`, {}, { follow: false });
    assert.equal(res.statusCode, 303, res.body);
    const url = new URL(String(res.headers.location));
    assert.equal(url.origin + url.pathname, `${idp.url}/common/oauth2/v2.0/authorize`);
    assert.equal(url.searchParams.get('scope'), IMAP_SCOPE);
  });

  it('Test and Confirm signs in to Dovecot with XOAUTH2 using the stored token, and a fetch stores a delivered message', async () => {
    const before = idp.tokenRequests.length;
    await page.get(`/incoming-servers/${serverId}`);
    const tested = await page.post(`/incoming-servers/${serverId}/test`, {});
    assert.equal(tested.statusCode, 200);
    assert.match(tested.body, /flash-success[^>]*>Server confirmed: Connected to 127\.0\.0\.1:\d+ \(SSL\/TLS\), logged in as support@example\.test/, dovecot.logTail());
    assert.match(tested.body, /<span class="tag tag-green">Confirmed<\/span>/);
    assert.equal(idp.tokenRequests.length, before, 'the fresh access token from the connect is reused, not refreshed');

    const message = corpusMessage('attachment', MAILBOX, 1);
    await dovecot.deliver(MAILBOX, message.raw);
    const fetched = await page.post(`/incoming-servers/${serverId}/fetch`, {});
    assert.match(fetched.body, /Fetched 1 message: 1 stored, 0 duplicates, 0 quarantined\./, dovecot.logTail());
    const stored = await t.app.services.messages.list({ userId: 0, admin: true }, { serverId });
    assert.deepEqual(stored.map((m) => [m.message_id, m.subject]), [[message.messageId, message.subject]]);
    assert.match((await page.get('/inbox')).body, /attachment #1/);
    assert.match(dovecot.logTail(200), /Login: user=<support@example\.test>, method=XOAUTH2/, 'Dovecot logged the XOAUTH2 login');
  });

  it('after a forced renewal (the refresh token grant) the next Test and Confirm still signs in', async () => {
    const refreshes = () => idp.tokenRequests.filter((r) => r.grantType === 'refresh_token').length;
    const before = refreshes();
    await t.app.services.tokens.accessToken('incoming', serverId, { renew: true });
    assert.equal(refreshes(), before + 1);
    const server = await t.app.services.incomingServers.get(serverId);
    const r = await t.app.services.incoming.testAndConfirm(server);
    assert.equal(r.ok, true, r.message);
    assert.equal((await api('GET', `/api/v1/incoming-servers/${serverId}`)).body.lastError, null);
  });
});
