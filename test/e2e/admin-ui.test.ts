// The Outlook procedure's Juniper steps in a real browser (Debian's Chromium through playwright-core): sign
// in, tick Custom Email Servers and watch Outlook Credentials appear, save the Client ID and Secret, create
// an outgoing server and Test Connection against a real SMTP server; then the Outlook path itself against
// the Microsoft-shaped identity server: Connect your Outlook account → green "Outlook Token Valid" → Test
// Connection over XOAUTH2; and the credentials check at Save (a refused secret warns, a right one succeeds).
// Screenshots of each step go to test-artifacts/e2e/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { cliActor } from '../../src/audit/audit-log.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { startIdentityServer, TENANT_ID, type IdentityServer } from '../peers/identity-server.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const ARTIFACTS = path.resolve('test-artifacts/e2e');
const CLIENT_ID = '3f2a7c10-5d4e-4b8a-9c61-0e7f2d9b4a55';
const SECRET = 'e2e~client-secret-value.9876543210';
const RELAY_PASSWORD = 'relay-password-e2e';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('admin UI in Chromium', () => {
  let t: TestApp;
  let base: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const cspViolations: string[] = [];
  let relay: SmtpSink;
  let identity: IdentityServer;
  let outlookSink: SmtpSink;
  let password: string;
  let shot = 0;

  const screenshot = async (name: string) => {
    shot += 1;
    await page.screenshot({ path: path.join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
  };

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    // Chromium takes the longest to start: everything else starts meanwhile.
    const launching = chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS }).then(async (b) => {
      browser = b;
      context = await b.newContext({ viewport: { width: 1280, height: 860 } });
      page = await context.newPage();
      page.setDefaultTimeout(5000);
      // A Content-Security-Policy violation breaks a page silently: Chromium reports it on the console only.
      page.on('console', (m) => {
        if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
      });
    });
    const starting = (async () => {
      t = await startTestApp('sqlite');
      password = (await t.createUser('admin', 'admin')).password;
      const http = await t.app.http();
      await http.listen({ port: 0, host: '127.0.0.1' });
      base = `http://127.0.0.1:${(http.server.address() as AddressInfo).port}`;
    })();
    const peers = (async () => {
      [relay, identity] = await Promise.all([
        startSmtpSink({ auth: 'password', passwords: { 'relay@example.com': RELAY_PASSWORD }, tls: 'starttls' }),
        startIdentityServer(),
      ]);
      outlookSink = await startSmtpSink({ auth: 'xoauth2', identityUrl: identity.url, tls: 'starttls' });
    })();
    await Promise.all([launching, starting, peers]);
  });

  after(async () => {
    await browser?.close();
    await Promise.all([relay?.stop(), outlookSink?.stop(), identity?.stop()]);
    await t?.close();
  });

  it('saves Outlook Credentials after Custom Email Servers reveals them, and tests a password server', async () => {
    await page.goto(`${base}/`);
    await page.locator('#login').fill('admin');
    await page.locator('#password').fill(password);
    await screenshot('sign-in');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Welcome, admin' }).waitFor();

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('heading', { name: 'General Settings' }).waitFor();
    const credentials = page.locator('#outlook-credentials');
    assert.equal(await credentials.isVisible(), false, 'Outlook Credentials are hidden until Custom Email Servers is ticked');
    await screenshot('settings-unticked');
    await page.getByLabel('Custom Email Servers').check();
    await credentials.getByText('Outlook Credentials').waitFor();
    await page.getByLabel('Client ID').fill(CLIENT_ID);
    await page.getByLabel('Client Secret', { exact: true }).fill(SECRET);
    await screenshot('settings-outlook-credentials');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Settings saved.').waitFor();
    await page.getByText('a secret is stored').waitFor();
    assert.equal(await page.locator('#clientSecret').inputValue(), '', 'the secret field stays empty');
    assert.ok(!(await page.content()).includes(SECRET), 'the secret is not in the page');
    await screenshot('settings-saved');

    await credentials.getByRole('link', { name: 'Outgoing Email Servers' }).click();
    await page.getByRole('link', { name: 'Create a new email server' }).click();
    await page.getByLabel('Name', { exact: true }).fill('Company relay');
    // Ticking Outlook hides what OAuth replaces; unticking brings it back.
    await page.getByRole('checkbox', { name: /^Outlook/ }).check();
    assert.equal(await page.locator('#host').isVisible(), false);
    await page.getByRole('checkbox', { name: /^Outlook/ }).uncheck();
    await page.locator('#host').fill('127.0.0.1');
    await page.locator('#port').fill(String(relay.port));
    await page.locator('#security').selectOption('starttls');
    await page.getByLabel('Username').fill('relay@example.com');
    await page.locator('#password').fill(RELAY_PASSWORD);
    await page.getByLabel('From Filter').fill('example.com');
    await page.getByLabel('Allow self-signed certificates').check();
    await screenshot('server-new');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Server Company relay created.').waitFor();
    await page.getByRole('button', { name: 'Test Connection' }).click();
    await page.getByText('Connection Test Successful!').waitFor();
    await screenshot('server-test-successful');
    assert.equal(relay.messages.length, 0, 'Test Connection sends nothing');
    // The answer came after a redirect to the server's page: a reload shows the page, it does not test again.
    assert.match(new URL(page.url()).pathname, /^\/outgoing-servers\/\d+$/);
    const logins = relay.authAttempts.length;
    await page.reload();
    await page.getByText('Last connection test').waitFor();
    assert.equal(relay.authAttempts.length, logins, 'the reload did not test again');
    assert.equal(await page.getByText('Connection Test Successful!').count(), 0, 'the answer is shown once');
    assert.equal((await t.app.services.outgoingServers.list()).filter((s) => s.name === 'Company relay').length, 1, 'one server');
  });

  it('connects an Outlook account: green Outlook Token Valid, then Test Connection over XOAUTH2', async () => {
    // Juniper's public address is where the browser reaches it; the authority is the test identity server.
    await t.app.services.parameters.set('web.base.url', base, cliActor);
    await t.app.services.parameters.set('microsoft_outlook.endpoint', `${identity.url}/common/oauth2/v2.0/`, cliActor);

    await page.goto(`${base}/outgoing-servers/new`);
    await page.getByRole('checkbox', { name: /^Outlook/ }).check();
    await page.getByLabel('Name', { exact: true }).fill('Microsoft 365 notifications');
    await page.getByLabel('Username').fill('notifications@example.com');
    await page.getByLabel('From Filter').fill('notifications@example.com');
    await screenshot('outlook-server-new');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Outlook Token Missing').waitFor();
    await screenshot('outlook-server-saved');
    // The Outlook preset points at smtp.office365.com; this server is moved to the loopback sink for the test,
    // before it is connected (a move forgets the connection: a token goes only to the endpoint it was made for).
    const server = (await t.app.services.outgoingServers.list()).find((s) => s.auth === 'outlook');
    assert.ok(server);
    await t.app.services.outgoingServers.update(server.id, { host: '127.0.0.1', port: outlookSink.port, allowSelfSigned: true }, { id: 1, login: 'admin', email: 'admin@example.com', name: '', role: 'admin' }, cliActor);
    // Reloaded, so Connect (which saves the form first) posts the moved endpoint, not the preset.
    await page.reload();

    // The test identity server signs in at once and sends the browser back to /microsoft_outlook/confirm.
    await page.getByRole('button', { name: 'Connect your Outlook account' }).click();
    await page.getByText('Outlook Token Valid').waitFor();
    await page.getByText('Outlook account connected.').waitFor();
    await screenshot('outlook-token-valid');
    assert.equal(identity.lastAuthorizeQuery?.login_hint, 'notifications@example.com');

    await page.getByRole('button', { name: 'Test Connection' }).click();
    await page.getByText('Connection Test Successful!').waitFor();
    await screenshot('outlook-test-successful');
    assert.deepEqual(outlookSink.authAttempts.map((a) => [a.method, a.user, a.ok]), [['XOAUTH2', 'notifications@example.com', true]]);
  });

  it('checks changed credentials with Microsoft at Save: a warning for a refused secret, a success once it is right', async () => {
    // From here on the identity server authenticates the app as Entra ID does; a tenant authority allows the check.
    identity.registerApp({ clientId: CLIENT_ID, secret: SECRET, tenants: [TENANT_ID] });
    await t.app.services.parameters.set('microsoft_outlook.endpoint', `${identity.url}/${TENANT_ID}/oauth2/v2.0/`, cliActor);
    const wrong = `${SECRET}-old`;
    await page.goto(`${base}/settings`);
    await page.getByLabel('Client Secret', { exact: true }).fill(wrong);
    await page.getByRole('button', { name: 'Save' }).click();
    const warning = page.locator('.flash-warning[role="status"]', { hasText: 'Settings saved, but the Outlook credentials check failed' });
    await warning.getByText(/Microsoft refused the client secret\. In Settings, paste the client secret's Value, not its Secret ID.*AADSTS7000215/).waitFor();
    await screenshot('settings-credentials-check-failed');
    await page.getByLabel('Client Secret', { exact: true }).fill(SECRET);
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('.flash-success').getByText(/Settings saved\. Microsoft accepted the Outlook credentials/).waitFor();
    const html = await page.content();
    assert.ok(!html.includes(SECRET) && !html.includes(wrong), 'no secret in the page');
    assert.ok(!t.logs().includes(SECRET), 'nor in the logs');
    assert.deepEqual(identity.tokenRequests.filter((r) => r.grantType === 'client_credentials').map((r) => r.status), [401, 200]);
    await t.app.services.parameters.set('microsoft_outlook.endpoint', `${identity.url}/common/oauth2/v2.0/`, cliActor);
  });

  it('ran every page above without a Content-Security-Policy violation', () => {
    assert.deepEqual(cspViolations, []);
  });
});
