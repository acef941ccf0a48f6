// Dovecot's connection dropped in the middle of a batch, on both databases: a loopback TCP proxy between
// Juniper and Dovecot cuts both sides the moment a chosen message's bytes come through. The run fails with an
// error on the server that says what happened and what to do; what was stored stays, nothing unstored is
// \Seen, and the next run fetches the rest exactly once.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { isAppError } from '../../src/lib/errors.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpus, deliverAll, incomingApi, seenByUid } from '../helpers/incoming.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const PASSWORD = 'imap-secret';
const users = dialects.map((d) => `drop-${d}@example.test`);

/** Forwards 127.0.0.1:port to target; `cutWhen(text)` kills both sockets once `text` passes server → client. */
async function cuttingProxy(target: number) {
  const sockets = new Set<net.Socket>();
  let marker: string | undefined;
  let cuts = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    sockets.add(client).add(upstream);
    let tail = '';
    let dead = false;
    const cut = () => {
      client.resetAndDestroy();
      upstream.destroy();
    };
    upstream.on('data', (chunk: Buffer) => {
      if (dead) return;
      const text = tail + chunk.toString('latin1');
      const at = marker ? text.indexOf(marker) : -1;
      if (at === -1) {
        client.write(chunk);
        tail = text.slice(-200);
        return;
      }
      // Half of the marked message's line goes through, then the connection is gone.
      const keep = Math.max(at - tail.length + Math.floor(marker!.length / 2), 0);
      dead = true;
      cuts++;
      marker = undefined;
      client.write(chunk.subarray(0, keep), cut);
    });
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    for (const s of [client, upstream]) {
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cutWhen(text: string) {
      marker = text;
    },
    get cuts() {
      return cuts;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

let idp: IdentityServer;
let dovecot: Dovecot;
let proxy: Awaited<ReturnType<typeof cuttingProxy>>;
before(async () => {
  idp = await startIdentityServer({});
  dovecot = await startDovecot({ identityUrl: idp.url, users: Object.fromEntries(users.map((u) => [u, PASSWORD])) });
  proxy = await cuttingProxy(dovecot.imapPort);
});
after(async () => {
  await proxy.close();
  await dovecot.stop();
  await idp.stop();
});

for (const dialect of dialects) {
  describe(`Dovecot dropping the connection mid-fetch (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    const { api, confirmed, fetchNow } = incomingApi(() => ({ http, key }), () => dovecot, PASSWORD);

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
    });
    after(async () => t.close());

    it('fails the run with an error naming the server and what to do, keeps what was stored, marks nothing unstored, and the next run fetches the rest once', { timeout: 60_000 }, async () => {
      const user = `drop-${dialect}@example.test`;
      const id = await confirmed(user, { port: proxy.port, security: 'none' });
      const messages = corpus(30, user);
      // One at a time, so UID n+1 is messages[n].
      await deliverAll(dovecot, user, messages.map((m) => m.raw), 1);

      // Batches of 10: the first is stored and marked, the connection dies inside the second's FETCH response.
      const cutsBefore = proxy.cuts;
      proxy.cutWhen(messages[14]!.messageId!);
      const server = await t.app.services.incomingServers.get(id);
      await assert.rejects(t.app.services.incoming.fetchNow(server, { batchSize: 10 }), (err: unknown) => isAppError(err) && err.code === 'JUNIPER_ERR_IMAP');
      assert.equal(proxy.cuts, cutsBefore + 1);
      const failed = (await api('GET', `/api/v1/incoming-servers/${id}`)).body;
      assert.match(String(failed.lastError), new RegExp(`^Fetching "${user}" failed: The connection to 127\\.0\\.0\\.1:${proxy.port} was lost while fetching \\(.+\\)\\. What was stored before stays stored and nothing else was marked read; the next fetch resumes where this one stopped`));
      assert.ok(failed.errorSince);

      const storedUids = async () => (await t.app.database.db.selectFrom('messages').select('uid').where('server_id', '=', id).orderBy('uid').execute()).map((r) => Number(r.uid));
      const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
      // The batch is streamed: what of the second batch arrived whole before the cut (UID 15) may be stored,
      // but it is not \Seen, because \Seen follows the whole batch.
      const kept = await storedUids();
      assert.deepEqual(kept, range(1, kept.length), 'a run of UIDs from the first, nothing skipped');
      assert.ok(kept.length >= 10 && kept.length < 15, `the first batch is stored, nothing from the cut on (${kept.length} stored)`);
      const seen = await seenByUid(dovecot, user, PASSWORD);
      assert.deepEqual([...seen].filter(([, s]) => s).map(([uid]) => uid), range(1, 10), 'only the batch the run finished is \\Seen');

      assert.deepEqual(await fetchNow(id), { fetched: 30 - kept.length, stored: 30 - kept.length, duplicates: 0, quarantined: 0 }, 'the next run fetches the rest exactly once');
      assert.deepEqual(await storedUids(), range(1, 30));
      assert.ok([...(await seenByUid(dovecot, user, PASSWORD)).values()].every(Boolean));
      assert.equal((await api('GET', `/api/v1/incoming-servers/${id}`)).body.lastError, null);
    });
  });
}
