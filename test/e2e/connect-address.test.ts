// "Connect your Outlook account" when the browser is at another address than web.base.url (the newcomer's
// case: signed in at http://127.0.0.1:PORT as the console used to print, web.base.url http://localhost:PORT as
// doctor advises). Microsoft sends the browser back to web.base.url, where the 127.0.0.1 session cookie does not
// go: before the fix that ended on "started in another browser session". Now the server form says so beside
// Connect with a link to the same page at web.base.url; Connect there saves the edits and stops before
// Microsoft; at the link, after signing in, Connect ends connected. Chromium (playwright-core) against the real
// app and the Microsoft-shaped identity server. Screenshots: test-artifacts/e2e-connect-address/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { cliActor } from '../../src/audit/audit-log.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const ARTIFACTS = path.resolve('test-artifacts/e2e-connect-address');
const CLIENT_ID = '5b9e2c41-7d3a-4f6e-9a10-2c4d6e8f0a1b';
const SECRET = 'address~client-secret-value.0123456789';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('Connect your Outlook account from another address than web.base.url, in Chromium', () => {
  let t: TestApp;
  let browser: Browser;
  let page: Page;
  let identity: IdentityServer;
  let password: string;
  let reached: string;
  let publicBase: string;

  // A getter: assert.equal(x, undefined) would narrow the property itself to undefined for the rest of the test.
  const authorizeQuery = () => identity.lastAuthorizeQuery;
  const signIn = async () => {
    await page.locator('#login').fill('admin');
    await page.locator('#password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  };

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const launching = chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS }).then(async (b) => {
      browser = b;
      page = await (await b.newContext({ viewport: { width: 1280, height: 860 } })).newPage();
      page.setDefaultTimeout(5000);
    });
    const starting = (async () => {
      t = await startTestApp('sqlite');
      identity = await startIdentityServer();
      const http = await t.app.http();
      await http.listen({ port: 0, host: '127.0.0.1' });
      const port = (http.server.address() as AddressInfo).port;
      reached = `http://127.0.0.1:${port}`;
      publicBase = `http://localhost:${port}`;
      const { parameters, settings } = t.app.services;
      await parameters.set('web.base.url', publicBase, cliActor);
      await parameters.set('microsoft_outlook.endpoint', `${identity.url}/common/oauth2/v2.0/`, cliActor);
      await settings.update({ customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: SECRET } }, cliActor);
      password = (await t.createUser('admin', 'admin')).password;
    })();
    await Promise.all([launching, starting]);
  });

  after(async () => {
    await browser?.close();
    await identity?.stop();
    await t?.close();
  });

  it('warns beside Connect with a link to web.base.url, saves the edits without leaving for Microsoft, and connects at the link', async () => {
    await page.goto(`${reached}/login`);
    await signIn();
    await page.getByRole('heading', { name: 'Welcome, admin' }).waitFor();

    await page.goto(`${reached}/outgoing-servers/new`);
    await page.getByRole('checkbox', { name: /^Outlook/ }).check();
    const warning = page.locator('#connect-address');
    await warning.getByText('to connect: Microsoft sends you back to').waitFor();
    assert.equal(await warning.getByRole('link').getAttribute('href'), `${publicBase}/outgoing-servers/new`);
    await page.getByLabel('Name', { exact: true }).fill('Notifications');
    await page.getByLabel('Username').fill('notifications@example.com');
    await page.getByLabel('From Filter').fill('notifications@example.com');
    await page.getByRole('button', { name: 'Connect your Outlook account' }).click();

    // Still at 127.0.0.1: the server is created, nothing went to Microsoft, and the link names the stored server.
    await page.locator('.flash-error').getByText(`Not sent to Microsoft: it would send you back to ${publicBase} (web.base.url), where your sign-in at 127.0.0.1 does not count`).waitFor();
    const server = (await t.app.services.outgoingServers.list()).find((s) => s.name === 'Notifications');
    assert.ok(server, 'the new server was saved');
    assert.equal(new URL(page.url()).origin, reached);
    assert.equal(authorizeQuery(), undefined, 'the browser was not sent to Microsoft');
    const serverLink = `${publicBase}/outgoing-servers/${server.id}`;
    assert.equal(await page.locator('#connect-address').getByRole('link').getAttribute('href'), serverLink);
    await page.screenshot({ path: path.join(ARTIFACTS, '01-warning-beside-connect.png'), fullPage: true });

    // An edit typed and not saved survives a Connect clicked here as well.
    await page.getByLabel('Name', { exact: true }).fill('Notifications mailbox');
    await page.getByRole('button', { name: 'Connect your Outlook account' }).click();
    await page.locator('.flash-error').getByText(`open ${serverLink}`).waitFor();
    assert.equal((await t.app.services.outgoingServers.get(server.id)).name, 'Notifications mailbox');
    assert.equal(authorizeQuery(), undefined);

    // At web.base.url: sign in (the cookie of 127.0.0.1 does not go there), come back to the form, connect.
    await page.locator('#connect-address').getByRole('link').click();
    await page.locator('#login').waitFor();
    await signIn();
    await page.getByRole('heading', { name: 'Notifications mailbox' }).waitFor();
    assert.equal(page.url(), serverLink);
    assert.equal(await page.locator('#connect-address').count(), 0, 'no warning at web.base.url');
    await page.getByRole('button', { name: 'Connect your Outlook account' }).click();
    await page.getByText('Outlook Token Valid').waitFor();
    assert.equal(authorizeQuery()?.login_hint, 'notifications@example.com');
    assert.equal(await page.getByText('another browser session').count(), 0);
    assert.equal((await t.app.services.outgoingServers.get(server.id)).token_status, 'valid');
    await page.screenshot({ path: path.join(ARTIFACTS, '02-connected-at-web-base-url.png'), fullPage: true });
  });
});
