// An app-level Outlook problem (AADSTS7000215, the client secret refused) as an admin meets it, on both
// databases, against the Microsoft-shaped identity server and an SMTP server that checks the XOAUTH2 token:
// the waiting mail's reason sends the admin to Settings; the API and `juniper servers list/show --json` carry
// the same appProblem; Settings, Home and the server list say so; doctor FAILs the credentials line; and saving
// the right secret sends the waiting mail at once, not at its next recheck 5 minutes later.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliEnv, projectRoot, type CliResult } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { connectOutlook, signIn, type BrowserSession } from '../helpers/outlook.js';
import { testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { microsoftError } from '../peers/identity-protocol.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const CLIENT_ID = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';
const CLIENT_SECRET = 'client-secret-value~0123456789abcdefghij';
const MAILBOX = 'alice@example.test';
const REFUSED = { status: 401, body: microsoftError('invalid_client', 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '3f2504e0-4f89-41d3-9a0c-0305e82c3301'.") };

/** The CLI in its own process, leaving this event loop free for the identity server and the sink. */
function juniper(env: NodeJS.ProcessEnv, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/juniper.js', ...args], { cwd: projectRoot, env, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

for (const dialect of dialects) {
  describe(`Outlook app problem (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let idp: IdentityServer;
    let sink: SmtpSink;
    let d: TestDispatcher;
    let admin: BrowserSession;
    let serverId: number;
    let env: NodeJS.ProcessEnv;
    let mailId: number;

    const api = async (method: 'GET' | 'PUT', url: string, payload?: object) => {
      const res = await http.inject({ method, url, payload, headers: { cookie: admin.cookie, 'x-csrf-token': admin.csrfToken } });
      return { status: res.statusCode, body: res.json<unknown>(), text: res.body };
    };
    const page = async (url: string) => (await http.inject({ url, headers: { cookie: admin.cookie, accept: 'text/html' } })).body;
    const mail = async () => (await api('GET', `/api/v1/mails/${mailId}`)).body as { state: string; waitingReason: string | null; failureType: string | null };

    before(async () => {
      idp = await startIdentityServer();
      sink = await startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url, tls: 'starttls' });
      t = await startTestApp(dialect);
      http = await t.app.http();
      const user = await t.createUser('admin', 'admin');
      admin = await signIn(http, 'admin', user.password);
      await t.app.services.parameters.set('web.base.url', 'https://juniper.example.com', cliActor);
      await t.app.services.parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
      await t.app.services.parameters.set('mail.default.from', 'notifications', cliActor);
      await t.app.services.parameters.set('mail.catchall.domain', 'example.test', cliActor);
      assert.equal((await api('PUT', '/api/v1/settings', { customEmailServers: true, outlook: { enabled: true, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET } })).status, 200);
      const created = await http.inject({ method: 'POST', url: '/api/v1/outgoing-servers', headers: { cookie: admin.cookie, 'x-csrf-token': admin.csrfToken }, payload: { name: 'Outlook', auth: 'outlook', username: MAILBOX, host: '127.0.0.1', port: sink.port, allowSelfSigned: true, ratePerMinute: 0 } });
      assert.equal(created.statusCode, 201, created.body);
      serverId = created.json<{ id: number }>().id;
      assert.equal((await connectOutlook(http, admin, 'outgoing', serverId)).statusCode, 303);
      d = testDispatcher(t.app);
      const db = t.config.database;
      env = cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`);

      // Microsoft starts refusing the client secret; the next token request meets it.
      idp.setTokenOutage(REFUSED);
      await t.app.database.db.updateTable('oauth_access_tokens').set({ expires_at: Date.now() + 60_000 }).execute();
      mailId = (await t.app.services.outbox.enqueue({ from: MAILBOX, to: ['bob@client.test'], subject: 'waits for the app', text: 'x' }, null, cliActor)).id;
      await d.drain();
    });
    after(async () => {
      idp.setTokenOutage(null);
      await d.close();
      await t.close();
      await sink.stop();
      await idp.stop();
    });

    it('the waiting mail says to fix the Azure app credentials in Settings, naming AADSTS7000215 and what it means, not to reconnect', async () => {
      const m = await mail();
      assert.equal(m.state, 'queued');
      assert.equal(m.failureType, 'oauth_app');
      assert.match(String(m.waitingReason), /AADSTS7000215/);
      assert.match(String(m.waitingReason), /Microsoft refused the client secret/);
      assert.match(String(m.waitingReason), /Settings → Outlook Credentials/);
      assert.doesNotMatch(String(m.waitingReason), /reconnected on the server form/);
    });

    it('`juniper servers list --json` and `servers show --json` carry the same appProblem as the API; the text list says it', async () => {
      const fromApi = (await api('GET', '/api/v1/outgoing-servers')).body as { id: number; token: { appProblem: { code: string } | null } }[];
      assert.equal(fromApi.find((s) => s.id === serverId)?.token.appProblem?.code, 'AADSTS7000215');
      const list = await juniper(env, ['servers', 'list', '--json']);
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual(JSON.parse(list.stdout), fromApi, 'the CLI list is the API list');
      const show = await juniper(env, ['servers', 'show', String(serverId), '--json']);
      assert.equal(show.code, 0, show.stderr);
      assert.deepEqual(JSON.parse(show.stdout), (await api('GET', `/api/v1/outgoing-servers/${serverId}`)).body);
      const text = await juniper(env, ['servers', 'list']);
      assert.match(text.stdout, /token valid \(alice@example\.test\) {2}app problem AADSTS7000215/);
      assert.match(text.stdout, /^Note: The Outlook app's credentials were refused by Microsoft \(AADSTS7000215\)/m);
    });

    it('Settings shows the problem beside Outlook Credentials: what failed, which servers, what to do; Home and the server list do not say done/valid', async () => {
      const settings = await page('/settings');
      const notice = /<div class="flash flash-error" role="alert" id="outlook-app-problem">([\s\S]*?)<\/div>\s*<fieldset id="outlook-credentials"/.exec(settings);
      assert.ok(notice, 'a notice right before the Outlook Credentials');
      assert.match(notice[1]!, /AADSTS7000215/);
      assert.match(notice[1]!, /Microsoft refused the client secret/);
      assert.match(notice[1]!, new RegExp(`<a href="/outgoing-servers/${serverId}">Outlook</a> \\(outgoing\\)`));
      assert.match(notice[1]!, /paste the client secret&#39;s Value|paste the client secret's Value/);
      const home = await page('/');
      assert.match(home, /tag-red">needs attention<\/span> In <a href="\/settings">Settings<\/a>/);
      assert.match(home, /tag-red">needs attention<\/span> Click Connect your Outlook account, then Test Connection/);
      assert.doesNotMatch(home, /tag-green">done<\/span> In <a href="\/settings">Settings/);
      const list = await page('/outgoing-servers');
      assert.match(list, /class="flash flash-error" role="alert">The Outlook app&#39;s credentials were refused by Microsoft \(AADSTS7000215\)|class="flash flash-error" role="alert">The Outlook app's credentials were refused by Microsoft \(AADSTS7000215\)/);
    });

    it('doctor FAILs the outlook credentials line on the known app problem', async () => {
      const r = await juniper(env, ['doctor']);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /^FAIL {2}outlook credentials: Microsoft refused the Outlook app's credentials \(AADSTS7000215\)/m);
      assert.doesNotMatch(r.stdout, /^ok {4}outlook credentials/m);
    });

    it('saving the right secret sends the waiting mail at once (seconds, not the 5-minute recheck) and clears the problem', async () => {
      const before = sink.messages.length;
      d.dispatcher.start();
      idp.setTokenOutage(null); // Microsoft accepts the secret about to be saved
      const saved = await api('PUT', '/api/v1/settings', { outlook: { clientSecret: `${CLIENT_SECRET}-right` } });
      assert.equal(saved.status, 200, saved.text);
      const deadline = Date.now() + 5_000;
      while ((sink.messages.length === before || (await mail()).state !== 'sent') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(sink.messages.length, before + 1, `the mail went within 5 s: ${JSON.stringify(await mail())}`);
      assert.equal((await mail()).state, 'sent', 'and is recorded as sent');
      const s = (await api('GET', `/api/v1/outgoing-servers/${serverId}`)).body as { token: { status: string; appProblem: unknown } };
      assert.equal(s.token.appProblem, null);
      assert.doesNotMatch(await page('/settings'), /id="outlook-app-problem"/);
    });

    it('an expired client secret date is said on Home, the server list and `servers list`, not only in Settings', async () => {
      assert.equal((await api('PUT', '/api/v1/settings', { outlook: { clientSecretExpiresAt: '2020-01-01' } })).status, 200);
      const home = await page('/');
      assert.match(home, /The Outlook client secret expired \d+ day\(s\) ago/);
      assert.match(home, /tag-red">needs attention<\/span> In <a href="\/settings">Settings<\/a>/);
      assert.match(await page('/outgoing-servers'), /The Outlook client secret expired \d+ day\(s\) ago/);
      const text = await juniper(env, ['servers', 'list']);
      assert.match(text.stdout, /^Note: The Outlook client secret expired \d+ day\(s\) ago/m);
    });
  });
}
