// Restoring servers over the REST API, and the mass mailings waiting for their dedicated server, on both databases
// with the real workers (polling as `juniper serve` does, every second) and a real SMTP server (smtp-server) on
// loopback: POST /api/v1/<kind>-servers/:id/restore is the page's Restore (same audit entry, same errors); a mass
// mailing waiting for its dedicated server goes within seconds of the server being restored or made active, or of
// Settings or the mass_mailing.* parameters naming another, not at its recheck five minutes later; and those
// parameters, set by `juniper params` or the API, are refused what Settings refuses, for its reason, in the shape
// of any parameter refusal.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { defaultDispatcherOptions } from '../../src/outgoing/dispatcher.js';
import { SNAPSHOT_TTL_MS } from '../../src/settings/parameters.js';
import { createWorkers, type Workers } from '../../src/worker/workers.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { cliEnv, projectRoot, type CliResult } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

const passwords = { 'notifications@example.com': 'notif-pw', 'bulk@example.com': 'bulk-pw', 'spare@example.com': 'spare-pw' };
/** Every wait for a send: far below the 5 minutes after which a waiting mail is looked at again anyway. */
const PROMPTLY_MS = 15_000;

/** `juniper …` in its own process, leaving this one's event loop to the workers and the SMTP server. */
function juniper(env: NodeJS.ProcessEnv, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/juniper.js', ...args], { cwd: projectRoot, env, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/**
 * Waits until what `juniper params` wrote in its own process must show here: this process answers parameters from
 * a snapshot up to SNAPSHOT_TTL_MS old, and the CLI wrote after the last snapshot was taken. Without it a
 * "nothing changed" after a CLI command that should have been refused would pass for a CLI that wrote anyway.
 */
const cliWritesShown = () => new Promise((r) => setTimeout(r, SNAPSHOT_TTL_MS + 20));

async function until<T>(check: () => Promise<T | null | undefined | false>, what: string, timeoutMs = PROMPTLY_MS): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface MailView {
  state: string;
  attempts: number;
  waitingReason: string | null;
  nextAttemptAt: string | null;
  serverId: number | null;
}
interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

for (const dialect of dialects) {
  describe(`restoring servers over the API, and the mass mailings waiting for one (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    let sink: SmtpSink;
    let workers: Workers;
    let env: NodeJS.ProcessEnv;
    let browser: FormBrowser;
    let bulk: number;
    let spare: number;

    const api = async (method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: object) => {
      const res = await http.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
      return { status: res.statusCode, body: res.body ? res.json<Record<string, unknown>>() : {}, text: res.body };
    };
    const ok = async (method: 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: object) => {
      const r = await api(method, url, payload);
      assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${r.text}`);
      return r.body;
    };
    const server = async (username: keyof typeof passwords, fromFilter: string | null, extra: object = {}) =>
      (await ok('POST', '/api/v1/outgoing-servers', {
        name: username, host: '127.0.0.1', port: sink.port, security: 'starttls', allowSelfSigned: true, auth: 'password', username, password: passwords[username], fromFilter, ...extra,
      })).id as number;
    const sendMass = async (subject: string) => (await ok('POST', '/api/v1/mails', { from: 'Marketing <news@example.com>', to: ['customer@client.test'], subject, text: 'body', massMailing: true })).id as number;
    const mail = async (id: number) => (await api('GET', `/api/v1/mails/${id}`)).body as unknown as MailView;
    const delivered = (subject: string) => sink.messages.filter((m) => m.raw.toString('utf8').includes(`Subject: ${subject}`));
    /** The mail once the dispatcher made it wait, checked to wait until its recheck (minutes away). */
    const waiting = async (id: number, reason: RegExp) => {
      const m = await until(async () => {
        const v = await mail(id);
        return v.waitingReason !== null && v;
      }, `mail ${id} to wait`);
      assert.equal(m.state, 'queued');
      assert.match(m.waitingReason!, reason);
      assert.ok(Date.parse(m.nextAttemptAt!) > Date.now() + defaultDispatcherOptions.waitRecheckMs - 60_000, `rechecked only at ${m.nextAttemptAt}`);
      return m;
    };
    /** Sent, once, through `username`'s server, within PROMPTLY_MS. */
    const sentPromptly = async (id: number, subject: string, username: string) => {
      const m = await until(async () => {
        const v = await mail(id);
        return v.state === 'sent' && v;
      }, `mail ${id} to be sent`);
      assert.equal(m.waitingReason, null);
      assert.equal(delivered(subject).length, 1, 'sent once');
      assert.equal(delivered(subject)[0]!.user, username);
    };
    const setDedicated = (on: boolean, serverId?: number) => ok('PUT', '/api/v1/settings', { massMailing: { dedicatedServer: on, ...(serverId === undefined ? {} : { serverId }) } });
    /**
     * The dedicated server archived all the same, as a database from before the rules may hold it: the option off,
     * the server archived, then the option on again through the parameters service beneath every path's rule.
     */
    const archiveAnyway = async (id: number) => {
      await setDedicated(false, id);
      await ok('DELETE', `/api/v1/outgoing-servers/${id}`);
      await t.app.services.parameters.set('mass_mailing.outgoing_mail_server', 'true', cliActor);
    };
    const latestAudit = async () => {
      const [e] = await t.app.services.audit.recent(1);
      return { action: e!.action, target: e!.target, actor: e!.actor, actorUserId: e!.actor_user_id, details: JSON.parse(e!.details ?? 'null') as unknown };
    };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      const admin = await t.createUser('admin', 'admin');
      key = admin.apiKey;
      sink = await startSmtpSink({ auth: 'password', passwords, tls: 'starttls' });
      for (const [k, v] of Object.entries({ 'mail.catchall.domain': 'example.com', 'mail.default.from': 'notifications', 'web.base.url': 'https://mail.example.com' })) await ok('PUT', `/api/v1/parameters/${k}`, { value: v });
      const db = t.config.database;
      env = cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`);
      await server('notifications@example.com', 'notifications@example.com');
      bulk = await server('bulk@example.com', null, { priority: 50 });
      spare = await server('spare@example.com', null, { priority: 60 });
      await setDedicated(true, bulk);
      browser = new FormBrowser(http);
      await browser.signIn('admin', admin.password);
      workers = createWorkers(t.app);
      workers.start();
    });
    after(async () => {
      await workers.stop();
      await sink.stop();
      await t.close();
    });

    it('POST /api/v1/outgoing-servers/:id/restore answers the server view and writes the audit entry the page\'s Restore writes', async () => {
      for (const active of [true, false]) {
        await ok('PATCH', `/api/v1/outgoing-servers/${spare}`, { active });
        await ok('DELETE', `/api/v1/outgoing-servers/${spare}`);
        const r = await api('POST', `/api/v1/outgoing-servers/${spare}/restore`);
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.body, (await api('GET', `/api/v1/outgoing-servers/${spare}`)).body, 'the view GET answers');
        assert.deepEqual([r.body.archived, r.body.active], [false, active], 'active again only if it was when archived');
        const byApi = await latestAudit();
        assert.deepEqual(byApi, { action: 'outgoing_server.restore', target: `outgoing_server:${spare}`, actor: 'admin', actorUserId: byApi.actorUserId, details: { name: 'spare@example.com', active } });

        await ok('DELETE', `/api/v1/outgoing-servers/${spare}`);
        await browser.get(`/outgoing-servers/${spare}`);
        assert.equal((await browser.post(`/outgoing-servers/${spare}/unarchive`, {})).statusCode, 200);
        assert.deepEqual(await latestAudit(), byApi, 'the page writes the same entry');
      }
      await ok('PATCH', `/api/v1/outgoing-servers/${spare}`, { active: true });
    });

    it('POST /api/v1/incoming-servers/:id/restore too; a missing id is 404 in the words of `juniper servers restore`, a malformed one 400 with field id', async () => {
      const incoming = (await ok('POST', '/api/v1/incoming-servers', { name: 'Replies', host: '127.0.0.1', port: 993, security: 'ssl', auth: 'password', username: 'replies@example.com', password: 'imap-pw-0123456789' })).id as number;
      await ok('DELETE', `/api/v1/incoming-servers/${incoming}`);
      const r = await api('POST', `/api/v1/incoming-servers/${incoming}/restore`);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual([r.body.id, r.body.archived, r.body.active], [incoming, false, true]);
      assert.deepEqual((await latestAudit()).details, { name: 'Replies', active: true });

      const missing = await api('POST', '/api/v1/outgoing-servers/987654/restore');
      assert.equal(missing.status, 404);
      const message = 'No outgoing mail server with id 987654. List them with `juniper servers list`.';
      assert.deepEqual((missing.body as unknown as ErrorBody).error, { code: 'JUNIPER_ERR_NOT_FOUND', message });
      const byCli = await juniper(env, ['servers', 'restore', '987654']);
      assert.equal(byCli.code, 1);
      assert.ok(byCli.stderr.split('\n').includes(`juniper: ${message}`), byCli.stderr);
      const malformed = await api('POST', '/api/v1/incoming-servers/zero/restore');
      assert.equal(malformed.status, 400);
      assert.deepEqual([(malformed.body as unknown as ErrorBody).error.code, (malformed.body as unknown as ErrorBody).error.field], ['JUNIPER_ERR_VALIDATION', 'id']);
    });

    it('a mass mailing waiting for its archived dedicated server goes within seconds of POST …/restore, not at its recheck', async () => {
      await archiveAnyway(bulk);
      const id = await sendMass('held until restored');
      await waiting(id, /but it is archived: restore it/);
      const restored = await api('POST', `/api/v1/outgoing-servers/${bulk}/restore`);
      assert.equal(restored.status, 200, restored.text);
      await sentPromptly(id, 'held until restored', 'bulk@example.com');
    });

    it('… and of the server made active again', async () => {
      await ok('PATCH', `/api/v1/outgoing-servers/${bulk}`, { active: false });
      const id = await sendMass('held while inactive');
      await waiting(id, /but it is inactive: make it active again/);
      await ok('PATCH', `/api/v1/outgoing-servers/${bulk}`, { active: true });
      await sentPromptly(id, 'held while inactive', 'bulk@example.com');
    });

    it('… and of Settings choosing another server', async () => {
      await archiveAnyway(bulk);
      const id = await sendMass('held until another is chosen');
      await waiting(id, /but it is archived/);
      await setDedicated(true, spare);
      await sentPromptly(id, 'held until another is chosen', 'spare@example.com');
      await ok('POST', `/api/v1/outgoing-servers/${bulk}/restore`);
      await setDedicated(true, bulk);
    });

    it('… and of `juniper params set mass_mailing.outgoing_mail_server false` in another process', async () => {
      await archiveAnyway(bulk);
      const id = await sendMass('held until the option is off');
      await waiting(id, /but it is archived/);
      const r = await juniper(env, ['params', 'set', 'mass_mailing.outgoing_mail_server', 'false']);
      assert.equal(r.code, 0, r.stderr);
      // Routed like any other mail: no filter lists news@example.com, so the notifications server sends it.
      await sentPromptly(id, 'held until the option is off', 'notifications@example.com');
      await ok('POST', `/api/v1/outgoing-servers/${bulk}/restore`);
      await setDedicated(true, bulk);
    });

    it('`juniper params set|unset mass_mailing.*` and PUT|DELETE /api/v1/parameters/:key refuse what Settings refuses, for its reason, in the shape of a parameter refusal, and change nothing', async () => {
      const retired = await server('spare@example.com', null, { name: 'retired' });
      await ok('DELETE', `/api/v1/outgoing-servers/${retired}`);
      const before = await api('GET', '/api/v1/settings');
      // Settings names its field; a parameter's refusal is JUNIPER_ERR_INVALID_PARAMETER starting with the key, as
      // every other refusal of a parameter's value (mail.catchall.domain, a server id that is no number …).
      const refusedAlike = async (setting: object, param: { key: string; value: string | null }, reason: string) => {
        const bySettings = await api('PUT', '/api/v1/settings', { massMailing: setting });
        assert.equal(bySettings.status, 400, bySettings.text);
        assert.deepEqual((bySettings.body as unknown as ErrorBody).error, { code: 'JUNIPER_ERR_VALIDATION', message: `Invalid settings: massMailing.serverId: ${reason}`, field: 'massMailing.serverId' });
        const byApi = param.value === null ? await api('DELETE', `/api/v1/parameters/${param.key}`) : await api('PUT', `/api/v1/parameters/${param.key}`, { value: param.value });
        assert.equal(byApi.status, 400, byApi.text);
        assert.deepEqual((byApi.body as unknown as ErrorBody).error, { code: 'JUNIPER_ERR_INVALID_PARAMETER', message: `${param.key}: ${reason}` });
        const byCli = await juniper(env, param.value === null ? ['params', 'unset', param.key] : ['params', 'set', param.key, param.value]);
        assert.equal(byCli.code, 1, byCli.stdout);
        assert.ok(byCli.stderr.split('\n').includes(`juniper: ${param.key}: ${reason}`), byCli.stderr);
        await cliWritesShown();
        assert.deepEqual((await api('GET', '/api/v1/settings')).body, before.body, 'nothing changed');
      };
      const archived = `"retired" (id ${retired}) is archived: restore it first, or choose another server; mass mailings would wait in the queue.`;
      await refusedAlike({ serverId: retired }, { key: 'mass_mailing.mail_server_id', value: String(retired) }, archived);
      await refusedAlike({ serverId: 987654 }, { key: 'mass_mailing.mail_server_id', value: '987654' }, 'no outgoing mail server has id 987654; mass mailings would wait in the queue.');
      await refusedAlike(
        { serverId: null },
        { key: 'mass_mailing.mail_server_id', value: null },
        'choose the outgoing mail server for mass mailings (mass_mailing.mail_server_id) before turning dedicatedServer (mass_mailing.outgoing_mail_server) on.',
      );

      // With the option off, the archived server may be named (nothing is sent through it), but not turned on.
      assert.equal((await juniper(env, ['params', 'set', 'mass_mailing.outgoing_mail_server', 'off'])).code, 0);
      const named = await juniper(env, ['params', 'set', 'mass_mailing.mail_server_id', String(retired)]);
      assert.deepEqual([named.code, named.stdout], [0, `mass_mailing.mail_server_id = ${retired}\n`]);
      await cliWritesShown();
      const off = await api('GET', '/api/v1/settings');
      assert.deepEqual(off.body.massMailing, { dedicatedServer: false, serverId: retired });
      const on = await api('PUT', '/api/v1/parameters/mass_mailing.outgoing_mail_server', { value: true });
      assert.equal(on.status, 400);
      assert.deepEqual((on.body as unknown as ErrorBody).error, { code: 'JUNIPER_ERR_INVALID_PARAMETER', message: `mass_mailing.outgoing_mail_server: ${archived}` });
      const onByCli = await juniper(env, ['params', 'set', 'mass_mailing.outgoing_mail_server', 'true']);
      assert.equal(onByCli.code, 1);
      assert.ok(onByCli.stderr.split('\n').includes(`juniper: mass_mailing.outgoing_mail_server: ${archived}`), onByCli.stderr);
      await cliWritesShown();
      assert.deepEqual((await api('GET', '/api/v1/settings')).body, off.body, 'nothing changed');

      // A value that is no id at all keeps the parameter's own message, in the same shape.
      const bad = await api('PUT', '/api/v1/parameters/mass_mailing.mail_server_id', { value: 'bulk' });
      assert.deepEqual(Object.keys((bad.body as unknown as ErrorBody).error), ['code', 'message']);
      assert.equal((bad.body as unknown as ErrorBody).error.code, 'JUNIPER_ERR_INVALID_PARAMETER');
      assert.match((bad.body as unknown as ErrorBody).error.message, /^mass_mailing\.mail_server_id must be /);
      // A usable shared server is taken, through the parameters as through Settings.
      await ok('PUT', `/api/v1/parameters/mass_mailing.mail_server_id`, { value: bulk });
      await ok('PUT', '/api/v1/parameters/mass_mailing.outgoing_mail_server', { value: true });
      assert.deepEqual((await api('GET', '/api/v1/settings')).body.massMailing, { dedicatedServer: true, serverId: bulk });
    });
  });
}
