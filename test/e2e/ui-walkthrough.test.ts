// Issue 12's acceptance: the Outlook procedure walked end to end as a new admin would, through the UI only
// (Chromium via playwright-core), against the Microsoft-shaped identity server, an XOAUTH2 SMTP sink and a
// real Dovecot: first admin from the setup link; Apps → remove the Apps filter → Outlook → Install Microsoft
// Outlook; Settings → Discuss → Custom Email Servers → Outlook Credentials; Technical → Activate Developer
// Mode (debug mode) → System Parameters; the single notifications server (Connect, Test Connection, Send a test mail); per-user
// servers; the dedicated mass-mailing server with an empty From Filter; the Route checker; the incoming
// server with Test and Confirm and a fetch; Inbox search and a reply. Then the mail page (route explanation,
// attempts), Users and Account, an axe-core pass on every page (zero serious findings), no secret in any
// page, HTML in names shown as text, and a forged cross-site post refused. Screenshots: test-artifacts/e2e-walkthrough/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { headersOf, testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const ARTIFACTS = path.resolve('test-artifacts/e2e-walkthrough');
const CLIENT_ID = '0d6f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b';
const SECRET = 'walkthrough~client-secret-value.24680';
const ADMIN_PASSWORD = 'admin-walkthrough-password';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
// axe-core's own build, injected into each page (pinned in package.json).
const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const CUSTOMER_MAIL = [
  'From: "Customer Smith" <customer@client.test>',
  'To: notifications@example.com',
  'Subject: Invoice 4712 <question>',
  'Date: Tue, 04 Mar 2025 10:00:00 +0000',
  'Message-ID: <invoice-4712@client.test>',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Could you send invoice 4712 again?',
  '',
].join('\r\n');

describe('the Outlook procedure end to end in the browser (acceptance)', () => {
  let t: TestApp;
  let base: string;
  let browser: Browser;
  let page: Page;
  let identity: IdentityServer;
  let sink: SmtpSink;
  let dovecot: Dovecot;
  let dispatch: TestDispatcher;
  let shot = 0;
  const cspViolations: string[] = [];
  const axeFindings: string[] = [];
  const pagesChecked: string[] = [];

  const screenshot = async (name: string) => {
    shot += 1;
    await page.screenshot({ path: path.join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
  };
  /** axe-core on the page as it is now; serious and critical findings are kept for the last test. */
  const audit = async (name: string) => {
    await page.evaluate(AXE_SOURCE);
    const violations = await page.evaluate(async () => {
      const axe = (globalThis as unknown as { axe: { run: (ctx: unknown, opts: unknown) => Promise<{ violations: { id: string; impact: string | null; nodes: { target: unknown }[] }[] }> } }).axe;
      // The whole document; `document` is not in this file's Node typings.
      const r = await axe.run((globalThis as unknown as { document: unknown }).document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => JSON.stringify(n.target)).slice(0, 3) }));
    });
    for (const v of violations) if (v.impact === 'serious' || v.impact === 'critical') axeFindings.push(`${name}: ${v.id} (${v.impact}) ${v.targets.join(' ')}`);
    pagesChecked.push(name);
    assert.ok(!(await page.content()).includes(SECRET), `${name}: the client secret is not in the page`);
  };
  const nav = () => page.getByRole('navigation', { name: 'Main' });
  const technical = async (link: string) => {
    await nav().getByText('Technical').click();
    await nav().getByRole('link', { name: link }).click();
  };
  const newOutlookServer = async (name: string, username: string, fromFilter: string) => {
    await nav().getByRole('link', { name: 'Outgoing Email Servers' }).click();
    // "Then, create a new email server and check the box for Outlook."
    await page.getByRole('link', { name: 'Create a new email server' }).click();
    await page.getByRole('checkbox', { name: /^Outlook/ }).check();
    await page.getByLabel('Name', { exact: true }).fill(name);
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('From Filter').fill(fromFilter);
    // The sink stands in for smtp.office365.com: Advanced keeps Microsoft's defaults unless changed.
    await page.getByText('Advanced: host, port and security').click();
    await page.locator('#host').fill('127.0.0.1');
    await page.locator('#port').fill(String(sink.port));
    await page.getByLabel('Allow self-signed certificates').check();
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
    });
    const starting = (async () => {
      t = await startTestApp('sqlite');
      const http = await t.app.http();
      await http.listen({ port: 0, host: '127.0.0.1' });
      base = `http://127.0.0.1:${(http.server.address() as AddressInfo).port}`;
      dispatch = testDispatcher(t.app);
    })();
    const peers = (async () => {
      identity = await startIdentityServer();
      [sink, dovecot] = await Promise.all([
        startSmtpSink({ auth: 'xoauth2', identityUrl: identity.url, tls: 'starttls' }),
        startDovecot({ identityUrl: identity.url, users: {} }),
      ]);
    })();
    await Promise.all([launching, starting, peers]);
  });

  after(async () => {
    await Promise.all([browser?.close(), dispatch?.close(), dovecot?.stop()]);
    await Promise.all([sink?.stop(), identity?.stop()]);
    await t?.close();
  });

  it('creates the first admin from the setup link, then enters the Outlook Credentials and the System Parameters', async () => {
    const token = await t.app.services.firstRun.issueIfNeeded();
    assert.ok(token);
    await page.goto(`${base}/login`);
    await page.getByText('printed a one-time setup link').waitFor();
    await audit('sign-in');
    // The link Juniper printed on its console.
    await page.goto(`${base}/setup?token=${token}`);
    await page.getByLabel('Login').fill('admin');
    await page.getByLabel('Email').fill('admin@example.com');
    await page.getByLabel('Name', { exact: true }).fill('Ada Admin');
    await page.getByLabel(/^Password/).fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Create admin' }).click();
    await page.getByRole('heading', { name: 'Welcome, Ada Admin' }).waitFor();
    await audit('home');
    // Keyboard: the first Tab reaches "Skip to content"; the Technical menu opens with Enter.
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => (globalThis as unknown as { document: { activeElement: { textContent: string } } }).document.activeElement.textContent), 'Skip to content');
    await nav().getByText('Technical').focus();
    await page.keyboard.press('Enter');
    await nav().getByRole('link', { name: 'Incoming Mail Servers' }).waitFor();
    await page.keyboard.press('Enter'); // and closes again

    // "First, open the Juniper database and navigate to the Apps module. Then, remove the Apps filter from the
    // search bar and type in Outlook. After that, install the module called Microsoft Outlook."
    await nav().getByRole('link', { name: 'Apps' }).click();
    await page.getByRole('heading', { name: 'Apps', exact: true }).waitFor();
    await audit('apps');
    await page.getByRole('search').getByRole('link', { name: 'Remove the Apps filter' }).click();
    await page.getByLabel('Search modules').fill('Outlook');
    await page.getByLabel('Search modules').press('Enter');
    const outlookModule = page.getByRole('article', { name: 'Microsoft Outlook' });
    await outlookModule.getByRole('button', { name: 'Install Microsoft Outlook' }).click();
    await page.getByText('Microsoft Outlook installed.').waitFor();
    await outlookModule.getByText('Installed', { exact: true }).waitFor();
    await audit('apps-installed');
    await screenshot('apps');

    // "Next, navigate to Discuss section, ensure that the checkbox for Custom Email Servers is checked. This
    // populates a new option for Outlook Credentials."
    await nav().getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('heading', { name: /^Discuss/ }).waitFor();
    await page.getByLabel('Custom Email Servers').check();
    await page.getByRole('group', { name: 'Outlook Credentials' }).waitFor();
    await page.getByLabel('Client ID').fill(CLIENT_ID);
    await page.getByLabel('Client Secret', { exact: true }).fill(SECRET);
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Settings saved.').waitFor();
    await audit('settings');
    await screenshot('settings');

    // "The System Parameters can be accessed by activating Developer Mode (debug mode) in the menu."
    await technical('Activate Developer Mode (debug mode)');
    await technical('System Parameters');
    await page.getByRole('heading', { name: 'System Parameters' }).waitFor();
    const params: [string, string][] = [
      ['mail.catchall.domain', 'example.com'],
      ['mail.default.from', 'notifications'],
      ['web.base.url', base],
      // The identity server stands in for login.microsoftonline.com.
      ['microsoft_outlook.endpoint', `${identity.url}/common/oauth2/v2.0/`],
    ];
    for (const [key, value] of params) {
      await page.locator('#new-key').fill(key);
      await page.locator('#new-value').fill(value);
      await page.getByRole('button', { name: 'Add' }).click();
      await page.getByText(`${key} saved.`).waitFor();
    }
    await audit('system-parameters');
    await screenshot('system-parameters');
  });

  it('configures the single notifications server: Connect, Outlook Token Valid, Test Connection, Send a test mail', async () => {
    await newOutlookServer('Notifications', 'notifications@example.com', 'notifications@example.com');
    await page.getByRole('button', { name: 'Connect your Outlook account' }).click();
    await page.getByText('Outlook Token Valid').waitFor();
    await page.getByRole('button', { name: 'Test Connection' }).click();
    await page.getByText('Connection Test Successful!').waitFor();
    await audit('outgoing-server');
    await screenshot('notifications-server');

    await page.getByRole('link', { name: 'Send a test mail' }).click();
    assert.equal(await page.getByLabel('From').inputValue(), 'notifications@example.com');
    await page.getByLabel('Attachments').setInputFiles({ name: 'report.txt', mimeType: 'text/plain', buffer: Buffer.from('attached report') });
    await audit('compose-test-mail');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByText(/Mail \d+ queued/).waitFor();
    assert.equal(await dispatch.drain(), 1);
    await sink.waitFor(1);
    const sent = await headersOf(sink.messages[0]!.raw);
    assert.equal(sent.from, 'notifications@example.com');
    assert.equal(sent.to, 'admin@example.com');
    assert.equal(sink.messages[0]!.from, 'notifications@example.com');
    const raw = sink.messages[0]!.raw.toString();
    assert.match(raw, /filename="?report\.txt/);
    assert.match(raw, new RegExp(Buffer.from('attached report').toString('base64')));
    await page.reload();
    await page.getByText('Sent through Notifications.').waitFor();
    await audit('mail-detail');
  });

  it('adds the per-user servers and the dedicated mass-mailing server with an empty From Filter', async () => {
    for (const who of ['john', 'jane']) {
      await newOutlookServer(`${who} mailbox`, `${who}@example.com`, `${who}@example.com`);
      await page.getByRole('button', { name: 'Connect your Outlook account' }).click();
      await page.getByText('Outlook Token Valid').waitFor();
    }
    await newOutlookServer('Marketing <News>', 'marketing@example.com', '');
    await page.getByRole('button', { name: 'Connect your Outlook account' }).click();
    await page.getByText('Outlook Token Valid').waitFor();
    await page.getByRole('heading', { name: 'Marketing <News>' }).waitFor();
    assert.equal(await page.locator('b').count(), 0, 'HTML in a name is shown as text');

    // "… it's require to be added in the settings of the Email Marketing application."
    await nav().getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('heading', { name: /^Email Marketing/ }).waitFor();
    await page.getByLabel('Dedicated server for mass mailings').check();
    await page.locator('#massMailingServerId').selectOption({ label: 'Marketing <News>' });
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Settings saved.').waitFor();

    await technical('Route checker');
    for (const [from, server, sentFrom] of [
      ['john@example.com', 'john mailbox', 'john@example.com'],
      ['Sam Sales <sam@example.com>', 'Notifications', '"Sam Sales" <notifications@example.com>'],
    ] as const) {
      await page.getByLabel('Send as').fill(from);
      await page.getByRole('button', { name: 'Check' }).click();
      const result = page.locator('#route-result');
      await result.getByRole('link', { name: server }).waitFor();
      assert.equal(await result.locator('dd').nth(1).textContent(), sentFrom, `the From sent as ${from}`);
    }
    await audit('route-checker');
    await screenshot('route-checker');
  });

  it('configures the incoming server: Connect, Test and Confirm, a fetch; then finds the mail in the Inbox and replies', async () => {
    // "Navigate to the Incoming Mail Servers in the Technical Menu and Create a new configuration."
    await technical('Incoming Mail Servers');
    await page.getByRole('link', { name: 'Create a new configuration' }).click();
    await page.getByRole('checkbox', { name: /^Outlook Oauth Authentication/ }).check();
    await page.getByLabel('Name', { exact: true }).fill('Notifications inbox');
    await page.getByLabel('Username').fill('notifications@example.com');
    await page.getByText('Advanced: host, port and security').click();
    await page.locator('#host').fill('127.0.0.1');
    await page.locator('#port').fill(String(dovecot.imapsPort));
    await page.getByLabel('Allow self-signed certificates').check();
    await page.getByRole('button', { name: 'Connect your Outlook account' }).click();
    await page.getByText('Outlook Token Valid').waitFor();
    await page.getByRole('button', { name: 'Test and Confirm' }).click();
    await page.getByText(/^Server confirmed/).waitFor();
    await audit('incoming-server');
    await dovecot.deliver('notifications@example.com', CUSTOMER_MAIL);
    await page.getByRole('button', { name: 'Fetch Now' }).click();
    await page.getByText(/Fetched 1 message: 1 stored/).waitFor();
    await screenshot('fetched');

    await nav().getByRole('link', { name: 'Inbox' }).click();
    await page.getByLabel('Search').fill('nothing like this');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('No messages match these filters').waitFor();
    await page.getByLabel('Search').fill('invoice 4712');
    await page.getByRole('button', { name: 'Filter' }).click();
    await audit('inbox');
    await page.getByRole('link', { name: 'Invoice 4712 <question>' }).click();
    await audit('message');
    await page.getByRole('link', { name: 'Reply' }).click();
    assert.equal(await page.getByLabel('To').inputValue(), '"Customer Smith" <customer@client.test>');
    await page.getByLabel('Message').fill('Here it is again.');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByText(/Mail \d+ queued/).waitFor();
    assert.equal(await dispatch.drain(), 1);
    await sink.waitFor(2);
    const reply = await headersOf(sink.messages[1]!.raw);
    // The signed-in admin's address is no server's filter: the notifications server sends, as its mailbox.
    assert.equal(reply.from, '"Ada Admin" <notifications@example.com>');
    assert.equal(reply.replyTo, '"Ada Admin" <admin@example.com>');
    assert.equal(reply.subject, 'Re: Invoice 4712 <question>');
    assert.match(sink.messages[1]!.raw.toString(), /In-Reply-To: <invoice-4712@client\.test>/);
    await page.reload();
    await page.getByText('Notifications (id 1): chosen by rule 3').waitFor();
    await screenshot('reply-sent');
  });

  it('manages users and the own account: create, reset, disable; an API key shown once and revoked', async () => {
    await nav().getByRole('link', { name: 'Users' }).click();
    // A new user is a lasting way in: the page asks the admin's own password first, then not for 10 minutes.
    await page.getByLabel('Your password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByText('Password confirmed for 10 minutes.').waitFor();
    await page.locator('#new-login').fill('john');
    await page.locator('#new-email').fill('john@example.com');
    await page.locator('#new-name').fill('John <Doe>');
    await page.locator('#new-password').fill('john-password-123');
    await page.getByRole('button', { name: 'Create user' }).click();
    await page.getByText('User john created.').waitFor();
    await page.getByLabel('New password for john').fill('john-password-456');
    await page.getByRole('row', { name: /john/ }).getByRole('button', { name: 'Reset password' }).click();
    await page.getByText('Password of john reset').waitFor();
    await page.getByRole('row', { name: /john/ }).getByRole('button', { name: 'Disable' }).click();
    await page.getByText('User john changed.').waitFor();
    assert.equal((await t.app.services.users.requireByLogin('john')).active, 0);
    await audit('users');

    await page.getByRole('link', { name: 'Ada Admin (admin)' }).click();
    // A key outlives sign-out, so the form asks for the password: a wrong one makes none and says so beside it.
    const keyPassword = page.locator('form[action="/account/api-keys"]').getByLabel('Current password');
    await page.getByLabel('New key name').fill('ERP');
    await keyPassword.fill('not-the-admin-password');
    await page.getByRole('button', { name: 'Create API key' }).click();
    await page.getByText('That is not your current password: no key was created.').waitFor();
    assert.equal(await page.getByLabel('New key name').inputValue(), 'ERP', 'the name typed is kept');
    assert.equal(await keyPassword.inputValue(), '', 'the password is not filled in again');
    await audit('account-key-refused');
    await keyPassword.fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Create API key' }).click();
    const key = (await page.locator('#new-key').textContent()) ?? '';
    assert.ok(key.length > 20);
    await audit('account');
    await page.goto(`${base}/account`);
    assert.ok(!(await page.content()).includes(key), 'the key is shown once');
    await page.getByRole('button', { name: 'Revoke ERP' }).click();
    await page.getByText('API key ERP revoked.').waitFor();
  });

  it('refuses a forged cross-site post on the forms', async () => {
    const before = (await t.app.services.queue.list({})).length;
    const forged = await page.request.post(`${base}/compose`, {
      form: { from: 'admin@example.com', to: 'victim@example.org', subject: 'forged', text: 'x' },
      headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
      maxRedirects: 0,
    });
    assert.equal(forged.status(), 403);
    assert.equal((await t.app.services.queue.list({})).length, before);
  });

  it('passed axe-core with zero serious findings and raised no Content-Security-Policy violation', () => {
    assert.ok(pagesChecked.length >= 12, pagesChecked.join(', '));
    assert.deepEqual(axeFindings, []);
    assert.deepEqual(cspViolations, []);
  });
});
