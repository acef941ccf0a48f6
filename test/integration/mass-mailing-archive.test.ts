// The dedicated mass-mailing server and archiving, on both databases, with the real dispatcher and a real SMTP
// server (smtp-server) on loopback: archiving it is refused alike by the page, the API and the CLI (its Archive
// dialog says why); a mass mailing whose dedicated server is archived or inactive anyway waits, naming it, in the
// Route checker's words, and goes once the server is back; Settings shows the archived server and still saves the
// client secret; `juniper doctor` says so; Restore brings back the Active setting the server had.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { defaultDispatcherOptions } from '../../src/outgoing/dispatcher.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { cliEnv, projectRoot, runJuniper, type CliResult } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { testDispatcher, type TestDispatcher } from '../helpers/outgoing.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const passwords = { 'notifications@example.com': 'notif-pw', 'bulk@example.com': 'bulk-pw', 'spare@example.com': 'spare-pw' };
const CLIENT_ID = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';

/** The page's HTML attribute text as the browser reads it. */
const unescape = (s: string) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

/** Like runJuniper, but leaves this process's event loop free: the identity server the doctor asks runs here. */
function runJuniperAsync(env: NodeJS.ProcessEnv, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/juniper.js', ...args], { cwd: projectRoot, env, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

for (const dialect of dialects) {
  describe(`archiving the dedicated mass-mailing server (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    let sink: SmtpSink;
    let idp: IdentityServer;
    let d: TestDispatcher;
    let env: NodeJS.ProcessEnv;
    let browser: FormBrowser;
    let bulk: number;
    let notifications: number;

    const api = async (method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: object) => {
      const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
      return { status: res.statusCode, body: res.json<Record<string, unknown>>(), text: res.body };
    };
    const server = async (username: keyof typeof passwords, fromFilter: string | null, extra: object = {}) => {
      const r = await api('POST', '/api/v1/outgoing-servers', {
        name: username, host: '127.0.0.1', port: sink.port, security: 'starttls', allowSelfSigned: true,
        auth: 'password', username, password: passwords[username], fromFilter, ...extra,
      });
      assert.equal(r.status, 201, r.text);
      return r.body.id as number;
    };
    const serverView = async (id: number) => (await api('GET', `/api/v1/outgoing-servers/${id}`)).body as { active: boolean; archived: boolean };
    const sendMass = async (subject: string) => {
      const r = await api('POST', '/api/v1/mails', { from: 'Marketing <news@example.com>', to: ['customer@client.test'], subject, text: 'body', massMailing: true });
      assert.equal(r.status, 202, r.text);
      return (r.body as { id: number }).id;
    };
    const mail = async (id: number) => (await api('GET', `/api/v1/mails/${id}`)).body as { state: string; attempts: number; waitingReason: string | null; failureReason: string | null; serverId: number | null };
    const archivedReason = () =>
      `Mass mailings go through the dedicated server "bulk@example.com" (id ${bulk}), but it is archived: restore it (Outgoing Email Servers → Show archived servers → Restore), or choose another server in Settings → Email Marketing (or turn "Dedicated server for mass mailings" off there). Until then mass mailings wait in the queue.`;
    const delivered = (subject: string) => sink.messages.filter((m) => m.raw.toString('utf8').includes(`Subject: ${subject}`));
    const setDedicated = async (on: boolean, serverId?: number) => {
      const r = await api('PUT', '/api/v1/settings', { massMailing: { dedicatedServer: on, ...(serverId === undefined ? {} : { serverId }) } });
      assert.equal(r.status, 200, r.text);
    };
    /**
     * The dedicated server archived all the same, as a database from before these rules may hold it: the option
     * turned on again through the parameters service beneath them (the API and the CLI refuse it now).
     */
    const archiveAnyway = async (id: number) => {
      await setDedicated(false);
      assert.equal((await api('DELETE', `/api/v1/outgoing-servers/${id}`)).status, 200);
      await t.app.services.parameters.set('mass_mailing.outgoing_mail_server', 'true', cliActor);
    };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      const admin = await t.createUser('admin', 'admin');
      key = admin.apiKey;
      sink = await startSmtpSink({ auth: 'password', passwords, tls: 'starttls' });
      idp = await startIdentityServer();
      d = testDispatcher(t.app);
      for (const [k, v] of Object.entries({ 'mail.catchall.domain': 'example.com', 'mail.default.from': 'notifications', 'web.base.url': 'https://mail.example.com', 'microsoft_outlook.endpoint': `${idp.url}/common/oauth2/v2.0/` })) {
        assert.equal((await api('PUT', `/api/v1/parameters/${k}`, { value: v })).status, 200);
      }
      const db = t.config.database;
      env = cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`);
      notifications = await server('notifications@example.com', 'notifications@example.com');
      bulk = await server('bulk@example.com', null, { priority: 50 });
      await setDedicated(true, bulk);
      browser = new FormBrowser(http);
      await browser.signIn('admin', admin.password);
    });
    after(async () => {
      await d.close();
      await sink.stop();
      await idp.stop();
      await t.close();
    });

    it('refuses to archive it alike from the page, the API and the CLI; the Archive dialog says why; its mass mailings keep going', async () => {
      const page = await browser.get(`/outgoing-servers/${bulk}`);
      const archive = /<a class="button danger" href="\/settings#mass-mailing" data-confirm="([^"]*)">Archive<\/a>/.exec(page.body);
      assert.ok(archive, 'the Archive control of the dedicated server leads to Settings after its dialog');
      const refusal = `"bulk@example.com" (id ${bulk}) is the dedicated server for mass mailings, so it is not archived: mass mailings would have no server and wait in the queue. First choose another server in Settings → Email Marketing (or turn "Dedicated server for mass mailings" off there), then archive it.`;
      assert.equal(unescape(archive[1]!), `${refusal} Open Settings → Email Marketing now?`);
      const other = await browser.get(`/outgoing-servers/${notifications}`);
      assert.match(unescape(other.body), /data-confirm="Archive notifications@example\.com\? It stops sending at once/, 'another server is archived as before');

      const byApi = await api('DELETE', `/api/v1/outgoing-servers/${bulk}`);
      assert.equal(byApi.status, 409, byApi.text);
      assert.deepEqual(byApi.body.error, { code: 'JUNIPER_ERR_CONFLICT', message: refusal });
      const byCli = runJuniper(env, ['servers', 'archive', String(bulk)]);
      assert.equal(byCli.code, 1, byCli.stdout);
      assert.ok(byCli.stderr.includes(refusal), byCli.stderr);
      const byStalePage = await browser.post(`/outgoing-servers/${bulk}/archive`, {});
      assert.equal(byStalePage.statusCode, 409);
      assert.ok(unescape(byStalePage.body).includes(refusal));
      assert.deepEqual(await serverView(bulk), { ...(await serverView(bulk)), active: true, archived: false });

      const id = await sendMass('still dedicated');
      await d.drain();
      assert.equal((await mail(id)).state, 'sent');
      assert.equal(delivered('still dedicated')[0]?.user, 'bulk@example.com');
    });

    it('archived all the same: the mass mailing waits naming the server as the Route checker does, and doctor fails; restored, it goes and doctor is content', async () => {
      await archiveAnyway(bulk);
      const id = await sendMass('held for bulk');
      await d.drain();
      const waiting = await mail(id);
      assert.equal(waiting.state, 'queued', JSON.stringify(waiting));
      assert.equal(waiting.attempts, 0, 'waiting is not an attempt');
      assert.equal(waiting.waitingReason, archivedReason());
      assert.equal(delivered('held for bulk').length, 0, 'not sent through another server either');
      const route = (await api('GET', '/api/v1/route?from=news%40example.com&massMailing=true')).body;
      assert.deepEqual([route.ok, route.failureType, route.reason], [false, 'mass_mailing_server_unavailable', archivedReason()], 'the Route checker gives the same reason');

      const doctor = await runJuniperAsync(env, ['doctor']);
      assert.equal(doctor.code, 1, doctor.stdout + doctor.stderr);
      assert.ok(doctor.stdout.split('\n').includes(`FAIL  mass mailing: ${archivedReason()}`), doctor.stdout);

      const restored = runJuniper(env, ['servers', 'restore', String(bulk)]);
      assert.equal(restored.code, 0, restored.stderr);
      assert.equal(restored.stdout, `Restored bulk@example.com (id ${bulk}); active.\n`, 'active again, as it was when archived');
      d.advance(defaultDispatcherOptions.waitRecheckMs + 1000);
      await d.drain();
      const sent = await mail(id);
      assert.deepEqual([sent.state, sent.serverId, sent.waitingReason], ['sent', bulk, null]);
      assert.equal(delivered('held for bulk').length, 1, 'the waiting mail went, once');
      assert.equal(delivered('held for bulk')[0]?.user, 'bulk@example.com');
      const again = await runJuniperAsync(env, ['doctor']);
      assert.ok(again.stdout.split('\n').includes(`ok    mass mailing: Mass mailings go through the dedicated server "bulk@example.com" (id ${bulk}).`), again.stdout);
    });

    it('Settings shows the archived dedicated server as archived with the reason, saves a renewed client secret, and refuses turning the option on with it beside the field', async () => {
      await archiveAnyway(bulk);
      const settings = await browser.get('/settings');
      assert.match(settings.body, new RegExp(`<option value="${bulk}" selected>bulk@example\\.com \\(archived\\)</option>`));
      const warning = /<p class="flash flash-warning" id="mass-mailing-warning">([^<]*)<\/p>/.exec(settings.body);
      assert.equal(unescape(warning?.[1] ?? ''), archivedReason());
      // The form as the page shows it, with a renewed client secret pasted in.
      const form = {
        customEmailServers: 'on', clientId: CLIENT_ID, clientSecret: 'renewed-secret~0123456789abcdef', clientSecretExpiresAt: '',
        cloud: 'global', tenant: 'common', dedicatedServer: 'on', massMailingServerId: /<option value="(\d+)" selected>/.exec(settings.body)?.[1] ?? '',
      };
      const saved = await browser.post('/settings', form);
      assert.equal(saved.statusCode, 200);
      assert.match(saved.body, /Settings saved\./);
      const view = await t.app.services.settings.get();
      assert.deepEqual([view.outlook.hasClientSecret, view.massMailing], [true, { dedicatedServer: true, serverId: bulk }]);

      // Turning the option on with the archived server is a choice, and refused beside the field.
      await setDedicated(false);
      const refused = await browser.post('/settings', { ...form, clientSecret: '' });
      assert.equal(refused.statusCode, 400);
      const fieldError = `"bulk@example.com" (id ${bulk}) is archived: restore it first, or choose another server; mass mailings would wait in the queue.`;
      assert.equal(unescape(/<p class="help error-text" id="massMailingServerId-error" role="alert">([^<]*)<\/p>/.exec(refused.body)?.[1] ?? ''), fieldError);
      assert.equal((await t.app.services.settings.get()).massMailing.dedicatedServer, false, 'nothing changed');

      assert.equal(runJuniper(env, ['servers', 'restore', String(bulk)]).code, 0);
      await setDedicated(true, bulk);
    });

    it('inactive: the mass mailing waits naming it inactive, and goes once it is active again', async () => {
      assert.equal((await api('PATCH', `/api/v1/outgoing-servers/${bulk}`, { active: false })).status, 200);
      const id = await sendMass('held while inactive');
      await d.drain();
      const waiting = await mail(id);
      assert.equal(waiting.state, 'queued');
      assert.match(waiting.waitingReason ?? '', new RegExp(`^Mass mailings go through the dedicated server "bulk@example\\.com" \\(id ${bulk}\\), but it is inactive: make it active again`));
      assert.equal((await api('PATCH', `/api/v1/outgoing-servers/${bulk}`, { active: true })).status, 200);
      d.advance(defaultDispatcherOptions.waitRecheckMs + 1000);
      await d.drain();
      assert.equal((await mail(id)).state, 'sent');
      assert.equal(delivered('held while inactive')[0]?.user, 'bulk@example.com');
    });

    it('Restore brings back the Active setting a server had when it was archived, and says which', async () => {
      const spare = await server('spare@example.com', 'spare@example.com');
      for (const active of [true, false]) {
        assert.equal((await api('PATCH', `/api/v1/outgoing-servers/${spare}`, { active })).status, 200);
        assert.equal((await api('DELETE', `/api/v1/outgoing-servers/${spare}`)).status, 200);
        assert.deepEqual([(await serverView(spare)).archived, (await serverView(spare)).active], [true, false], 'archived is never active');
        await browser.get(`/outgoing-servers/${spare}`);
        const page = await browser.post(`/outgoing-servers/${spare}/unarchive`, {});
        assert.match(page.body, active ? /Server spare@example\.com restored\. It is active again, as it was when archived\./ : /Server spare@example\.com restored\. It stays inactive, as it was when archived: tick Active and save to use it\./);
        assert.deepEqual([(await serverView(spare)).archived, (await serverView(spare)).active], [false, active]);
      }
    });
  });
}
