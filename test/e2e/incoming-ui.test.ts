// Receiving mail in a real browser (Debian's Chromium through playwright-core) against a real Dovecot: the
// Incoming Mail Servers form (the Outlook Oauth Authentication checkbox hides what OAuth replaces), a
// password server, Test and Confirm, Fetch Now of a message delivered over LMTP, and the Inbox showing it
// with its HTML in a sandboxed frame where its script does not run. Screenshots go to
// test-artifacts/e2e-incoming/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { SESSION_COOKIE } from '../../src/http/access.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const ARTIFACTS = path.resolve('test-artifacts/e2e-incoming');
const MAILBOX = 'orders@example.test';
const MAILBOX_PASSWORD = 'orders-e2e-password';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// The HTML part tries what a hostile sender would: run a script (that would mark the page), load a remote image.
const MESSAGE = [
  'From: "Customer Smith" <customer@client.test>',
  `To: ${MAILBOX}`,
  'Subject: Order 4711 <urgent>',
  'Date: Tue, 04 Mar 2025 10:00:00 +0000',
  'Message-ID: <order-4711@client.test>',
  'MIME-Version: 1.0',
  'Content-Type: multipart/alternative; boundary="alt"',
  '',
  '--alt',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hello, please ship order 4711. <script>alert(1)</script>',
  '--alt',
  'Content-Type: text/html; charset=utf-8',
  '',
  '<p id="greeting">Hello, please ship <b>order 4711</b>.</p><script>document.body.setAttribute("data-pwned", "1"); alert(1);</script><img src="https://tracker.example/p.gif">',
  '--alt--',
  '',
].join('\r\n');

describe('incoming mail in Chromium', () => {
  let t: TestApp;
  let base: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const cspViolations: string[] = [];
  let idp: IdentityServer;
  let dovecot: Dovecot;
  let userId: number;
  let shot = 0;
  const dialogs: string[] = [];

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
      page.on('dialog', (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
    });
    const starting = (async () => {
      t = await startTestApp('sqlite');
      userId = (await t.createUser('admin', 'admin')).id;
      const http = await t.app.http();
      await http.listen({ port: 0, host: '127.0.0.1' });
      base = `http://127.0.0.1:${(http.server.address() as AddressInfo).port}`;
    })();
    const peers = (async () => {
      idp = await startIdentityServer();
      dovecot = await startDovecot({ identityUrl: idp.url, users: { [MAILBOX]: MAILBOX_PASSWORD } });
    })();
    await Promise.all([launching, starting, peers]);
  });

  after(async () => {
    // Dovecot's stop takes about a second (its master waits for the log process): overlap it with the rest.
    await Promise.all([browser?.close(), t?.close(), dovecot?.stop()]);
    await idp?.stop();
  });

  it('creates a password server, Test and Confirm, Fetch Now, and reads the message in the Inbox', async () => {
    // Signed in through a session made directly (admin-ui.test.ts drives the sign-in form): saves a page load.
    const session = await t.app.services.sessions.create(userId);
    await context.addCookies([{ name: SESSION_COOKIE, value: session.token, url: base, httpOnly: true, sameSite: 'Lax' }]);
    await page.goto(`${base}/`);
    await page.getByRole('heading', { name: 'Welcome, admin' }).waitFor();

    // The procedure's "Incoming Mail Servers in the Technical Menu".
    await page.getByRole('navigation', { name: 'Main' }).getByText('Technical').click();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Incoming Mail Servers' }).click();
    await page.getByRole('heading', { name: 'Incoming Mail Servers' }).waitFor();
    await page.getByRole('link', { name: 'Create a new configuration' }).click();
    await page.getByLabel('Name', { exact: true }).fill('Orders');
    // Ticking Outlook Oauth Authentication hides host and password (OAuth and the preset replace them).
    const outlook = page.getByRole('checkbox', { name: /^Outlook Oauth Authentication/ });
    await outlook.check();
    assert.equal(await page.locator('#host').isVisible(), false);
    assert.equal(await page.locator('#password').isVisible(), false);
    await screenshot('new-server-outlook-ticked');
    await outlook.uncheck();
    await page.locator('#host').fill('127.0.0.1');
    await page.locator('#port').fill(String(dovecot.imapsPort));
    await page.locator('#security').selectOption('ssl');
    await page.getByLabel('Username').fill(MAILBOX);
    await page.locator('#password').fill(MAILBOX_PASSWORD);
    await page.getByLabel('Allow self-signed certificates').check();
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Server Orders created.').waitFor();

    await page.getByRole('button', { name: 'Test and Confirm' }).click();
    await page.getByText(/^Server confirmed: Connected to 127\.0\.0\.1/).waitFor();

    await dovecot.deliver(MAILBOX, MESSAGE);
    await page.getByRole('button', { name: 'Fetch Now' }).click();
    await page.getByText('Fetched 1 message: 1 stored, 0 duplicates, 0 quarantined.').waitFor();
    await screenshot('fetched');

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Inbox' }).click();
    await page.getByRole('heading', { name: 'Inbox' }).waitFor();
    await screenshot('inbox');
    await page.getByRole('link', { name: 'Order 4711 <urgent>' }).click();
    await page.getByRole('heading', { name: 'Order 4711 <urgent>' }).waitFor();
    await page.getByText('Hello, please ship order 4711. <script>alert(1)</script>').waitFor();

    // The HTML shows in its frame (the session cookie reaches it), but its script never runs.
    const frame = page.frameLocator('iframe.mail-html');
    await frame.locator('#greeting').waitFor();
    assert.equal(await frame.locator('body').getAttribute('data-pwned'), null, 'the message script did not run');
    await screenshot('message');
    assert.deepEqual(dialogs, [], 'no alert from the message');
    assert.equal(await page.locator('script:not([src])').count(), 0, 'no inline script in the page');
  });

  it("ran every page above without a Content-Security-Policy violation of Juniper's own; the message's tracker image was blocked", () => {
    // The message iframe's own policy (img-src data:) blocking the hostile message's remote image is the point.
    const tracker = cspViolations.filter((v) => v.includes('https://tracker.example/'));
    assert.ok(tracker.length > 0, 'the tracker image in the message was blocked');
    assert.deepEqual(cspViolations.filter((v) => !tracker.includes(v)), []);
  });
});
