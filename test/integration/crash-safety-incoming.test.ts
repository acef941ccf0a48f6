// A real `juniper fetch` process SIGKILLed 10 times at seeded moments while it fetches a large
// mailbox from a real Dovecot, restarted each time once its (short) lease has run out. After every kill:
// nothing stored is lost and nothing unstored is \Seen. At the end every message is stored exactly once and
// \Seen. On SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { cliEnv } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';
import { corpus, deliverAll, incomingApi, seenByUid } from '../helpers/incoming.js';
import { seededRandom, sleep, startJuniper, testSeed, until, type JuniperProcess } from '../helpers/processes.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const PASSWORD = 'imap-secret';
// The runs fetch batches of 50 (JUNIPER_FETCH_BATCH_SIZE), stored in groups of 25 per transaction, so a run
// stores at least one group before its kill and 1,000 messages leave the tenth kill still mid-fetch (the
// default batches of 200 would need several times the messages for the same number of kills).
const MESSAGES = 1000;
const KILLS = 10;
const mailbox = (dialect: string) => `crash-fetch-${dialect}@example.test`;

let idp: IdentityServer;
let dovecot: Dovecot;
before(async () => {
  idp = await startIdentityServer({});
  dovecot = await startDovecot({ identityUrl: idp.url, users: Object.fromEntries(dialects.map((d) => [mailbox(d), PASSWORD])) });
});
after(async () => {
  await dovecot.stop();
  await idp.stop();
});

// Both dialects at once: a run is mostly waiting (process start, lease expiry), not computing.
describe('crash safety of fetching', { concurrency: true }, () => {
  for (const dialect of dialects) {
    describe(`juniper fetch SIGKILLed mid-run (${dialect})`, () => {
      let t: TestApp;
      let http: FastifyInstance;
      let key: string;
      const living = new Set<JuniperProcess>();
      const { confirmed } = incomingApi(() => ({ http, key }), () => dovecot, PASSWORD);

      before(async () => {
        t = await startTestApp(dialect);
        http = await t.app.http();
        key = (await t.createUser('admin', 'admin')).apiKey;
      });
      after(async () => {
        await Promise.all([...living].map((p) => p.kill('SIGKILL')));
        await t.close();
      });

      it(`${KILLS} SIGKILLs during a ${MESSAGES}-message fetch: nothing stored lost, nothing unstored \\Seen, all stored once and \\Seen at the end`, async () => {
        const started = Date.now();
        const rng = seededRandom(testSeed());
        const user = mailbox(dialect);
        const id = await confirmed(user);
        await deliverAll(dovecot, user, corpus(MESSAGES, user).map((m) => m.raw), 16);
        const delivered = Date.now();
        const db = t.config.database;
        const env = { ...cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), JUNIPER_LOG_LEVEL: 'warn', JUNIPER_FETCH_LEASE_SECONDS: '1', JUNIPER_FETCH_BATCH_SIZE: '50' };
        const { db: kdb } = t.app.database;
        const storedUids = async () => (await kdb.selectFrom('messages').select('uid').where('server_id', '=', id).execute()).map((r) => r.uid);
        // Polled every 25 ms while a run fetches: a count, not up to 1,000 rows each time.
        const storedCount = async () => Number((await kdb.selectFrom('messages').select((eb) => eb.fn.countAll().as('n')).where('server_id', '=', id).executeTakeFirstOrThrow()).n);
        const fetch = () => {
          const p = startJuniper(env, ['fetch', String(id)]);
          living.add(p);
          void p.exit.then(() => living.delete(p));
          return p;
        };
        /** The dead run's lease has run out, so the next run is not refused with 409. */
        const leaseFree = async () => {
          const s = await kdb.selectFrom('incoming_servers').select('fetch_lease_until').where('id', '=', id).executeTakeFirstOrThrow();
          return s.fetch_lease_until === null || s.fetch_lease_until < Date.now();
        };

        let storedBefore = new Set<number | null>();
        const storedAtKill: number[] = [];
        const unmarkedAtKill: number[] = [];
        for (let k = 0; k < KILLS; k++) {
          await until(leaseFree, 10_000, () => 'the killed run’s fetch lease to expire');
          const run = fetch();
          const target = storedBefore.size + rng.int(15, 40);
          await until(async () => (await storedCount()) >= target || run.child.exitCode !== null, 30_000, () => `${target} stored messages; ${run.output()}`);
          await sleep(rng.int(0, 30));
          const exit = await run.kill('SIGKILL');
          assert.equal(exit.signal, 'SIGKILL', `run ${k + 1} was still fetching when killed (code ${exit.code}):\n${run.output()}`);

          const stored = await storedUids();
          const storedSet = new Set(stored);
          assert.equal(storedSet.size, stored.length, 'no UID stored twice');
          for (const uid of storedBefore) assert.ok(storedSet.has(uid), `UID ${uid} was stored before kill ${k + 1} and is gone`);
          const seen = [...(await seenByUid(dovecot, user, PASSWORD))].filter(([, isSeen]) => isSeen).map(([uid]) => uid);
          for (const uid of seen) assert.ok(storedSet.has(uid), `UID ${uid} is \\Seen after kill ${k + 1} but not stored`);
          storedAtKill.push(stored.length);
          unmarkedAtKill.push(stored.length - seen.length);
          storedBefore = storedSet;
        }
        assert.ok(storedBefore.size < MESSAGES, `the kills fell during the fetch (${storedBefore.size} of ${MESSAGES} stored)`);

        await until(leaseFree, 10_000, () => 'the last killed run’s fetch lease to expire');
        const last = fetch();
        const exit = await last.exit;
        assert.equal(exit.code, 0, `the final run completes:\n${last.output()}`);

        const rows = await kdb.selectFrom('messages').select(['uid', 'dedupe_key']).where('server_id', '=', id).execute();
        assert.equal(rows.length, MESSAGES, 'every message stored');
        assert.equal(new Set(rows.map((r) => r.uid)).size, MESSAGES, 'each UID stored once');
        assert.equal(new Set(rows.map((r) => r.dedupe_key)).size, MESSAGES, 'each message stored once');
        const flags = await seenByUid(dovecot, user, PASSWORD);
        assert.equal(flags.size, MESSAGES);
        assert.deepEqual(new Set(rows.map((r) => r.uid)), new Set(flags.keys()), 'the stored UIDs are the mailbox’s');
        assert.ok([...flags.values()].every(Boolean), 'every message \\Seen');
        console.log(
          `[crash-safety fetch ${dialect}] seed ${rng.seed}: ${MESSAGES} messages, ${KILLS} SIGKILLs of juniper fetch; stored at each kill ${storedAtKill.join(',')}; ` +
            `stored but not yet \\Seen at each kill ${unmarkedAtKill.join(',')}; delivery ${((delivered - started) / 1000).toFixed(1)} s, fetch phase ${((Date.now() - delivered) / 1000).toFixed(1)} s`,
        );
      });
    });
  }
});
