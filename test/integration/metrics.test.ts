// Prometheus metrics (issue 11): GET /metrics for admins only, counting real sends to a loopback SMTP sink
// (accepted, retried on a 451, failed on a 550), the queue by state and the client secret's days left from
// the database; and a `juniper worker` process answering on its own loopback JUNIPER_METRICS_PORT with what it
// sent. Both databases.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { createApp } from '../../src/app.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { metricsListenFrom } from '../../src/metrics/metrics-server.js';
import { cliEnv } from '../helpers/cli.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { testDispatcher } from '../helpers/outgoing.js';
import { startJuniper, until } from '../helpers/processes.js';
import { freePort } from '../peers/free-port.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

/** The value of one sample (`name{labels} value`), or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const x of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) got[x[1]!] = x[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

const serverInput = (port: number, name: string) => ({
  name, host: '127.0.0.1', port, security: 'starttls' as const, auth: 'password' as const, username: 'notifications@example.com', password: 'pw',
  fromFilter: null, priority: 10, active: true, allowSelfSigned: true,
});

for (const dialect of dialects) {
  describe(`Prometheus metrics (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let sink: SmtpSink;
    let adminKey: string;
    let userKey: string;
    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      adminKey = (await t.createUser('admin', 'admin')).apiKey;
      userKey = (await t.createUser('jane', 'user')).apiKey;
      sink = await startSmtpSink({ auth: 'password', passwords: { 'notifications@example.com': 'pw' } });
    });
    after(async () => {
      await sink.stop();
      await t.close();
    });

    const scrape = async () => {
      const res = await http.inject({ url: '/metrics', headers: { authorization: `Bearer ${adminKey}` } });
      assert.equal(res.statusCode, 200, res.body);
      assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      return res.body;
    };

    it('refuses anonymous callers (401) and users who are not admins (403)', async () => {
      assert.equal((await http.inject({ url: '/metrics' })).statusCode, 401);
      assert.equal((await http.inject({ url: '/metrics', headers: { authorization: `Bearer ${userKey}` } })).statusCode, 403);
    });

    it('counts sent, retried and failed mails by server with a send latency histogram, and the queue by state', async () => {
      const server = await t.app.services.outgoingServers.create(serverInput(sink.port, 'sink'), cliPrincipal, cliActor);
      const sid = String(server.id);
      const before = await scrape();
      const base = (name: string, labels: Record<string, string>) => sample(before, name, labels) ?? 0;
      // The sink refuses the first RCPT with 451 (retried later) and any mail to refused@ with 550 (fails for good).
      let first = true;
      sink.setBehaviour({
        rcptTo: (to) => {
          if (to.startsWith('refused@')) return { code: 550, message: '5.1.1 No such user' };
          if (first) {
            first = false;
            return { code: 451, message: '4.3.0 Try again later' };
          }
          return undefined;
        },
      });
      const { outbox } = t.app.services;
      const one = (await outbox.enqueue({ from: 'notifications@example.com', to: ['a@client.test'], subject: 'one', text: 'x' }, null, cliActor)).id;
      const two = (await outbox.enqueue({ from: 'notifications@example.com', to: ['refused@client.test'], subject: 'two', text: 'x' }, null, cliActor)).id;
      const d = testDispatcher(t.app);
      try {
        await d.drain();
        d.advance(60 * 60_000);
        await d.drain();
      } finally {
        await d.close();
      }
      const text = await scrape();
      assert.equal(sample(text, 'juniper_mails_sent_total', { server_id: sid }), base('juniper_mails_sent_total', { server_id: sid }) + 1, text);
      assert.equal(sample(text, 'juniper_mails_retried_total', { server_id: sid, reason: 'retry' }), base('juniper_mails_retried_total', { server_id: sid, reason: 'retry' }) + 1);
      assert.equal(sample(text, 'juniper_mails_failed_total', { server_id: sid }), base('juniper_mails_failed_total', { server_id: sid }) + 1);
      assert.equal(sample(text, 'juniper_send_duration_seconds_count', { server_id: sid }), base('juniper_send_duration_seconds_count', { server_id: sid }) + 3);
      assert.equal(sample(text, 'juniper_outgoing_mails', { state: 'sent' }), 1);
      assert.equal(sample(text, 'juniper_outgoing_mails', { state: 'failed' }), 1);
      assert.equal(sample(text, 'juniper_outgoing_mails', { state: 'queued' }), 0);
      assert.equal(sample(text, 'juniper_server_info', { kind: 'outgoing', server_id: sid, name: 'sink' }), 1);
      assert.equal(sample(text, 'juniper_token_refreshes_total', { outcome: 'refreshed' }), 0);
      assert.ok(sample(text, 'juniper_process_resident_memory_bytes')! > 0);

      // Each mail's trail at the default level: routed, then retry / sent or failed, with the server's reply.
      const trail = (mail: number) =>
        t.logs().split('\n').filter((l) => l.includes('"op":"mail.trail"') && l.includes(`"mail":${mail},`)).map((l) => JSON.parse(l) as { level: number; step: string; reply?: string; reason?: string });
      assert.deepEqual(trail(one).map((l) => l.step), ['routed', 'retry', 'routed', 'sent']);
      assert.match(trail(one)[1]!.reason!, /451/);
      assert.match(trail(one)[3]!.reply!, /^250 /);
      assert.deepEqual(trail(two).map((l) => l.step), ['routed', 'failed']);
      assert.match(trail(two)[1]!.reason!, /550 5\.1\.1 No such user/);
      assert.ok([...trail(one), ...trail(two)].every((l) => l.level === 30), 'at info');
    });

    it('counts a mail that waited too long (refused sign-in) as failed, after its waits', async () => {
      const server = await t.app.services.outgoingServers.create({ ...serverInput(sink.port, 'wrong password'), password: 'not-the-password', fromFilter: 'waits@example.com' }, cliPrincipal, cliActor);
      const sid = String(server.id);
      const before = await scrape();
      const base = (name: string, labels: Record<string, string>) => sample(before, name, labels) ?? 0;
      const id = (await t.app.services.outbox.enqueue({ from: 'waits@example.com', to: ['a@client.test'], subject: 'waits', text: 'x' }, null, cliActor)).id;
      const d = testDispatcher(t.app);
      try {
        await d.drain();
        assert.equal((await t.app.services.queue.get(id)).state, 'queued', 'a refused sign-in waits');
        d.advance(4 * 24 * 60 * 60_000);
        await d.drain();
      } finally {
        await d.close();
      }
      assert.equal((await t.app.services.queue.get(id)).state, 'failed');
      const text = await scrape();
      assert.equal(sample(text, 'juniper_mails_retried_total', { server_id: sid, reason: 'wait' }), base('juniper_mails_retried_total', { server_id: sid, reason: 'wait' }) + 1, text);
      assert.equal(sample(text, 'juniper_mails_failed_total', { server_id: sid }), base('juniper_mails_failed_total', { server_id: sid }) + 1, text);
      await t.app.services.outgoingServers.archive(server.id, cliPrincipal, cliActor);
    });

    it('shows the days left on the Outlook client secret once its expiry date is set', async () => {
      assert.equal(sample(await scrape(), 'juniper_outlook_client_secret_days_left'), undefined);
      const inTenDays = new Date(Date.now() + 10.5 * 86_400_000).toISOString().slice(0, 10);
      await t.app.services.settings.update({ outlook: { clientSecretExpiresAt: inTenDays } }, cliActor);
      const days = sample(await scrape(), 'juniper_outlook_client_secret_days_left');
      assert.ok(days === 10 || days === 11, String(days));
    });

    it('serves a juniper worker process\'s own counters on its loopback metrics port', async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-metrics-'));
      const db = await freshDatabaseConfig(dialect);
      const port = await freePort();
      const env = { ...cliEnv(dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), JUNIPER_LOG_LEVEL: 'warn', JUNIPER_METRICS_PORT: String(port) };
      const app = await createApp(loadConfig(env), { logger: createLogger('silent') });
      const worker = startJuniper(env, ['worker']);
      try {
        sink.setBehaviour({});
        const server = await app.services.outgoingServers.create(serverInput(sink.port, 'worker sink'), cliPrincipal, cliActor);
        await app.services.outbox.enqueue({ from: 'notifications@example.com', to: ['w@client.test'], subject: 'from the worker', text: 'x' }, null, cliActor);
        let text = '';
        await until(
          async () => {
            text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => (r.ok ? r.text() : ''), () => '');
            return sample(text, 'juniper_mails_sent_total', { server_id: String(server.id) }) === 1;
          },
          20_000,
          () => `the worker to report its sent mail on port ${port}; it said: ${worker.output()}\n${text.slice(0, 500)}`,
        );
        assert.equal(sample(text, 'juniper_workers_alive'), 1);
        assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
      } finally {
        await worker.kill('SIGTERM');
        await app.close();
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
}

describe('metrics port configuration', () => {
  it('is off unless JUNIPER_METRICS_PORT is set, binds loopback by default, and refuses a bad port with the variable name', () => {
    assert.equal(metricsListenFrom({}), undefined);
    assert.deepEqual(metricsListenFrom({ JUNIPER_METRICS_PORT: '9464' }), { port: 9464, host: '127.0.0.1' });
    assert.deepEqual(metricsListenFrom({ JUNIPER_METRICS_PORT: '9464', JUNIPER_METRICS_HOST: '0.0.0.0' }), { port: 9464, host: '0.0.0.0' });
    assert.throws(() => metricsListenFrom({ JUNIPER_METRICS_PORT: 'http' }), /JUNIPER_METRICS_PORT must be a port number/);
  });
});
