// A message whose FETCH breaks the run (the connection drops, imapflow throws, the process dies in it) must
// not hold its mailbox for ever. On both databases, against a real Dovecot: the FETCH is noted before it is
// sent, so the next run knows it never finished even when the process died; it fetches those messages one at
// a time (the good ones are stored), counts the runs that fail on one alone, and after the third quarantines a
// placeholder in its place and fetches the rest. A run that fails once and then works stores it as usual and
// forgets the count; a run stopped by a signal counts nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { FAILED_FETCH_SKIP_AFTER_RUNS } from '../../src/incoming/fetcher.js';
import type { ConnectReader } from '../../src/incoming/mailbox-reader.js';
import { cliEnv, projectRoot } from '../helpers/cli.js';
import { moduleArgs } from '../helpers/project-root.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpus, deliverAll, imapPeersForFile, incomingApi, readerWith, seenByUid } from '../helpers/incoming.js';

const PASSWORD = 'imap-secret';
const users = ['throws', 'killed', 'transient', 'stopped', 'outage', 'last'].flatMap((u) => dialects.map((d) => `${u}-${d}@example.test`));
const peers = imapPeersForFile(users, PASSWORD);
const N = FAILED_FETCH_SKIP_AFTER_RUNS;

/** The real reader, whose FETCH fails (as a dropped connection does) when `uid` arrives, while `fails()` says so. */
const failingAt = (uid: number, fails: () => boolean = () => true): ConnectReader =>
  readerWith((real) => ({
    fetch: async function* (list) {
      for await (const m of real.fetch(list)) {
        if (m.uid === uid && fails()) throw Object.assign(new Error('Connection not available'), { code: 'NoConnection' });
        yield m;
      }
    },
  }));

for (const dialect of dialects) {
  describe(`a message whose FETCH breaks the run (${dialect})`, () => {
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

    /** Ten messages; the 4th (UID `bad`) is the one whose FETCH fails. */
    const setUp = async (name: string) => {
      const user = mailbox(name);
      const id = await confirmed(user);
      await deliverAll(peers.dovecot, user, corpus(10, user).map((m) => m.raw), 1);
      const uids = [...(await seenByUid(peers.dovecot, user, PASSWORD)).keys()].sort((a, b) => a - b);
      const fetch = async (connect?: ConnectReader, signal?: AbortSignal) =>
        t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(id), { batchSize: 50, ...(signal ? { signal } : {}) }, connect ? { connect } : {});
      return { user, id, uids, bad: uids[3]!, fetch };
    };
    const server = (id: number) => t.app.services.incomingServers.get(id);
    const lastError = async (id: number) => String((await api('GET', `/api/v1/incoming-servers/${id}`)).body.lastError);
    const rowOf = (id: number, uid: number) => t.app.database.db.selectFrom('messages').selectAll().where('server_id', '=', id).where('uid', '=', uid).executeTakeFirst();
    const storedUids = async (id: number) => (await t.app.database.db.selectFrom('messages').select('uid').where('server_id', '=', id).orderBy('uid').execute()).map((r) => Number(r.uid));
    const failedAlone = (uid: number, runs: number) =>
      new RegExp(`failed at message UID ${uid}, fetched alone, in ${runs} runs? in a row.*${runs >= N ? 'the next fetch skips it' : `skips it \\(keeping a placeholder in quarantine\\) after ${N} runs in a row`}.*stays in the mailbox on the server`);

    /** After the runs that fail: X is quarantined in one run that fetches the rest; all ten stored once, all \Seen. */
    const skipsAndFlows = async (s: Awaited<ReturnType<typeof setUp>>, connect: () => Promise<unknown>) => {
      const skipRun = await connect();
      assert.deepEqual(skipRun, { fetched: 7, stored: 6, duplicates: 0, quarantined: 1 });
      const row = await rowOf(s.id, s.bad);
      assert.ok(row, 'a placeholder is stored under its UID');
      assert.equal(row.quarantined, 1);
      assert.match(String(row.parse_error), new RegExp(`Fetching message UID ${s.bad} failed ${N} runs in a row with it fetched alone.*stays in the mailbox on the server`));
      // The header-only FETCH worked: who sent it and what it is about, and a downloadable original.
      assert.match(String(row.from_header), /customer@client\.test/);
      assert.notEqual(row.raw_sha256, null);
      assert.match(await lastError(s.id), new RegExp(`skipped message UID ${s.bad}: fetching it alone failed ${N} runs in a row. A placeholder is in quarantine`));
      assert.deepEqual(await storedUids(s.id), s.uids, 'every message once');
      assert.ok([...(await seenByUid(peers.dovecot, s.user, PASSWORD)).values()].every(Boolean));
      const after = await server(s.id);
      assert.deepEqual([after.attempt_first_uid, after.attempt_last_uid, after.attempt_failed_runs], [null, null, 0]);
      // Nothing waits any more: the next run (the server still faulty) finds nothing new, and the error clears.
      assert.deepEqual(await s.fetch(failingAt(s.bad)), { fetched: 0, stored: 0, duplicates: 0, quarantined: 0 });
      assert.equal((await api('GET', `/api/v1/incoming-servers/${s.id}`)).body.lastError, null);
    };

    it(`a FETCH that fails at one message: the good ones before it are stored, it fails alone ${N} runs, then is quarantined and the rest flows`, async () => {
      const s = await setUp('throws');
      await assert.rejects(s.fetch(failingAt(s.bad)), /Connection not available/);
      assert.deepEqual(await storedUids(s.id), s.uids.slice(0, 3), 'the messages before it in its batch are stored');
      assert.match(await lastError(s.id), new RegExp(`failed: Unexpected error: Connection not available\\. The messages from UID ${s.uids[0]} to ${s.uids[9]} not stored yet are fetched one at a time by the next fetch`));
      for (let runs = 1; runs <= N; runs++) {
        await assert.rejects(s.fetch(failingAt(s.bad)), /Connection not available/);
        assert.match(await lastError(s.id), failedAlone(s.bad, runs), `run ${runs + 1}`);
        assert.equal((await server(s.id)).attempt_failed_runs, runs);
        assert.deepEqual(await storedUids(s.id), s.uids.slice(0, 3), 'nothing stored in its place yet');
        assert.equal((await seenByUid(peers.dovecot, s.user, PASSWORD)).get(s.bad), false, 'not marked read');
      }
      await skipsAndFlows(s, () => s.fetch(failingAt(s.bad)));
      // Error codes and UIDs in the log, never the message.
      assert.doesNotMatch(t.logs(), /Plain body|customer@client\.test/);
    });

    it('a process killed in the FETCH counts too: the next runs fetch one at a time, and the message is skipped after it killed three', async () => {
      const s = await setUp('killed');
      const db = t.config.database;
      const env = { ...cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), JUNIPER_LOG_LEVEL: 'warn' };
      const run = async () => {
        // The dead run's lease (1 s, set by the child) has to run out first.
        for (;;) {
          const lease = (await server(s.id)).fetch_lease_until;
          if (lease === null || Number(lease) < Date.now()) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const child = spawn(process.execPath, [...moduleArgs(import.meta.url, 'test/helpers/fetch-dies-at'), String(s.id), String(s.bad)], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (out += c.toString()));
        const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, sig) => resolve([c, sig])));
        return { code, signal, out };
      };
      const first = await run();
      assert.equal(first.signal, 'SIGKILL', first.out);
      // Nothing was left alive to record the failure; the note made before the FETCH was.
      const noted = await server(s.id);
      assert.deepEqual([noted.attempt_first_uid, noted.attempt_last_uid, noted.attempt_failed_runs], [s.uids[0], s.uids[9], 0]);
      for (let runs = 1; runs <= N; runs++) {
        const r = await run();
        assert.equal(r.signal, 'SIGKILL', r.out);
        // The good ones of the killed batch were fetched alone and stored by the first of these runs.
        assert.deepEqual(await storedUids(s.id), s.uids.slice(0, 3), `run ${runs + 1}`);
        assert.equal((await server(s.id)).attempt_failed_runs, runs);
        assert.match(await lastError(s.id), failedAlone(s.bad, runs));
      }
      const last = await run();
      assert.equal(last.code, 0, last.out);
      assert.deepEqual(JSON.parse(last.out.trim().split('\n').pop()!), { fetched: 7, stored: 6, duplicates: 0, quarantined: 1 });
      assert.equal((await rowOf(s.id, s.bad))?.quarantined, 1);
      assert.deepEqual(await storedUids(s.id), s.uids, 'every message once');
      assert.ok([...(await seenByUid(peers.dovecot, s.user, PASSWORD)).values()].every(Boolean));
    });

    it('a message whose FETCH fails and then works is stored as usual, and the count is forgotten', async () => {
      const s = await setUp('transient');
      let failures = 2;
      // What the server's page says when a run has fetched the failed batch one at a time and goes on with the
      // next batch (batches of 5: the 4th message fails in the first, so the second is fetched as usual).
      const afterIt: string[] = [];
      const flaky = readerWith((real) => ({
        fetch: async function* (list) {
          if (list.length > 1 && list[0]! > s.bad) afterIt.push(await lastError(s.id));
          for await (const m of real.fetch(list)) {
            if (m.uid === s.bad && failures-- > 0) throw Object.assign(new Error('Connection not available'), { code: 'NoConnection' });
            yield m;
          }
        },
      }));
      const fetch = async () => t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(s.id), { batchSize: 5 }, { connect: flaky });
      await assert.rejects(fetch(), /Connection not available/);
      await assert.rejects(fetch(), /Connection not available/);
      assert.equal((await server(s.id)).attempt_failed_runs, 1);
      assert.match(await lastError(s.id), failedAlone(s.bad, 1));
      assert.deepEqual(await fetch(), { fetched: 7, stored: 7, duplicates: 0, quarantined: 0 });
      // Each message fetched alone is noted with what to say should the run die with it; once they came, the
      // page no longer blames the last of them.
      assert.deepEqual(afterIt, ['null'], 'past the messages fetched alone, lastError no longer says one of them fails');
      assert.equal((await rowOf(s.id, s.bad))?.quarantined, 0, 'stored whole');
      const after = await server(s.id);
      assert.deepEqual([after.attempt_first_uid, after.attempt_last_uid, after.attempt_failed_runs], [null, null, 0]);
      assert.equal((await api('GET', `/api/v1/incoming-servers/${s.id}`)).body.lastError, null);
      assert.deepEqual(await storedUids(s.id), s.uids);
    });

    it('a server that fails every FETCH (throttled, read-only) sends no good message to quarantine: its failures are forgiven once another message cannot be fetched either', async () => {
      const s = await setUp('outage');
      let down = true;
      const outage = (): Error => Object.assign(new Error('Connection not available'), { code: 'NoConnection' });
      // From the 4th message on, every FETCH fails while the server is down, the header-only ones too.
      const faulty = readerWith((real) => ({
        fetch: async function* (list) {
          for await (const m of real.fetch(list)) {
            if (down && m.uid >= s.bad) throw outage();
            yield m;
          }
        },
        fetchHeaders: async function* (list, max) {
          if (down) throw outage();
          yield* real.fetchHeaders(list, max);
        },
      }));
      for (let run = 0; run <= N; run++) await assert.rejects(s.fetch(faulty), /Connection not available/);
      assert.equal((await server(s.id)).attempt_failed_runs, N, 'three runs failed with it alone');
      // The run that would skip it first asks for the next message's header: that fails too, so nothing is skipped.
      await assert.rejects(s.fetch(faulty), /Connection not available/);
      assert.equal(await rowOf(s.id, s.bad), undefined, 'no placeholder');
      assert.equal((await server(s.id)).attempt_failed_runs, 0, 'the failures were the server\'s: forgiven');
      assert.equal((await seenByUid(peers.dovecot, s.user, PASSWORD)).get(s.bad), false);
      // The server recovers: the message is stored whole, with the rest.
      down = false;
      assert.deepEqual(await s.fetch(faulty), { fetched: 7, stored: 7, duplicates: 0, quarantined: 0 });
      assert.equal((await rowOf(s.id, s.bad))?.quarantined, 0);
      assert.deepEqual(await storedUids(s.id), s.uids);
    });

    it('the last message of the mailbox is not skipped while no mail waits behind it; it is once a later one arrives', async () => {
      const s = await setUp('last');
      const last = s.uids[9]!;
      for (let run = 0; run <= N; run++) await assert.rejects(s.fetch(failingAt(last)), /Connection not available/);
      assert.equal((await server(s.id)).attempt_failed_runs, N);
      // Nothing behind it: the run ends without trying it or skipping it, and says what will happen.
      assert.deepEqual(await s.fetch(failingAt(last)), { fetched: 0, stored: 0, duplicates: 0, quarantined: 0 });
      assert.equal(await rowOf(s.id, last), undefined);
      assert.match(await lastError(s.id), new RegExp(`failed at message UID ${last}, fetched alone, in ${N} runs in a row.*no mail waits behind it yet: the first fetch that finds a later message skips it`));
      assert.equal((await server(s.id)).attempt_failed_runs, N, 'the count stands');
      await deliverAll(peers.dovecot, s.user, corpus(1, s.user).map((m) => m.raw), 1);
      assert.deepEqual(await s.fetch(failingAt(last)), { fetched: 2, stored: 1, duplicates: 0, quarantined: 1 });
      assert.equal((await rowOf(s.id, last))?.quarantined, 1);
    });

    it('a run stopped by a signal counts nothing: not before the failing message, not in a healthy batch', async () => {
      const s = await setUp('stopped');
      await assert.rejects(s.fetch(failingAt(s.bad)), /Connection not available/);
      await assert.rejects(s.fetch(failingAt(s.bad)), /Connection not available/);
      assert.equal((await server(s.id)).attempt_failed_runs, 1);
      // A graceful stop before the run reached it: the count stands (and lastError still says so).
      const stopped = new AbortController();
      stopped.abort();
      assert.equal((await s.fetch(failingAt(s.bad), stopped.signal)).fetched, 0);
      assert.equal((await server(s.id)).attempt_failed_runs, 1);
      assert.match(await lastError(s.id), failedAlone(s.bad, 1));
      // So it still takes N runs that fail alone, not fewer and not more.
      for (let runs = 2; runs <= N; runs++) {
        await assert.rejects(s.fetch(failingAt(s.bad)), /Connection not available/);
        assert.equal((await server(s.id)).attempt_failed_runs, runs);
      }
      await skipsAndFlows(s, () => s.fetch(failingAt(s.bad)));

      // A healthy run stopped by a signal mid-batch leaves no note behind that the next run would suspect.
      await deliverAll(peers.dovecot, s.user, corpus(6, s.user).map((m) => m.raw), 1);
      const midway = new AbortController();
      const counts = await t.app.services.incoming.fetchNow(await server(s.id), { batchSize: 50, groupSize: 1, signal: midway.signal, onProgress: (p) => p.fetched >= 2 && midway.abort() });
      assert.ok(counts.fetched >= 2 && counts.fetched < 6, JSON.stringify(counts));
      const after = await server(s.id);
      assert.deepEqual([after.attempt_first_uid, after.attempt_failed_runs], [null, 0]);
    });
  });
}
