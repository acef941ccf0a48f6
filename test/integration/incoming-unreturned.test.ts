// A message the IMAP server lists but never returns (a damaged item on the server) must not hold the mailbox
// for ever: on both databases, against a real Dovecot whose reader withholds one message, the runs stop before
// it and say so, and the third run in a row skips it with a placeholder in quarantine; the mail after it flows.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { UNRETURNED_SKIP_AFTER_RUNS } from '../../src/incoming/fetcher.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpus, deliverAll, imapPeersForFile, incomingApi, readerWith, seenByUid } from '../helpers/incoming.js';

const PASSWORD = 'imap-secret';
const users = ['headers', 'nothing', 'returns', 'alone'].flatMap((u) => dialects.map((d) => `${u}-${d}@example.test`));
const peers = imapPeersForFile(users, PASSWORD);

for (const dialect of dialects) {
  describe(`a message the server lists but never returns (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    const { api, confirmed } = incomingApi(() => ({ http, key }), () => peers.dovecot, PASSWORD);
    const mailbox = (name: string) => `${name}-${dialect}@example.test`;

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
    });
    after(async () => t.close());

    /** Ten messages; the reader never returns the 4th (UID `withheld`), and its header too when `headers` is false. */
    const setUp = async (name: string, headers: boolean) => {
      const user = mailbox(name);
      const id = await confirmed(user);
      const messages = corpus(10, user);
      await deliverAll(peers.dovecot, user, messages.map((m) => m.raw), 1);
      const uids = [...(await seenByUid(peers.dovecot, user, PASSWORD)).keys()].sort((a, b) => a - b);
      const withheld = uids[3]!;
      const faulty = readerWith((real) => ({
        fetch: async function* (list) {
          for await (const m of real.fetch(list)) if (m.uid !== withheld) yield m;
        },
        ...(headers ? {} : { fetchHeaders: async function* (list, max) {
          for await (const h of real.fetchHeaders(list, max)) if (h.uid !== withheld) yield h;
        } }),
      }));
      const fetch = async () => t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(id), { batchSize: 50 }, { connect: faulty });
      return { user, id, withheld, fetch };
    };
    const lastError = async (id: number) => String((await api('GET', `/api/v1/incoming-servers/${id}`)).body.lastError);
    const rowOf = (id: number, uid: number) => t.app.database.db.selectFrom('messages').selectAll().where('server_id', '=', id).where('uid', '=', uid).executeTakeFirst();
    const storedCount = async (id: number) => (await t.app.database.db.selectFrom('messages').select('id').where('server_id', '=', id).execute()).length;

    /** The runs before the skip: each stores nothing past the withheld UID and says so. */
    const stopsBefore = async (s: Awaited<ReturnType<typeof setUp>>) => {
      for (let run = 1; run < UNRETURNED_SKIP_AFTER_RUNS; run++) {
        const counts = await s.fetch();
        assert.equal(counts.stored, run === 1 ? 3 : 0, `run ${run}`);
        assert.equal(await rowOf(s.id, s.withheld), undefined, `run ${run}: nothing stored in its place yet`);
        assert.match(await lastError(s.id), new RegExp(`stopped before message UID ${s.withheld}: the server listed it but did not return it.*skips it .* after ${UNRETURNED_SKIP_AFTER_RUNS} runs in a row`));
        assert.equal((await seenByUid(peers.dovecot, s.user, PASSWORD)).get(s.withheld), false, 'not marked read');
      }
    };

    it(`stops before it for ${UNRETURNED_SKIP_AFTER_RUNS - 1} runs, then quarantines its header section in its place; the rest follows`, async () => {
      const s = await setUp('headers', true);
      await stopsBefore(s);
      const skipRun = await s.fetch();
      assert.deepEqual(skipRun, { fetched: 1, stored: 0, duplicates: 0, quarantined: 1 });
      const row = await rowOf(s.id, s.withheld);
      assert.ok(row, 'a placeholder is stored under its UID');
      assert.equal(row.quarantined, 1);
      assert.match(String(row.parse_error), new RegExp(`listed message UID ${s.withheld} but did not return it in ${UNRETURNED_SKIP_AFTER_RUNS} fetches in a row.*stays in the mailbox on the server`));
      // The header section the server did give: who sent it and what it is about, and a downloadable original.
      assert.match(String(row.from_header), /customer@client\.test/);
      assert.notEqual(row.subject, '');
      assert.notEqual(row.raw_sha256, null);
      assert.match(await lastError(s.id), new RegExp(`skipped message UID ${s.withheld}: .*placeholder is in quarantine`));

      // The next run, the server still faulty, goes on after it: nothing waits any more, and the error clears.
      const rest = await s.fetch();
      assert.deepEqual(rest, { fetched: 6, stored: 6, duplicates: 0, quarantined: 0 });
      assert.equal(await storedCount(s.id), 10);
      assert.equal((await api('GET', `/api/v1/incoming-servers/${s.id}`)).body.lastError, null);
      assert.ok([...(await seenByUid(peers.dovecot, s.user, PASSWORD)).values()].every(Boolean));
    });

    it('keeps an empty placeholder with the reason when the server does not give its header either', async () => {
      const s = await setUp('nothing', false);
      await stopsBefore(s);
      assert.deepEqual(await s.fetch(), { fetched: 1, stored: 0, duplicates: 0, quarantined: 1 });
      const row = await rowOf(s.id, s.withheld);
      assert.ok(row);
      assert.equal(row.quarantined, 1);
      assert.equal(row.raw_sha256, null, 'no original to download: the server never gave one');
      assert.match(String(row.parse_error), /did not return it in \d+ fetches in a row/);
      assert.equal((await s.fetch()).stored, 6);
      assert.equal(await storedCount(s.id), 10);
    });

    it('stores a message that comes only when asked for alone (a server that fails it in a set) as usual, with no placeholder', async () => {
      const s = await setUp('alone', true);
      const inSetsOnly = readerWith((real) => ({
        fetch: async function* (list) {
          for await (const m of real.fetch(list)) if (m.uid !== s.withheld || list.length === 1) yield m;
        },
      }));
      const first = await t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(s.id), { batchSize: 50 }, { connect: inSetsOnly });
      assert.deepEqual(first, { fetched: 4, stored: 4, duplicates: 0, quarantined: 0 });
      assert.equal((await rowOf(s.id, s.withheld))?.quarantined, 0, 'stored whole');
      assert.equal((await api('GET', `/api/v1/incoming-servers/${s.id}`)).body.lastError, null);
      assert.equal((await t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(s.id), { batchSize: 50 }, { connect: inSetsOnly })).stored, 6);
      assert.equal(await storedCount(s.id), 10);
      assert.ok([...(await seenByUid(peers.dovecot, s.user, PASSWORD)).values()].every(Boolean));
    });

    it('counts only runs in a row: a run that gets the message stores it whole and forgets the count', async () => {
      const s = await setUp('returns', true);
      assert.equal((await s.fetch()).stored, 3);
      // The server recovers: the message comes back whole, nothing is quarantined, and the count is forgotten.
      const healthy = await t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(s.id));
      assert.deepEqual(healthy, { fetched: 7, stored: 7, duplicates: 0, quarantined: 0 });
      assert.equal((await rowOf(s.id, s.withheld))?.quarantined, 0);
      const server = await t.app.services.incomingServers.get(s.id);
      assert.equal(server.unreturned_uid, null);
      assert.equal(server.unreturned_runs, 0);
    });
  });
}
