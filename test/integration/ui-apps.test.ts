// The Apps page as the Outlook procedure uses it ("navigate to the Apps module. Then, remove the Apps filter
// from the search bar and type in Outlook. After that, install the module called Microsoft Outlook."), driven
// as a browser without JavaScript: GET search, POST Install/Uninstall with the CSRF field, the 303 back.
// Installing is the setting outlook.enabled that the settings API and the CLI show; uninstalling is refused
// while a server uses Outlook (by the settings model, so the API and the CLI refuse it too: settings-api and
// settings-cli tests), restoring an archived Outlook server, or creating one, while it is uninstalled likewise,
// and an uninstalled Outlook refuses Connect. Admins only. SQLite.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import type { Principal } from '../../src/users/principal.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { FormBrowser } from '../helpers/form-browser.js';

const CLIENT_ID = '1b4f9c5e-0000-4000-8000-123456789abd';
const SECRET = 'Qz8~ui-apps-secret-value.0123456789';

describe('Apps: installing Microsoft Outlook', () => {
  let t: TestApp;
  let http: FastifyInstance;
  let admin: FormBrowser;
  let user: FormBrowser;
  let anonymous: FormBrowser;
  let adminPrincipal: Principal;

  before(async () => {
    t = await startTestApp('sqlite');
    http = await t.app.http();
    const a = await t.createUser('admin', 'admin');
    adminPrincipal = { user: { id: a.id, login: 'admin', email: 'admin@example.com', name: '', role: 'admin' }, via: 'api_key' };
    const u = await t.createUser('jane', 'user');
    admin = new FormBrowser(http);
    user = new FormBrowser(http);
    anonymous = new FormBrowser(http);
    await admin.signIn('admin', a.password);
    await user.signIn('jane', u.password);
  });
  after(async () => t.close());

  const enabled = async () => (await t.app.services.settings.get()).outlook.enabled;

  it('lists Apps in the top menu; the search bar starts with the Apps filter, under which Outlook is not found', async () => {
    const home = await admin.get('/');
    assert.match(home.body, /<nav class="mainnav"[^]*<a href="\/apps">Apps<\/a>/);
    const apps = await admin.get('/apps');
    assert.equal(apps.statusCode, 200);
    assert.match(apps.body, /<h1>Apps<\/h1>/);
    assert.match(apps.body, /<span class="facet">Apps <a href="\/apps\?filter=none" aria-label="Remove the Apps filter"/);
    assert.match(apps.body, /Mail Gateway/);
    const filtered = await admin.get('/apps?filter=apps&q=Outlook');
    assert.doesNotMatch(filtered.body, /<h2 id="module-microsoft_outlook">/);
    assert.match(filtered.body, /remove the Apps filter<\/a> to search them too/);
  });

  it('without the Apps filter, typing Outlook finds Microsoft Outlook with Install; Install turns outlook.enabled on', async () => {
    assert.equal(await enabled(), false);
    const found = await admin.get('/apps?filter=none&q=Outlook');
    assert.match(found.body, /<h2 id="module-microsoft_outlook">Microsoft Outlook<\/h2>/);
    assert.doesNotMatch(found.body, /<h2 id="module-juniper">/);
    assert.match(found.body, /Not installed[^]*action="\/apps\/microsoft_outlook\/install"[^]*>Install<\/button>/);
    const settingsBefore = await admin.get('/settings');
    assert.match(settingsBefore.body, /Microsoft Outlook is not installed: install it in <a href="\/apps\?filter=none&amp;q=Outlook">Apps<\/a>/);

    const homeStep = /<span class="tag (tag-green|tag-grey)">(done|to do)<\/span> In <a href="\/apps\?filter=none&amp;q=Outlook">Apps<\/a>, remove the Apps filter, type Outlook and install Microsoft Outlook\./;
    assert.equal(homeStep.exec((await admin.get('/')).body)?.[2], 'to do');

    await admin.get('/apps?filter=none&q=Outlook');
    const installed = await admin.post('/apps/microsoft_outlook/install', { filter: 'none', q: 'Outlook' });
    assert.equal(installed.statusCode, 200);
    assert.match(installed.body, /Microsoft Outlook installed\. Next: Settings → Discuss → Custom Email Servers → Outlook Credentials\./);
    assert.match(installed.body, /<span class="tag tag-green">Installed<\/span>[^]*action="\/apps\/microsoft_outlook\/uninstall"[^]*>Uninstall<\/button>/);
    assert.equal(await enabled(), true);
    // One source of truth: the settings API and the Settings page say the same.
    const api = await http.inject({ method: 'GET', url: '/api/v1/settings', headers: { cookie: admin.cookieHeader() } });
    assert.equal((JSON.parse(api.body) as { outlook: { enabled: boolean } }).outlook.enabled, true);
    assert.match((await admin.get('/settings')).body, /Microsoft Outlook installed<\/span>/);
    assert.equal(homeStep.exec((await admin.get('/')).body)?.[2], 'done');
  });

  it('refuses Uninstall while a server uses Outlook, then uninstalls; Connect your Outlook account is then refused', async () => {
    await t.app.services.settings.update({ customEmailServers: true, outlook: { clientId: CLIENT_ID, clientSecret: SECRET } }, cliActor);
    await t.app.services.parameters.set('web.base.url', 'https://juniper.example.com', cliActor);
    const server = await t.app.services.outgoingServers.create(
      { name: 'Notifications', host: '127.0.0.1', port: 587, security: 'starttls', auth: 'outlook', username: 'notifications@example.com', fromFilter: null, priority: 10, active: true, allowSelfSigned: false },
      cliPrincipal,
      cliActor,
    );
    await admin.get('/apps?filter=none&q=Outlook');
    const refused = await admin.post('/apps/microsoft_outlook/uninstall', { filter: 'none', q: 'Outlook' });
    assert.equal(refused.statusCode, 409);
    assert.match(refused.body, /Microsoft Outlook is still used by the server &quot;Notifications&quot;: switch them off Outlook or archive them/);
    assert.equal(await enabled(), true);

    await t.app.services.outgoingServers.archive(server.id, cliPrincipal, cliActor);
    const gone = await admin.post('/apps/microsoft_outlook/uninstall', { filter: 'none', q: 'Outlook' });
    assert.equal(gone.statusCode, 200);
    assert.match(gone.body, /Microsoft Outlook uninstalled/);
    assert.equal(await enabled(), false);
    // Restoring the archived Outlook server now would strand it: refused until Outlook is installed again.
    await admin.get(`/outgoing-servers/${server.id}`);
    const restore = await admin.post(`/outgoing-servers/${server.id}/unarchive`, {});
    assert.equal(restore.statusCode, 409);
    assert.match(restore.body, /The outgoing mail server &quot;Notifications&quot; signs in with Microsoft Outlook, which is not installed: install Microsoft Outlook in Apps/);
    assert.notEqual((await t.app.services.outgoingServers.get(server.id)).archived_at, null, 'it stays archived');

    // Nor is a new Outlook server saved while it is uninstalled: the form says what to do, and keeps what was typed.
    await admin.get('/outgoing-servers/new');
    const created = await admin.post('/outgoing-servers/new', { name: 'Later', outlook: 'on', host: '', port: '', security: 'starttls', username: 'later@example.com', fromFilter: '', priority: '20', active: 'on' });
    assert.equal(created.statusCode, 409, created.body);
    assert.match(created.body, /Microsoft Outlook is not installed, so the outgoing mail server &quot;Later&quot; cannot sign in with it: install Microsoft Outlook in Apps first/);
    assert.match(created.body, /name="name" value="Later"/);
    assert.equal((await t.app.services.outgoingServers.list()).some((s) => s.name === 'Later'), false, 'nothing was saved');
    // An Outlook server left from before that refusal, as such a database holds it, cannot Connect either.
    const now = Date.now();
    const other = await t.app.database.db
      .insertInto('outgoing_servers')
      .values({ name: 'Later', host: '127.0.0.1', port: 587, security: 'starttls', auth: 'outlook', username: 'later@example.com', password_enc: null, owner_user_id: null, priority: 20, active: 1, created_at: now, updated_at: now })
      .returning('id')
      .executeTakeFirstOrThrow();
    await assert.rejects(
      t.app.services.outlookConnect.start('outgoing', other.id, adminPrincipal),
      (e: Error) => /Microsoft Outlook is not installed: an admin installs it in Apps/.test(e.message),
    );
    // Installing again is all it takes.
    await admin.get('/apps?filter=none&q=Outlook');
    await admin.post('/apps/microsoft_outlook/install', { filter: 'none', q: 'Outlook' });
    const started = await t.app.services.outlookConnect.start('outgoing', other.id, adminPrincipal);
    assert.match(started.authorizeUrl, /client_id=1b4f9c5e/);
    await admin.get(`/outgoing-servers/${server.id}`);
    const restored = await admin.post(`/outgoing-servers/${server.id}/unarchive`, {});
    assert.equal(restored.statusCode, 200);
    assert.match(restored.body, /Server Notifications restored\./);
    // Clearing the Client ID on the Settings page is no way around the refusal: Outlook stays installed.
    await admin.get('/settings');
    const cleared = await admin.post('/settings', { customEmailServers: 'on', clientId: '', clientSecret: '', cloud: 'global', tenant: 'common' });
    assert.equal(cleared.statusCode, 200);
    assert.equal((await t.app.services.settings.get()).outlook.clientId, null);
    assert.equal(await enabled(), true);
    await admin.get('/apps?filter=none&q=Outlook');
    const stillUsed = await admin.post('/apps/microsoft_outlook/uninstall', { filter: 'none', q: 'Outlook' });
    assert.equal(stillUsed.statusCode, 409);
    assert.match(stillUsed.body, /Microsoft Outlook is still used by the servers &quot;Notifications&quot;, &quot;Later&quot;: switch them off Outlook or archive them/);
  });

  it('is admin only: a user gets 403 and changes nothing, a visitor is sent to sign in, a post without the CSRF field is refused', async () => {
    const before = await enabled();
    assert.equal((await user.get('/apps')).statusCode, 403);
    assert.doesNotMatch((await user.get('/')).body, /href="\/apps"/, 'a user has no Apps link');
    for (const action of ['install', 'uninstall']) {
      const res = await user.post(`/apps/microsoft_outlook/${action}`, {}, { follow: false });
      assert.equal(res.statusCode, 403, action);
      assert.equal(await enabled(), before);
    }
    const visitor = await anonymous.get('/apps');
    assert.ok([302, 303, 401].includes(visitor.statusCode), String(visitor.statusCode));
    await admin.get('/apps');
    const forged = await admin.post(`/apps/microsoft_outlook/${before ? 'uninstall' : 'install'}`, {}, { csrf: false, follow: false });
    assert.equal(forged.statusCode, 403);
    assert.equal(await enabled(), before);
    // The gateway itself is always there; an unknown module is not found.
    assert.equal((await admin.post('/apps/juniper/uninstall', {}, { follow: false })).statusCode, 400);
    assert.equal((await admin.post('/apps/fax/install', {}, { follow: false })).statusCode, 404);
  });

  it('puts Activate Developer Mode (debug mode) in the Technical menu, kept in a cookie that outlives the browser session', async () => {
    const off = await admin.get('/outbox');
    assert.match(off.body, /<details class="menu[^"]*"><summary>Technical<\/summary>[^]*<a href="\?debug=1" class="menu-switch">Activate Developer Mode \(debug mode\)<\/a>/);
    assert.doesNotMatch((await user.get('/outbox')).body, /Activate Developer Mode/, 'a user has no System Parameters to show');
    const on = await http.inject({ method: 'GET', url: '/outbox?debug=1', headers: { cookie: admin.cookieHeader() } });
    const cookie = (on.cookies as { name: string; maxAge?: number }[]).find((c) => c.name === 'juniper_debug');
    assert.ok(cookie?.maxAge !== undefined && cookie.maxAge >= 30 * 86_400, `max-age ${String(cookie?.maxAge)}`);
    assert.match(on.body, /<a href="\/parameters">System Parameters<\/a><a href="\?debug=0" class="menu-switch">Deactivate Developer Mode<\/a>/);
  });

  it('heads the Settings sections with the procedure\'s words: Discuss (Custom Email Servers) and Email Marketing', async () => {
    const res = await admin.get('/settings');
    assert.match(res.body, /<h2 id="discuss">Discuss <small class="muted">Emails<\/small><\/h2>\s*<label class="check"><input type="checkbox" id="customEmailServers"/);
    assert.match(res.body, /<h2 class="section" id="mass-mailing">Email Marketing[^]*Dedicated server for mass mailings/);
    assert.match((await admin.get('/incoming-servers')).body, /<a class="button" href="\/incoming-servers\/new">Create a new configuration<\/a>/);
    assert.match((await admin.get('/outgoing-servers')).body, /<a class="button" href="\/outgoing-servers\/new">Create a new email server<\/a>/);
  });
  it('counts Outlook as installed only by its outlook.enabled row: a stored Client ID alone is not installed', async () => {
    // Databases from before Apps got the row from migration 032 (src/db/migrate.test.ts).
    await t.app.services.settings.update({ outlook: { clientId: CLIENT_ID } }, cliActor);
    await t.app.database.db.deleteFrom('settings').where('key', '=', 'outlook.enabled').execute();
    assert.equal(await enabled(), false);
    assert.match((await admin.get('/apps?filter=none&q=Outlook')).body, /<span class="tag tag-grey">Not installed<\/span>/);
  });
});
