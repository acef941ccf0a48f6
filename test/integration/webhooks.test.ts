// Webhooks (issue 11) against a real loopback HTTP receiver: registration by admins with the secret shown once
// and encrypted at rest, loopback refused until the allow-list names it, signed deliveries of real events (a
// mail sent and a mail failed through a loopback SMTP sink, a server needing a reconnect), a receiver that is
// down and comes back (retried with backoff), the last response kept, replay, and the delivery metric. Both databases.
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { retryDelayMs } from '../../src/lib/backoff.js';
import { verify } from '../../src/webhooks/events.js';
import { webhookSecretSources } from '../../src/webhooks/webhook-secrets.js';
import { secretKeyCensus } from '../../src/vault/rotation.js';
import { webhookWorker } from '../../src/webhooks/webhook-worker.js';
import { WebhookWorker, defaultDeliveryOptions } from '../../src/webhooks/delivery-worker.js';
import { EventScanner } from '../../src/webhooks/event-scanner.js';
import { allText } from '../helpers/db-dump.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { seedConnection } from '../helpers/oauth-connections.js';
import { testDispatcher } from '../helpers/outgoing.js';
import { freePort } from '../peers/free-port.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
}

async function startReceiver(port = 0, status = 200): Promise<{ port: number; got: Received[]; stop(): Promise<void> }> {
  const got: Received[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(`thanks for ${String(req.headers['juniper-event'])}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  return { port: (server.address() as AddressInfo).port, got, stop: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A real loopback receiver that never finishes: `head` is written at once, then one byte every 20 ms. */
async function startTrickler(head: string): Promise<{ port: number; closed: Promise<void>; open(): boolean; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  let onClosed!: () => void;
  const closed = new Promise<void>((r) => (onClosed = r));
  const server = net.createServer((socket) => {
    sockets.add(socket);
    connections++;
    socket.on('error', () => undefined);
    socket.write(head);
    const timer = setInterval(() => socket.write('a'), 20);
    socket.on('close', () => {
      clearInterval(timer);
      connections--;
      onClosed();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    closed,
    open: () => connections > 0,
    stop: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

type Json = Record<string, unknown>;

for (const dialect of dialects) {
  describe(`webhooks (${dialect})`, () => {
    let t: TestApp;
    let http_: FastifyInstance;
    let key: string;
    let sink: SmtpSink;
    let serverId: number;
    let offset = 0;
    const api = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) => {
      const res = await http_.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
      const json = String(res.headers['content-type']).startsWith('application/json');
      return { status: res.statusCode, body: json ? res.json<Json>() : {}, text: res.body };
    };
    const worker = () => webhookWorker(t.app, {}, () => Date.now() + offset);
    const sendMails = async (...to: string[]) => {
      for (const r of to) await t.app.services.outbox.enqueue({ from: 'notifications@example.com', to: [r], subject: `to ${r}`, text: 'x' }, null, cliActor);
      const d = testDispatcher(t.app);
      await d.drain();
      await d.close();
    };

    before(async () => {
      t = await startTestApp(dialect);
      http_ = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
      sink = await startSmtpSink({ auth: 'password', passwords: { 'notifications@example.com': 'pw' }, behaviour: { rcptTo: (to) => (to.startsWith('refused@') ? { code: 550, message: '5.1.1 No such user' } : undefined) } });
      serverId = (
        await t.app.services.outgoingServers.create(
          { name: 'sink', host: '127.0.0.1', port: sink.port, security: 'starttls', auth: 'password', username: 'notifications@example.com', password: 'pw', fromFilter: null, priority: 10, active: true, allowSelfSigned: true },
          cliPrincipal,
          cliActor,
        )
      ).id;
    });
    after(async () => {
      await sink.stop();
      await t.close();
    });

    it('refuses a loopback URL until the allow-list names it, then shows the secret once and keeps it encrypted', async () => {
      const refused = await api('POST', '/api/v1/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['mail.sent'] });
      assert.equal(refused.status, 400, refused.text);
      assert.match(refused.text, /mail\.server\.allowed_private_hosts/);
      const bad = await api('POST', '/api/v1/webhooks', { url: 'ftp://example.com/x', events: ['mail.exploded'] });
      assert.equal(bad.status, 400);
      assert.match(bad.text, /http:\/\/ or https:\/\/ URL.*must be one of message\.received/s);

      await t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
      const created = await api('POST', '/api/v1/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['mail.sent'] });
      assert.equal(created.status, 201, created.text);
      const secret = String(created.body.secret);
      assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
      const shown = await api('GET', `/api/v1/webhooks/${String(created.body.id)}`);
      assert.equal(shown.body.hasSecret, true);
      assert.doesNotMatch(shown.text + (await api('GET', '/api/v1/webhooks')).text, new RegExp(secret));
      assert.doesNotMatch(await allText(t.app.database.db), new RegExp(secret), 'not in clear in the database');
      assert.doesNotMatch(t.logs(), new RegExp(secret), 'nor in the logs');
      // `juniper vault status` / `vault rotate` cover it: the census finds it under the current key.
      const census = await secretKeyCensus(webhookSecretSources(t.app.database.db));
      assert.deepEqual(census, [{ label: 'webhooks.secret_enc', byKey: { [t.app.vault.keyIds[0]!]: 1 } }]);
      assert.equal((await api('DELETE', `/api/v1/webhooks/${String(created.body.id)}`)).status, 200);
    });

    it('delivers signed mail.sent and mail.failed events to a real receiver and keeps its answer', async () => {
      const receiver = await startReceiver();
      try {
        const hook = await api('POST', '/api/v1/webhooks', { url: `http://127.0.0.1:${receiver.port}/in?src=juniper`, events: ['mail.sent', 'mail.failed'] });
        assert.equal(hook.status, 201, hook.text);
        await sendMails('ok@client.test', 'refused@client.test');
        const w = worker();
        assert.equal(await w.runOnce(), 2);
        assert.equal(receiver.got.length, 2);
        const events = receiver.got.map((r) => r.headers['juniper-event']).sort();
        assert.deepEqual(events, ['mail.failed', 'mail.sent']);
        for (const r of receiver.got) {
          assert.ok(verify(String(hook.body.secret), String(r.headers['juniper-timestamp']), r.body, String(r.headers['juniper-signature'])), 'signature verifies');
          assert.ok(!verify('whsec_wrong', String(r.headers['juniper-timestamp']), r.body, String(r.headers['juniper-signature'])));
          const payload = JSON.parse(r.body) as { event: string; data: Json };
          assert.equal(payload.event, r.headers['juniper-event']);
          assert.equal(payload.data.serverId, payload.event === 'mail.sent' ? serverId : payload.data.serverId);
          if (payload.event === 'mail.sent') assert.deepEqual(payload.data.to, ['ok@client.test']);
          else assert.match(String(payload.data.reason), /550/);
        }
        const deliveries = (await api('GET', `/api/v1/webhooks/${String(hook.body.id)}/deliveries`)).body as unknown as Json[];
        assert.equal(deliveries.length, 2);
        for (const d of deliveries) {
          assert.equal(d.state, 'delivered');
          assert.equal(d.lastStatus, 200);
          assert.equal(d.lastResponse, `thanks for ${String(d.event)}`);
        }
        assert.equal(await w.runOnce(), 0, 'nothing is delivered twice');
        assert.equal(receiver.got.length, 2);

        // Replay: the same payload again, signed anew.
        const replayed = await api('POST', `/api/v1/webhooks/${String(hook.body.id)}/deliveries/${String(deliveries[0]!.id)}/replay`);
        assert.equal(replayed.status, 200, replayed.text);
        assert.equal(replayed.body.state, 'pending');
        assert.equal(await w.runOnce(), 1);
        assert.equal(receiver.got.length, 3);
        assert.equal(receiver.got[2]!.body, JSON.stringify(deliveries[0]!.payload));
        await api('DELETE', `/api/v1/webhooks/${String(hook.body.id)}`);
      } finally {
        await receiver.stop();
      }
    });

    it('retries with backoff while the receiver is down and delivers once it is back; counts the outcomes', async () => {
      const port = await freePort();
      const hook = await api('POST', '/api/v1/webhooks', { url: `http://127.0.0.1:${port}/hook`, events: ['mail.sent', 'server.needs_reconnect'] });
      assert.equal(hook.status, 201, hook.text);
      const metric = async (outcome: string) => Number(new RegExp(`^juniper_webhook_deliveries_total\\{event="mail.sent",outcome="${outcome}"\\} (\\S+)$`, 'm').exec((await api('GET', '/metrics')).text)?.[1] ?? 0);
      const before = { retry: await metric('retry'), delivered: await metric('delivered') };
      await sendMails('later@client.test');
      await seedConnection(t.app.database.db, t.app.vault, 'outgoing', serverId, null, { status: 'needs_reconnect', error_code: 'AADSTS700082' });
      const w = worker();
      assert.equal(await w.runOnce(), 2);
      let [first, second] = (await api('GET', `/api/v1/webhooks/${String(hook.body.id)}/deliveries`)).body as unknown as Json[];
      for (const d of [first!, second!]) {
        assert.equal(d.state, 'pending');
        assert.equal(d.attempts, 1);
        assert.match(String(d.lastError), new RegExp(`Could not reach 127\\.0\\.0\\.1:${port}`));
      }
      assert.equal(await w.runOnce(), 0, 'not again before the backoff');
      const receiver = await startReceiver(port);
      try {
        offset += retryDelayMs(1, () => 1) + 1000;
        assert.equal(await w.runOnce(), 2);
        assert.equal(receiver.got.length, 2);
        [first, second] = (await api('GET', `/api/v1/webhooks/${String(hook.body.id)}/deliveries`)).body as unknown as Json[];
        assert.deepEqual([first!.state, second!.state], ['delivered', 'delivered']);
        assert.equal(first!.attempts, 2);
        const reconnect = receiver.got.find((r) => r.headers['juniper-event'] === 'server.needs_reconnect');
        assert.match(reconnect!.body, /"errorCode":"AADSTS700082"/);
        assert.equal(await metric('retry'), before.retry + 1);
        assert.equal(await metric('delivered'), before.delivered + 1);
      } finally {
        await receiver.stop();
        await t.app.database.db.deleteFrom('oauth_connections').where('server_id', '=', serverId).execute();
      }
    });

    it('abandons a receiver that trickles its answer at an overall deadline, and stops reading after the kept KB', { timeout: 20_000 }, async () => {
      const { db } = t.app.database;
      assert.throws(() => new WebhookWorker({ db, webhooks: t.app.services.webhooks, scanner: new EventScanner(db), log: t.app.logger }, { ...defaultDeliveryOptions, timeoutMs: 60_000 }), /at most half the lease/);
      await db.updateTable('webhooks').set({ active: 0 }).execute();
      // Headers that never end: the idle timeout never fires, only the deadline can end the post.
      const slowHead = await startTrickler('HTTP/1.1 200 OK\r\nx-slow: ');
      // A 200 with more than a KB at once and then no end: the KB is all that is kept, so all that is read.
      const endless = await startTrickler(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n${'x'.repeat(2000)}`);
      try {
        const slowHook = await api('POST', '/api/v1/webhooks', { url: `http://127.0.0.1:${slowHead.port}/hook`, events: ['server.needs_reconnect'] });
        const endlessHook = await api('POST', '/api/v1/webhooks', { url: `http://127.0.0.1:${endless.port}/hook`, events: ['server.needs_reconnect'] });
        await seedConnection(db, t.app.vault, 'outgoing', serverId, null, { status: 'needs_reconnect', error_code: 'AADSTS700082' });
        const deliveries = async (hook: typeof slowHook) => (await api('GET', `/api/v1/webhooks/${String(hook.body.id)}/deliveries`)).body as unknown as Json[];
        // The endless answer is cut at its KB, while the slow head still waits for the deadline.
        const cutFirst = endless.closed.then(() => slowHead.open());
        assert.equal(await webhookWorker(t.app, { timeoutMs: 800 }).runOnce(), 2);
        assert.equal(await cutFirst, true, 'the endless answer was dropped after its first KB, not at the deadline');
        const [slow] = await deliveries(slowHook);
        assert.equal(slow!.state, 'pending');
        assert.equal(slow!.attempts, 1);
        assert.match(String(slow!.lastError), /did not answer within 0\.8 s/);
        const [cut] = await deliveries(endlessHook);
        assert.equal(cut!.state, 'delivered');
        assert.equal(cut!.lastStatus, 200);
        assert.equal(cut!.lastResponse, 'x'.repeat(1024));
        await Promise.all([slowHead.closed, endless.closed]);
      } finally {
        await Promise.all([slowHead.stop(), endless.stop()]);
        await db.deleteFrom('oauth_connections').where('server_id', '=', serverId).execute();
      }
    });

    it('reports a mail that fails again after a retry as a second mail.failed', async () => {
      const receiver = await startReceiver();
      try {
        await t.app.database.db.updateTable('webhooks').set({ active: 0 }).execute();
        await t.app.database.db.deleteFrom('webhook_deliveries').where('state', '=', 'pending').execute();
        const hook = await api('POST', '/api/v1/webhooks', { url: `http://127.0.0.1:${receiver.port}/failed`, events: ['mail.failed'] });
        assert.equal(hook.status, 201, hook.text);
        await sendMails('refused@client.test');
        const w = worker();
        assert.equal(await w.runOnce(), 1);
        const failed = JSON.parse(receiver.got[0]!.body) as { subject: string; data: Json };
        await t.app.services.queue.retry(Number(failed.data.id));
        const d = testDispatcher(t.app);
        await d.drain();
        await d.close();
        assert.equal(await w.runOnce(), 1, 'the second failure is an event of its own');
        const again = JSON.parse(receiver.got[1]!.body) as { subject: string; data: Json };
        assert.equal(again.data.id, failed.data.id);
        assert.notEqual(again.subject, failed.subject);
        assert.equal(await w.runOnce(), 0, 'and is delivered once');
        await api('DELETE', `/api/v1/webhooks/${String(hook.body.id)}`);
      } finally {
        await receiver.stop();
      }
    });
  });
}
