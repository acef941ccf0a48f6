// A server that keeps the socket busy but never finishes a reply: it behaves until the end of DATA (or EHLO),
// then sends a "250-" continuation line every 100 ms and never the last line. nodemailer's timeouts are idle
// timeouts, so only Juniper's per-attempt deadline ends such a send (send-deadline.ts); a worker's other servers
// keep sending meanwhile (server-stall.ts) and stop() returns.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { Dispatcher, defaultDispatcherOptions, type DispatcherOptions } from '../../src/outgoing/dispatcher.js';
import { createSmtpTransport } from '../../src/outgoing/smtp-transport.js';
import { TransportPool } from '../../src/outgoing/transport-pool.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { dialects } from '../helpers/databases.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

type StallAt = 'data-end' | 'ehlo' | 'never';

interface TricklingServer {
  port: number;
  /** Where it starts trickling (set 'never' to make it a working server). */
  stallAt: StallAt;
  /** Messages it answered with a final 250. */
  delivered: number;
  /** Sockets open now (a send given up must close its connection, not abandon it). */
  open(): number;
  /** Drops every open connection (the sends on them fail as connection errors). */
  drop(): void;
  stop(): Promise<void>;
}

async function startTricklingServer(): Promise<TricklingServer> {
  const sockets = new Set<net.Socket>();
  const state: TricklingServer = {
    port: 0,
    stallAt: 'data-end',
    delivered: 0,
    open: () => sockets.size,
    drop: () => {
      for (const s of sockets) s.destroy();
    },
    stop: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
  const trickle = (s: net.Socket) => {
    const iv = setInterval(() => s.write('250-still working on it\r\n'), 100);
    s.once('close', () => clearInterval(iv));
  };
  const server = net.createServer((s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.write('220 trickle.test ESMTP\r\n');
    let data = false;
    let buf = '';
    s.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (data) {
          if (line !== '.') continue;
          data = false;
          if (state.stallAt === 'data-end') trickle(s);
          else {
            state.delivered++;
            s.write('250 2.0.0 queued\r\n');
          }
        } else if (/^EHLO/i.test(line)) {
          if (state.stallAt === 'ehlo') trickle(s);
          else s.write('250-trickle.test\r\n250 8BITMIME\r\n');
        } else if (/^DATA/i.test(line)) {
          data = true;
          s.write('354 go ahead\r\n');
        } else if (/^QUIT/i.test(line)) s.end('221 bye\r\n');
        else s.write('250 ok\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

/** Fails instead of hanging: today's code never settles these. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

for (const dialect of dialects) {
  describe(`a server that trickles its replies (${dialect})`, () => {
    let t: TestApp;
    let stuck: TricklingServer;
    let sink: SmtpSink;
    let offset = 0;
    const dispatchers: Dispatcher[] = [];

    before(async () => {
      t = await startTestApp(dialect);
      stuck = await startTricklingServer();
      sink = await startSmtpSink({ auth: 'none', tls: 'none' });
      const create = async (name: string, port: number, fromFilter: string, priority: number) =>
        (await t.app.services.outgoingServers.create({ name, host: '127.0.0.1', port, security: 'none', auth: 'none', fromFilter, priority, active: true, allowSelfSigned: false, poolSize: 1 }, cliPrincipal, cliActor)).id;
      await create('Stuck', stuck.port, 'stuck@example.com', 10);
      await create('Healthy', sink.port, 'ok@example.com', 20);
    });
    after(async () => {
      for (const d of dispatchers) await d.stop();
      await stuck.stop();
      await sink.stop();
      await t.close();
    });

    /** A dispatcher whose sends have a deadline of `deadlineMs` (the production minimum is 120 s). */
    const dispatcher = (deadlineMs: number, options: Partial<DispatcherOptions> = {}) => {
      const pool = new TransportPool(
        (x) => t.app.services.outgoingServers.password(x),
        t.app.services.tokens,
        t.app.services.outgoingServers.hostGuard,
        (endpoint, credentials, tokens, o) => createSmtpTransport(endpoint, credentials, tokens, { ...o, deadline: { minMs: deadlineMs } }),
      );
      const d = new Dispatcher(
        { queue: t.app.services.queue, servers: t.app.services.outgoingServers, parameters: t.app.services.parameters, transports: pool, log: t.app.logger, owner: `trickle-${dispatchers.length}`, now: () => Date.now() + offset },
        { ...defaultDispatcherOptions, pollMs: 50, ...options },
      );
      dispatchers.push(d);
      return d;
    };
    const send = async (from: string, subject: string) => (await t.app.services.outbox.enqueue({ from, to: ['customer@client.test'], subject, text: 'hello' }, null, cliActor)).id;
    const row = (id: number) => t.app.database.db.selectFrom('outgoing_mails').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

    it('a send whose final reply never comes fails at its deadline as a retry saying so, its connection closed; the mail goes out later, once', async () => {
      stuck.stallAt = 'data-end';
      const d = dispatcher(500);
      const id = await send('stuck@example.com', 'trickled after DATA');
      const t0 = Date.now();
      await within(10_000, 'runOnce', d.runOnce());
      assert.ok(Date.now() - t0 < 5000, `gave up after ${Date.now() - t0} ms`);
      const m = await row(id);
      assert.equal(m.state, 'queued');
      assert.equal(m.failure_type, 'timeout');
      assert.equal(m.attempts, 1);
      assert.match(m.failure_reason ?? '', /^Outgoing server "Stuck" \(127\.0\.0\.1:\d+\) did not finish sending the mail within 0\.5 s: the whole message was written, but the server never gave its final reply, so it may have delivered it and the mail may arrive twice\. Juniper retries later\.$/);
      assert.ok(m.next_attempt_at > Date.now() + 10_000, 'retried with the usual backoff, not at once');
      assert.equal(await t.app.database.db.selectFrom('outgoing_mails').select('id').where('id', '=', id).where('state', '=', 'sent').executeTakeFirst(), undefined);
      await until('the stuck connection to close', 3000, () => stuck.open() === 0);

      stuck.stallAt = 'never';
      offset += 10 * 60_000;
      await within(10_000, 'runOnce', d.runOnce());
      assert.equal((await row(id)).state, 'sent');
      assert.equal(stuck.delivered, 1);
      await d.stop();
      await until('the pooled connection to close', 3000, () => stuck.open() === 0);
    });

    // (A greeting trickled as "220-" lines needs no deadline: nodemailer's greeting timeout runs from the connect,
    // not from the last byte, and is 15 s. From EHLO on, its timeouts are idle ones.)
    it('a server trickling its EHLO reply: the attempt fails at its deadline, nothing was written', async () => {
      stuck.stallAt = 'ehlo';
      const d = dispatcher(400);
      const id = await send('stuck@example.com', 'trickled at EHLO');
      await within(10_000, 'runOnce', d.runOnce());
      const m = await row(id);
      assert.equal(m.state, 'queued');
      assert.equal(m.failure_type, 'timeout');
      assert.match(m.failure_reason ?? '', /within 0\.4 s: the session never reached the message: the server stopped answering while Juniper connected or signed in, or every connection to it was held by sends it did not finish\. Juniper retries later\./);
      await until('the stuck connection to close', 3000, () => stuck.open() === 0);
      await d.stop();
    });

    it('while one server holds its sends, the same dispatcher keeps sending through another; the stuck one keeps 2 per connection', async () => {
      stuck.stallAt = 'data-end';
      // A deadline far away: only the stall rule can free the loop here.
      const d = dispatcher(60_000, { batchSize: 10, stallMs: 300 });
      const stuckIds: number[] = [];
      for (let i = 0; i < 8; i++) stuckIds.push(await send('stuck@example.com', `stuck ${i}`));
      const before = sink.messages.length;
      const okIds: number[] = [];
      for (let i = 0; i < 6; i++) okIds.push(await send('ok@example.com', `healthy ${i}`));
      d.start();
      await until('every healthy mail to be sent', 8000, async () => (await Promise.all(okIds.map(row))).every((m) => m.state === 'sent'));
      assert.equal(sink.messages.length - before, 6);
      // The newer six come back every 0.3 s and are given back again at once while the server stays stalled.
      let rows = await Promise.all(stuckIds.map(row));
      await until('the stuck server to keep only its two oldest', 3000, async () => (rows = await Promise.all(stuckIds.map(row))).filter((m) => m.state === 'queued').length === 6);
      assert.deepEqual(rows.filter((m) => m.state === 'sending').map((m) => m.id), stuckIds.slice(0, 2), 'the oldest two are still under way (pool size 1)');
      const back = rows.filter((m) => m.state === 'queued');
      for (const m of back) {
        assert.equal(m.failure_type, 'server_stalled');
        assert.equal(m.attempts, 0, 'no attempt counted');
        assert.match(m.waiting_reason ?? '', /Outgoing server "Stuck" has \d+ sends under way of which none finished for 0\.3 s or more; the mail waits its turn/);
      }
      // stop() is bounded by the deadline (60 s here; the next case shows it): the stuck sends end here by the
      // server dropping them instead, so that this dispatcher stops now.
      stuck.stallAt = 'never';
      stuck.drop();
      await within(10_000, 'stop', d.stop());
    });

    it('stop() returns within the deadline while a send is stuck, and the mail stays queued for a retry', async () => {
      stuck.stallAt = 'data-end';
      const d = dispatcher(1000);
      const id = await send('stuck@example.com', 'stuck at stop');
      d.start();
      await until('the send to reach the server', 5000, async () => (await row(id)).state === 'sending' && stuck.open() > 0);
      const t0 = Date.now();
      await within(10_000, 'stop', d.stop());
      assert.ok(Date.now() - t0 < 2500, `stop took ${Date.now() - t0} ms`);
      const m = await row(id);
      assert.equal(m.state, 'queued');
      assert.equal(m.failure_type, 'timeout');
    });
  });
}
