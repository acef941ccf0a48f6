// A fetcher that dies mid-run, on both databases, against a real Dovecot: thrown out of a batch by a reader
// that fails after N messages, and a real `juniper fetch` process killed with SIGKILL. Either way nothing
// stored is lost, nothing unstored is \Seen, and the next run completes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { ConnectReader, MailboxReader } from '../../src/incoming/mailbox-reader.js';
import { imapConnector } from '../../src/incoming/imap-reader.js';
import { cliEnv, projectRoot } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpus, deliverAll, seenByUid, incomingApi, imapPeersForFile } from '../helpers/incoming.js';

const PASSWORD = 'imap-secret';
const users = ['crash', 'sigkill', 'unreturned'].flatMap((u) => dialects.map((d) => `${u}-${d}@example.test`));

/** The real IMAP reader on Dovecot, with its message fetch replaced (to die or to withhold a message). */
function withFetch(fetch: (reader: MailboxReader, uids: number[]) => ReturnType<MailboxReader['fetch']>): ConnectReader {
  return async (...args) => {
    const reader = await imapConnector()(...args);
    return {
      open: (f) => reader.open(f),
      listAfter: (u, exactAbove) => reader.listAfter(u, exactAbove),
      firstUnseen: () => reader.firstUnseen(),
      markSeen: (uids) => reader.markSeen(uids),
      fetchHeaders: (uids, max) => reader.fetchHeaders(uids, max),
      close: () => reader.close(),
      fetch: (uids) => fetch(reader, uids),
    };
  };
}

const peers = imapPeersForFile(users, PASSWORD);

for (const dialect of dialects) {
  describe(`a fetcher killed mid-run (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    const mailbox = (name: string) => `${name}-${dialect}@example.test`;

    const { api, confirmed, fetchNow, listed } = incomingApi(() => ({ http, key }), () => peers.dovecot, PASSWORD);
    /** Every \\Seen UID on the server is stored; and the counts, when given. */
    const assertNothingUnstoredSeen = async (id: number, user: string, expect: { stored: number; seen?: number }) => {
      const storedUids = new Set((await t.app.database.db.selectFrom('messages').select('uid').where('server_id', '=', id).execute()).map((r) => r.uid));
      assert.equal(storedUids.size, expect.stored);
      const seen = [...(await seenByUid(peers.dovecot, user, PASSWORD))].filter(([, isSeen]) => isSeen).map(([uid]) => uid);
      for (const uid of seen) assert.ok(storedUids.has(uid), `UID ${uid} is \\Seen, so it must be stored`);
      if (expect.seen !== undefined) assert.equal(seen.length, expect.seen);
    };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
    });
    after(async () => t.close());

    it('a fetcher that dies mid-batch loses nothing stored and marks nothing unstored; the next run completes', async () => {
      const user = mailbox('crash');
      const id = await confirmed(user);
      await deliverAll(peers.dovecot, user, corpus(120, user).map((m) => m.raw));
      const server = await t.app.services.incomingServers.get(id);
      // Dies after the 70th message: the first batch of 50 is stored and marked, 20 of the second are stored only.
      const dying = (diesAfter: number) => {
        let yielded = 0;
        return withFetch(async function* (reader, uids) {
          for await (const m of reader.fetch(uids)) {
            if (yielded++ === diesAfter) throw new Error('killed');
            yield m;
          }
        });
      };
      await assert.rejects(t.app.services.incoming.fetchNow(server, { batchSize: 50 }, { connect: dying(70) }), /killed/);
      await assertNothingUnstoredSeen(id, user, { stored: 70, seen: 50 });
      assert.equal((await t.app.services.incomingServers.get(id)).last_error, `Fetching "${user}" failed: Unexpected error: killed`);

      assert.deepEqual(await fetchNow(id), { fetched: 50, stored: 50, duplicates: 0, quarantined: 0 });
      assert.equal((await listed(`serverId=${id}`)).length, 120);
      assert.ok([...(await seenByUid(peers.dovecot, user, PASSWORD)).values()].every(Boolean), 'the stored-but-unmarked ones are marked by the next run');
      assert.equal((await api('GET', `/api/v1/incoming-servers/${id}`)).body.lastError, null);
    });

    it('`juniper fetch` killed with SIGKILL mid-run: its lease holds the server until it expires, then a new run completes', async () => {
      const user = mailbox('sigkill');
      const id = await confirmed(user);
      const total = 200;
      await deliverAll(peers.dovecot, user, corpus(total, user).map((m) => m.raw));
      const db = t.config.database;
      const env = { ...cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), JUNIPER_LOG_LEVEL: 'warn' };
      const child = spawn(process.execPath, ['bin/juniper.js', 'fetch', String(id)], { cwd: projectRoot, env, stdio: 'ignore' });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const count = async () => Number((await t.app.database.db.selectFrom('messages').select((eb) => eb.fn.countAll().as('n')).where('server_id', '=', id).executeTakeFirstOrThrow()).n);
      while ((await count()) < 40) await new Promise((r) => setTimeout(r, 5));
      child.kill('SIGKILL');
      await exited;
      const stored = await count();
      assert.ok(stored < total, `killed mid-run (${stored} of ${total} stored)`);
      await assertNothingUnstoredSeen(id, user, { stored });

      assert.equal((await api('POST', `/api/v1/incoming-servers/${id}/fetch`)).status, 409, 'the dead run still holds the lease');
      const later = t.app.services.incoming.fetcher({ now: () => Date.now() + 6 * 60_000 });
      const counts = await later.fetchServer(id);
      assert.equal(counts.fetched, total - stored);
      assert.equal(counts.duplicates, 0);
      assert.equal(await count(), total);
      assert.ok([...(await seenByUid(peers.dovecot, user, PASSWORD)).values()].every(Boolean));
    });

    it('a UID the server lists but does not return stops the run before it, visibly: lastError says which and what to do', async () => {
      const user = mailbox('unreturned');
      const id = await confirmed(user);
      await deliverAll(peers.dovecot, user, corpus(10, user).map((m) => m.raw));
      const server = await t.app.services.incomingServers.get(id);
      // The 4th listed message never comes back (a damaged file on the server, say).
      const withholding = withFetch(async function* (reader, uids) {
        for await (const m of reader.fetch(uids)) if (m.uid !== uids[3]) yield m;
      });
      const counts = await t.app.services.incoming.fetchNow(server, { batchSize: 50 }, { connect: withholding });
      assert.equal(counts.stored, 3);
      await assertNothingUnstoredSeen(id, user, { stored: 3, seen: 3 });
      const view = (await api('GET', `/api/v1/incoming-servers/${id}`)).body;
      assert.match(String(view.lastError), /stopped before message UID \d+: the server listed it but did not return it.*move or delete it/);
      const rest = await t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(id));
      assert.equal(rest.stored, 7);
      assert.equal((await api('GET', `/api/v1/incoming-servers/${id}`)).body.lastError, null, 'a complete run clears it');
    });
  });
}
