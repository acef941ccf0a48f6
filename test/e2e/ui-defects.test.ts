// Issue 12's defects, each as an admin meets it in Chromium (playwright-core + Debian's Chromium), one
// browser for the file: error pages instead of raw JSON, Outlook host and port under Advanced, Connect that
// saves first, developer mode from Settings and the Technical menu, the Send As warning, the mass-mailing
// server's empty From Filter, the Redirect URI, wording, and the smaller ones (Archive, favicon, sign-in
// before setup, Inbox without sent mail, Test Connection without a token). Screenshots: test-artifacts/e2e-defects/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { cliActor } from '../../src/audit/audit-log.js';
import { explainRoute } from '../../src/outgoing/route-explainer.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { microsoftError, startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const ARTIFACTS = path.resolve('test-artifacts/e2e-defects');
const CLIENT_ID = '7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f';
const SECRET = 'defects~client-secret-value.0123456789';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('issue 12 defects in Chromium', () => {
  let t: TestApp;
  let base: string;
  let browser: Browser;
  let page: Page;
  let identity: IdentityServer;
  let password: string;
  let shot = 0;
  const cspViolations: string[] = [];
  const dialogs: string[] = [];

  const screenshot = async (name: string) => {
    shot += 1;
    await page.screenshot({ path: path.join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
  };
  const serverByName = async (name: string) => {
    const s = (await t.app.services.outgoingServers.list({ includeArchived: true })).find((x) => x.name === name);
    assert.ok(s, name);
    return s;
  };

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const launching = chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS }).then(async (b) => {
      browser = b;
      page = await (await b.newContext({ viewport: { width: 1280, height: 860 } })).newPage();
      page.setDefaultTimeout(5000);
      page.on('console', (m) => {
        if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
      });
      page.on('dialog', (d) => {
        dialogs.push(d.message());
        void d.accept();
      });
    });
    const starting = (async () => {
      t = await startTestApp('sqlite');
      identity = await startIdentityServer();
      const http = await t.app.http();
      await http.listen({ port: 0, host: '127.0.0.1' });
      base = `http://127.0.0.1:${(http.server.address() as AddressInfo).port}`;
    })();
    await Promise.all([launching, starting]);
  });

  after(async () => {
    await browser?.close();
    await identity?.stop();
    await t?.close();
  });

  it('10: says on the sign-in page, before setup, that a setup link was printed; serves /favicon.ico', async () => {
    assert.ok(await t.app.services.firstRun.issueIfNeeded(), 'no admin yet');
    await page.goto(`${base}/login`);
    await page.getByText('printed a one-time setup link').waitFor();
    const icon = await page.request.get(`${base}/favicon.ico`);
    assert.equal(icon.status(), 200);
    assert.match(icon.headers()['content-type'] ?? '', /^image\//);
    password = (await t.createUser('admin', 'admin')).password;
    await t.app.services.firstRun.issueIfNeeded();
    await page.goto(`${base}/login`);
    assert.equal(await page.getByText('printed a one-time setup link').count(), 0, 'not once an admin exists');
    await page.locator('#login').fill('admin');
    await page.locator('#password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Welcome, admin' }).waitFor();
  });

  it('4: activates developer mode from the bottom of Settings; System Parameters sit under Technical; one top-bar row at 1280 px', async () => {
    await page.goto(`${base}/settings`);
    await page.getByRole('button', { name: 'Save' }).waitFor();
    await page.getByRole('link', { name: 'Activate developer mode' }).click();
    const nav = page.getByRole('navigation', { name: 'Main' });
    await nav.getByText('Technical').click();
    await screenshot('technical-menu');
    await nav.getByRole('link', { name: 'Incoming Mail Servers' }).waitFor();
    await nav.getByRole('link', { name: 'System Parameters' }).click();
    await page.getByRole('heading', { name: 'System Parameters' }).waitFor();
    const bar = await page.locator('header.topbar').boundingBox();
    assert.ok(bar && bar.height < 70, `the top bar is one row at 1280 px (height ${bar?.height})`);
  });

  it('7 + 9: always shows the Redirect URI (warning while web.base.url is unset) and names fields, not keys, keeping the typed secret in mind', async () => {
    await page.goto(`${base}/settings`);
    await page.getByLabel('Custom Email Servers').check();
    const uri = await page.locator('#redirect-uri').textContent();
    assert.equal(uri, `${base}/microsoft_outlook/confirm`);
    await page.getByText('web.base.url').first().waitFor();
    await page.getByText('is not set, so this is the address you reached this page at').waitFor();
    await page.getByLabel('Client ID').fill('not a client id');
    await page.getByLabel('Client Secret', { exact: true }).fill(SECRET);
    await page.getByRole('button', { name: 'Save' }).click();
    const error = page.locator('.flash-error').first();
    await error.waitFor();
    const text = (await error.textContent()) ?? '';
    assert.doesNotMatch(text, /outlook\.clientId/);
    assert.match(text, /pasted into the wrong field\)\. The Client Secret you typed was not saved/, 'one sentence ends before the next begins');
    assert.ok(!(await page.content()).includes(SECRET));
    // The Secret ID (a GUID) pasted where the Value belongs: refused, naming the mix-up the procedure warns of.
    await page.getByLabel('Client ID').fill(CLIENT_ID);
    await page.getByLabel('Client Secret', { exact: true }).fill('7d6f3c2a-91b4-4e0f-8c5d-2b1a0e9f8d7c');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('.flash-error').first().getByText('looks like the Secret ID (a GUID), not the secret: paste the Value column').waitFor();
    await screenshot('settings-error');
    await page.getByLabel('Client ID').fill(CLIENT_ID);
    await page.getByLabel('Client Secret', { exact: true }).fill(SECRET);
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Settings saved.').waitFor();
  });

  it('2 + 3: keeps Microsoft defaults but opens Advanced to change host and port; Connect saves the typed edits first', async () => {
    // Connect needs Microsoft Outlook installed (Apps); a saved Client ID alone does not install it.
    await t.app.services.settings.update({ outlook: { enabled: true } }, cliActor);
    await t.app.services.parameters.set('web.base.url', base, cliActor);
    await t.app.services.parameters.set('microsoft_outlook.endpoint', `${identity.url}/common/oauth2/v2.0/`, cliActor);
    await page.goto(`${base}/outgoing-servers/new`);
    await page.getByRole('checkbox', { name: /^Outlook/ }).check();
    assert.equal(await page.locator('#host').inputValue(), 'smtp.office365.com');
    assert.equal(await page.locator('#host').isVisible(), false, 'hidden until Advanced is opened');
    await page.getByLabel('Name', { exact: true }).fill('Notifications');
    await page.getByLabel('Username').fill('notifications@example.com');
    await page.getByLabel('From Filter').fill('notifications@example.com');
    await page.getByText('Advanced: host, port and security').click();
    await page.locator('#port').fill('2587');
    await screenshot('outlook-advanced');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Server Notifications created.').waitFor();
    let s = await serverByName('Notifications');
    assert.deepEqual([s.auth, s.host, s.port], ['outlook', 'smtp.office365.com', 2587]);

    // An edit typed and not saved survives Connect: the button saves, then goes to Microsoft and back.
    await page.getByLabel('Name', { exact: true }).fill('Notifications mailbox');
    await page.getByText('Advanced: host, port and security').click();
    await page.locator('#host').fill('127.0.0.1');
    await page.getByRole('button', { name: 'Connect your Outlook account' }).click();
    await page.getByText('Outlook Token Valid').waitFor();
    s = await serverByName('Notifications mailbox');
    assert.deepEqual([s.host, s.port, s.token_status], ['127.0.0.1', 2587, 'valid']);
  });

  it('1: a wrong client secret at Connect lands on the HTML error page naming the server; unknown pages are HTML 404s', async () => {
    identity.failNextToken({ status: 401, body: microsoftError('invalid_client', 7000215, 'Invalid client secret provided.') });
    await page.getByRole('button', { name: 'Connect your Outlook account' }).click();
    await page.getByRole('heading', { name: /Outlook account not connected for Notifications mailbox/ }).waitFor();
    assert.match(page.url(), /\/microsoft_outlook\/confirm/);
    await page.getByRole('link', { name: 'Back to Notifications mailbox' }).waitFor();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    await screenshot('connect-wrong-secret');
    for (const url of ['/outbox/999999', '/no-such-page']) {
      const res = await page.goto(`${base}${url}`);
      assert.equal(res?.status(), 404, url);
      assert.match(res?.headers()['content-type'] ?? '', /^text\/html/, url);
      await page.getByRole('heading', { name: 'Not found' }).waitFor();
    }
    await t.app.services.oauthAppStatus.clear();
  });

  it('5 + 9 + 10: warns of Send As when the filter leaves out the mailbox, reports the missing token before DNS, and words the result once', async () => {
    await page.goto(`${base}/outgoing-servers/new`);
    await page.getByRole('checkbox', { name: /^Outlook/ }).check();
    await page.getByLabel('Name', { exact: true }).fill('Other sender');
    await page.getByLabel('Username').fill('notifications@example.com');
    await page.getByLabel('From Filter').fill('other@elsewhere.com');
    await page.getByText('Advanced: host, port and security').click();
    await page.locator('#host').fill('no-such-host.invalid');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('#send-as-warning').getByText('Send As').waitFor();
    await page.getByRole('button', { name: 'Test Connection' }).click();
    const result = page.locator('.flash').filter({ hasText: 'Connection Test' });
    await result.waitFor();
    const text = (await result.textContent()) ?? '';
    assert.match(text, /no Outlook token/);
    assert.doesNotMatch(text, /DNS|resolve|ENOTFOUND/i);
    assert.match(text, /Send As/);
    assert.doesNotMatch(text, /\.\./);
    await screenshot('send-as-warning');
  });

  it('6 + 10: the mass-mailing server keeps its empty From Filter and the form says what a mailing\'s From will be; no personal server is offered', async () => {
    await page.goto(`${base}/outgoing-servers/new`);
    await page.getByRole('checkbox', { name: /^Outlook/ }).check();
    await page.getByLabel('Name', { exact: true }).fill('Marketing');
    await page.getByLabel('Username').fill('marketing@example.com');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Server Marketing created.').waitFor();
    const marketing = await serverByName('Marketing');
    assert.equal(marketing.from_filter, null, 'the empty From Filter stays empty');

    const jane = await t.createUser('jane', 'user');
    await t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
    const janeUser = await t.app.services.users.requireByLogin('jane');
    await t.app.services.outgoingServers.create(
      { name: 'Jane personal', auth: 'password', host: '127.0.0.1', port: 2525, security: 'none', username: 'jane@example.com', password: jane.password, fromFilter: 'jane@example.com', priority: 10, active: true, allowSelfSigned: false, ownerUserId: janeUser.id },
      { id: 1, login: 'admin', email: 'admin@example.com', name: '', role: 'admin' },
      cliActor,
    );
    await page.goto(`${base}/settings`);
    await page.getByLabel('Dedicated server for mass mailings').check();
    const options = await page.locator('#massMailingServerId option').allTextContents();
    assert.ok(options.includes('Marketing'));
    assert.ok(!options.includes('Jane personal'), 'a personal server is not offered');
    await page.locator('#massMailingServerId').selectOption({ label: 'Marketing' });
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Settings saved.').waitFor();
    await page.goto(`${base}/outgoing-servers/${marketing.id}`);
    await page.locator('#mass-mailing-from').getByText('keeps its own From').waitFor();
    await screenshot('mass-mailing-from');
    const route = await explainRoute({ from: 'news@example.com', massMailing: true, forcedServerId: null, createdByUserId: null }, { servers: t.app.services.outgoingServers, parameters: t.app.services.parameters });
    assert.deepEqual([route.serverId, route.from, route.warnings], [marketing.id, 'news@example.com', []]);
  });

  it('9 + 10: Archive asks first and can be undone; the Outbox neither offers archived servers nor shows "waiting" against its counts', async () => {
    const other = await serverByName('Other sender');
    await page.goto(`${base}/outgoing-servers/${other.id}`);
    await page.getByRole('button', { name: 'Archive' }).click();
    await page.getByText('Server Other sender archived.').waitFor();
    assert.equal(dialogs.length, 1);
    assert.match(dialogs[0]!, /Archive Other sender\?/);
    await page.goto(`${base}/outbox`);
    const choices = await page.locator('#serverId option').allTextContents();
    assert.ok(!choices.includes('Other sender'), 'archived servers are not offered as a filter');
    await page.goto(`${base}/outgoing-servers?archived=1`);
    await page.getByRole('link', { name: 'Other sender' }).click();
    await page.getByRole('button', { name: 'Restore' }).click();
    await page.getByText('Server Other sender restored.').waitFor();
    assert.equal((await serverByName('Other sender')).archived_at, null);

    const { id } = await t.app.services.outbox.enqueue({ from: 'nobody@nowhere.test', to: ['x@example.com'], subject: 'Waiting <b>mail</b>', text: 'hi' }, null, cliActor);
    await t.app.database.db.updateTable('outgoing_mails').set({ state: 'queued', waiting_reason: 'the server is paced to 30 mails a minute' }).where('id', '=', id).execute();
    await page.goto(`${base}/outbox`);
    const row = page.locator('tbody tr', { hasText: 'Waiting <b>mail</b>' });
    await row.waitFor();
    assert.equal(await row.locator('.tag').first().textContent(), 'queued', 'the row names the state the counts use');
    await row.locator('td', { hasText: 'waiting: the server is paced' }).waitFor();
  });

  it('ran every page above without a Content-Security-Policy violation', () => {
    assert.deepEqual(cspViolations, []);
  });
});
