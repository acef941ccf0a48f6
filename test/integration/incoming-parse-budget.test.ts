// The parse budget, on both databases, against a real Dovecot: a message whose parse never ends (a worker made
// to block on it: ParsePool's test hook, the one thing not real here) and one that crashes its worker are fetched
// among ordinary ones by Juniper's real fetcher and pool. The blocked worker is terminated at the budget, its
// message quarantined with the raw bytes and the reason, the messages queued behind it parsed by a new worker
// and stored once; the crashing one is quarantined after its second worker dies; the fetch goes on to the end,
// \Seen only on stored UIDs, and a later fetch stores nothing twice.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseMessage } from '../../src/mailbox/parse.js';
import { crashedReason, overBudgetReason, PARSE_CRASHES_TOLERATED, ParsePool, WORKER_PARSE_MAX_BYTES } from '../../src/mailbox/parse-pool.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpus, imapPeersForFile, incomingApi, readerWith, seenByUid } from '../helpers/incoming.js';
import { deliverToMaildir } from '../helpers/incoming-poison.js';

const PASSWORD = 'imap-secret';
const BUDGET_MS = 2000;
// Blocks its worker for ever without using the CPU (parse-pool.test.ts proves a real spin is stopped the same way).
const STALL = 'X-Test: make-the-parse-block';
const CRASH = 'X-Test: make-the-worker-crash';
const users = dialects.flatMap((d) => [`budget-${d}@example.test`, `lease-${d}@example.test`]);
const peers = imapPeersForFile(users, PASSWORD);

/** A message with `marker` in its body (so its header section parses), of about `bytes` bytes. */
function marked(to: string, subject: string, marker: string, bytes = 0): Buffer {
  const filler = bytes > 0 ? crypto.randomBytes(Math.floor((bytes * 3) / 4)).toString('base64').replace(/.{76}/g, '$&\r\n') : '';
  return Buffer.from(
    [`From: "Sender" <sender@client.test>`, `To: ${to}`, `Subject: ${subject}`, `Message-ID: <${crypto.randomUUID()}@client.test>`, 'Content-Type: text/plain; charset=us-ascii', '', marker, filler, ''].join('\r\n'),
  );
}

for (const dialect of dialects) {
  describe(`the parse budget, fetched from Dovecot (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    const { api, confirmed, listed } = incomingApi(() => ({ http, key }), () => peers.dovecot, PASSWORD);

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
    });
    after(async () => t.close());

    it('renews the fetch lease while a group waits on its parses, so parses slower than the lease do not lose the server', async () => {
      const user = `lease-${dialect}@example.test`;
      const id = await confirmed(user);
      deliverToMaildir(peers.dovecot, user, corpus(5, user).map((m) => m.raw));
      const LEASE_MS = 3_000;
      // Every parse answers after 5 s, past the lease taken at the start: only a renewal keeps it this run's.
      const slow = async (raw: Buffer) => {
        await sleep(5_000);
        return parseMessage(raw);
      };
      const started = Date.now();
      const fetching = t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(id), { batchSize: 50, leaseMs: LEASE_MS }, { parse: slow });
      await sleep(4_000);
      const during = await t.app.database.db.selectFrom('incoming_servers').select('fetch_lease_until').where('id', '=', id).executeTakeFirstOrThrow();
      const now = Date.now();
      assert.deepEqual(await fetching, { fetched: 5, stored: 5, duplicates: 0, quarantined: 0 });
      assert.ok(now < started + 5_000, 'read while the parses were still running');
      assert.ok(Number(during.fetch_lease_until) > now, `the lease (until ${Number(during.fetch_lease_until) - started} ms) was renewed during the wait (read at ${now - started} ms)`);
    });

    it('quarantines a message past the budget and one that crashes its worker with their bytes, stores the rest once, and the fetch goes on', async () => {
      const user = `budget-${dialect}@example.test`;
      const id = await confirmed(user);
      const ordinary = corpus(30, user).map((m) => m.raw);
      const stalled = marked(user, 'blocks for ever', STALL);
      const stalledLarge = marked(user, 'large and blocks for ever', STALL, 2 * WORKER_PARSE_MAX_BYTES);
      const crashing = marked(user, 'crashes its worker', CRASH);
      const mailbox = [...ordinary.slice(0, 10), stalled, ...ordinary.slice(10, 20), crashing, ...ordinary.slice(20, 25), stalledLarge, ...ordinary.slice(25)];
      deliverToMaildir(peers.dovecot, user, mailbox);
      const uids = [...(await seenByUid(peers.dovecot, user, PASSWORD)).keys()].sort((a, b) => a - b);
      assert.equal(uids.length, mailbox.length);

      const db = t.app.database.db;
      const seenBeforeStored: number[] = [];
      const connect = readerWith((real) => ({
        async markSeen(list) {
          const stored = new Set((await db.selectFrom('messages').select('uid').where('server_id', '=', id).where('uid', 'in', list).execute()).map((r) => Number(r.uid)));
          seenBeforeStored.push(...list.filter((u) => !stored.has(u)));
          return real.markSeen(list);
        },
      }));
      // One worker: every message queues on it, so the ones behind a stalled parse are really on the worker that is terminated.
      const pool = new ParsePool(1, { budgetMs: BUDGET_MS, testHooks: { blockOn: STALL, crashOn: CRASH } });
      after(() => pool.close());
      const fetch = async () => t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(id), { batchSize: 50 }, { connect, parse: pool.parse });

      const started = Date.now();
      const counts = await fetch();
      const elapsed = Date.now() - started;
      assert.deepEqual(counts, { fetched: mailbox.length, stored: ordinary.length, duplicates: 0, quarantined: 3 });
      assert.ok(elapsed >= 2 * BUDGET_MS, `the budget was waited out twice (${elapsed} ms)`);
      assert.equal(pool.overruns, 2, 'two workers terminated at the budget');
      assert.equal(pool.crashes, PARSE_CRASHES_TOLERATED, 'and the crashing message got one more worker');
      // Every ordinary message and the three header sections (for quarantine's fields), all on a worker: none
      // was parsed on this thread, where the blocking one would have hung the fetch for good.
      assert.equal(pool.workerParses, ordinary.length + 3);

      const rows = await db.selectFrom('messages').select(['id', 'uid', 'quarantined', 'parse_error', 'subject', 'raw_sha256', 'size']).where('server_id', '=', id).orderBy('uid').execute();
      assert.deepEqual(rows.map((r) => Number(r.uid)), uids, 'each UID exactly one row');
      const byUid = new Map(rows.map((r) => [Number(r.uid), r]));
      const at = (raw: Buffer) => byUid.get(uids[mailbox.indexOf(raw)]!)!;
      for (const [raw, reason, subject] of [
        [stalled, overBudgetReason(BUDGET_MS), 'blocks for ever'],
        [stalledLarge, overBudgetReason(BUDGET_MS), 'large and blocks for ever'],
      ] as const) {
        const row = at(raw);
        assert.equal(row.quarantined, 1);
        assert.equal(row.parse_error, reason);
        assert.match(row.parse_error, /^Parsing took longer than 2 s .*the raw message is kept/);
        assert.equal(row.subject, subject, 'its header fields are shown');
        assert.equal(row.size, raw.length);
        assert.ok((await api('GET', `/api/v1/messages/${row.id}/raw`)).raw.equals(raw), 'the raw bytes are kept, unchanged');
      }
      const crashed = at(crashing);
      assert.equal(crashed.quarantined, 1);
      assert.match(crashed.parse_error!, new RegExp(`^${crashedReason('').split('(')[0]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      assert.match(crashed.parse_error!, /test hook/);
      assert.equal(crashed.subject, 'crashes its worker');
      assert.ok((await api('GET', `/api/v1/messages/${crashed.id}/raw`)).raw.equals(crashing));
      assert.equal(rows.filter((r) => r.quarantined === 0).length, ordinary.length, 'the messages queued behind them were stored, once each');
      assert.match(t.logs(), /quarantined: Parsing took longer than 2 s/);

      const seen = await seenByUid(peers.dovecot, user, PASSWORD);
      assert.deepEqual([...seen].filter(([, s]) => !s), [], 'every message is \\Seen');
      assert.deepEqual(seenBeforeStored, [], '\\Seen was set only on UIDs already stored');
      assert.equal((await listed(`serverId=${id}&quarantined=true`)).length, 3, 'the quarantine lists them');

      assert.deepEqual(await fetch(), { fetched: 0, stored: 0, duplicates: 0, quarantined: 0 }, 'a second fetch finds nothing new');
      // Fetched all over again (as after a cursor reset): the quarantined ones are recognised by their bytes.
      await db.updateTable('incoming_servers').set({ cursor_last_uid: 0, cursor_seen_uid: 0 }).where('id', '=', id).execute();
      assert.deepEqual(await fetch(), { fetched: mailbox.length, stored: 0, duplicates: mailbox.length, quarantined: 0 }, 'nothing is stored twice');
    });
  });
}
