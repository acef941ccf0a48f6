// A user's own IMAP server that is hostile or broken, against the real reader, Test & Confirm and the scheduler,
// on both databases, with Dovecot as the well-behaved server beside it: a server that keeps the connection busy
// with "* OK" lines and never answers SELECT fails at the step's deadline with a message saying so, without
// keeping its lease and while the same scheduler goes on fetching Dovecot; a SELECT answered with a 1 GB
// literal is refused at Test & Confirm before its bytes are read; 200,000 unseen messages are no RangeError. A
// scheduler stopped while such a server trickles in SELECT, or while a message comes slowly, resolves within
// seconds (not at the step's 2-minute deadline, nor when the transfer ends), keeps what came, marks nothing it did
// not store, records nothing against the server or the message, and leaves the server due at once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { FetchStopped } from '../../src/incoming/fetch-stopped.js';
import { DEFAULT_IMAP_TIMEOUTS, imapConnector } from '../../src/incoming/imap-reader.js';
import { FetchScheduler } from '../../src/incoming/scheduler.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpusMessage, deliverAll, incomingApi } from '../helpers/incoming.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startHostileImap, type HostileImap } from '../peers/hostile-imap.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const PASSWORD = 'imap-secret';
const users = ['slots', 'stops'].flatMap((u) => dialects.map((d) => `${u}-${d}@example.test`));
/** The deadline of one step in these tests (2 minutes by default). */
const DEADLINE_MS = 4000;
const timeouts = { ...DEFAULT_IMAP_TIMEOUTS, commandMs: DEADLINE_MS };

/**
 * How long a stop may take in these tests: well under the 2-minute step deadline (and the 25 s the slow message
 * takes), generous for a loaded CI machine; it takes a few database writes.
 */
const STOP_BOUND_MS = 10_000;

/** How long `p` took to settle, or undefined when it had not within `ms` (it goes on). */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<number | undefined> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const took = await Promise.race([p.then(() => Date.now() - t0), new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  clearTimeout(timer);
  return took;
}

async function until(what: string, check: () => Promise<boolean>, withinMs: number): Promise<void> {
  const end = Date.now() + withinMs;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`not within ${withinMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

let idp: IdentityServer;
let dovecot: Dovecot;
let hostile: HostileImap;
before(async () => {
  idp = await startIdentityServer({});
  dovecot = await startDovecot({ identityUrl: idp.url, users: Object.fromEntries(users.map((u) => [u, PASSWORD])) });
  hostile = await startHostileImap();
});
after(async () => {
  await hostile.stop();
  await dovecot.stop();
  await idp.stop();
});

describe('the IMAP reader against a hostile server', () => {
  const endpoint = () => ({ serverId: 1, name: 'hostile', host: '127.0.0.1', port: hostile.port, security: 'none' as const, allowSelfSigned: false, maxMessageBytes: 25 * 1024 * 1024 });
  const credentials = { kind: 'password' as const, user: 'u', pass: 'p' };

  it('finds the lowest of 200,000 unseen UIDs (a first fetch of a big mailbox)', { timeout: 30_000 }, async () => {
    hostile.select = 'normal';
    // Highest first, so the lowest is the last one listed.
    hostile.unseen = Array.from({ length: 200_000 }, (_, i) => 200_010 - i);
    try {
      const reader = await imapConnector(timeouts)(endpoint(), credentials);
      try {
        await reader.open('INBOX');
        assert.equal(await reader.firstUnseen(), 11);
      } finally {
        await reader.close();
      }
    } finally {
      hostile.unseen = [];
    }
  });

  it('gives up a SELECT the server answers only with "* OK" lines at the deadline, closing the connection', { timeout: 30_000 }, async () => {
    hostile.select = 'trickle';
    hostile.trickleMs = 200;
    try {
      const reader = await imapConnector(timeouts)(endpoint(), credentials);
      const closedBefore = hostile.closed;
      const t0 = Date.now();
      await assert.rejects(reader.open('INBOX'), (err: Error & { code?: string; stage?: string }) => {
        assert.equal(err.code, 'JUNIPER_ERR_IMAP');
        assert.equal(err.stage, 'folder');
        assert.equal(err.message, `The IMAP server 127.0.0.1:${hostile.port} did not finish SELECT within 4 s: the server kept the connection open without answering, so Juniper closed it; the next fetch tries again.`);
        return true;
      });
      const took = Date.now() - t0;
      assert.ok(took >= DEADLINE_MS - 50 && took < DEADLINE_MS + 2000, `failed after ${took} ms`);
      await reader.close();
      await until('the server sees the connection closed', async () => hostile.closed > closedBefore, 2000);
    } finally {
      hostile.select = 'normal';
    }
  });

  it('gives up a FETCH that only gets "* OK" lines after the step deadline, and lets a large message over a slow but working link take longer', { timeout: 30_000 }, async () => {
    hostile.select = 'normal';
    hostile.unseen = [5];
    hostile.fetch = 'trickle';
    try {
      const reader = await imapConnector(timeouts)(endpoint(), credentials);
      try {
        await reader.open('INBOX');
        const t0 = Date.now();
        await assert.rejects(
          (async () => {
            for await (const m of reader.fetch([5])) void m;
          })(),
          (err: Error) => {
            assert.equal(err.message, `The IMAP server 127.0.0.1:${hostile.port} did not finish FETCH of 1 message within ${DEADLINE_MS / 1000} s: the server kept the connection open without answering, so Juniper closed it; the next fetch tries again.`);
            return true;
          },
        );
        const took = Date.now() - t0;
        // A line now and then is no progress: given up within the step's deadline (checked every half second).
        assert.ok(took >= DEADLINE_MS - 50 && took < DEADLINE_MS + 1500, `failed after ${took} ms`);
      } finally {
        await reader.close();
      }
      // 1 MB in 64 KB pieces every 400 ms (160 KB/s, above the slowest rate Juniper waits for): 6.4 s, longer
      // than the deadline, and it comes whole.
      hostile.fetch = 'slow';
      hostile.slowBytes = 1024 * 1024;
      hostile.trickleMs = 400;
      const slow = await imapConnector(timeouts)(endpoint(), credentials);
      try {
        await slow.open('INBOX');
        const t0 = Date.now();
        const got: number[] = [];
        for await (const m of slow.fetch([5])) got.push(m.source.length);
        assert.ok(Date.now() - t0 > DEADLINE_MS, 'the transfer took longer than the step deadline');
        assert.equal(got.length, 1);
        assert.ok(got[0]! > 1024 * 1024, 'the whole message');
      } finally {
        await slow.close();
      }
      hostile.fetch = 'normal';
      const again = await imapConnector(timeouts)(endpoint(), credentials);
      try {
        await again.open('INBOX');
        const got = [];
        for await (const m of again.fetch([5])) got.push(m.uid);
        assert.deepEqual(got, [5]);
      } finally {
        await again.close();
      }
    } finally {
      hostile.fetch = 'normal';
      hostile.trickleMs = 200;
      hostile.unseen = [];
    }
  });
});

for (const dialect of dialects) {
  describe(`hostile incoming servers beside Dovecot (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    const { api, confirmed, createServer } = incomingApi(() => ({ http, key }), () => dovecot, PASSWORD);
    const storedOf = async (id: number) => (await t.app.database.db.selectFrom('messages').select('uid').where('server_id', '=', id).execute()).length;
    const row = (id: number) => t.app.database.db.selectFrom('incoming_servers').select(['last_error', 'fetch_lease_until', 'fetch_lease_owner']).where('id', '=', id).executeTakeFirstOrThrow();

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin')).apiKey;
    });
    after(async () => t.close());

    it('a server stuck in SELECT fails at the deadline without renewing its lease, and the same scheduler fetches Dovecot meanwhile', { timeout: 60_000 }, async () => {
      hostile.select = 'normal';
      const slowName = `slow-${dialect}`;
      const slow = await confirmed(slowName, { port: hostile.port, security: 'none', allowSelfSigned: false });
      const user = `slots-${dialect}@example.test`;
      const fast = await confirmed(user);
      await deliverAll(dovecot, user, [corpusMessage('plain', user, 1).raw]);
      hostile.select = 'trickle';
      const closedBefore = hostile.closed;

      // Two slots: the slow server takes one for the whole deadline; Dovecot must get the other one each time it is due.
      const scheduler = new FetchScheduler(t.app.services.incoming.fetcher({ connect: imapConnector(timeouts) }), t.app.services.fetchState, t.app.logger, { tickMs: 100, concurrency: 2 });
      const t0 = Date.now();
      scheduler.start();
      try {
        await until('Dovecot\'s first message is stored', async () => (await storedOf(fast)) === 1, 3000);
        await until('the slow server is in its fetch', async () => hostile.selects > 0 && (await row(slow)).fetch_lease_owner !== null, 3000);
        const lease = String((await row(slow)).fetch_lease_until);

        // Dovecot has new mail and is due again (its interval made to have passed) while the slow fetch hangs.
        await deliverAll(dovecot, user, [corpusMessage('plain', user, 2).raw]);
        await t.app.database.db.updateTable('incoming_servers').set({ last_fetch_at: 0 }).where('id', '=', fast).execute();
        await until('Dovecot\'s second message is stored', async () => (await storedOf(fast)) === 2, DEADLINE_MS);
        const during = await row(slow);
        assert.ok(Date.now() - t0 < DEADLINE_MS, 'Dovecot was fetched again before the slow fetch ended');
        assert.equal(during.last_error, null, 'the slow fetch is still in SELECT');
        assert.equal(String(during.fetch_lease_until), lease, 'the "* OK" lines did not renew the lease');

        // The failure is recorded, then the lease released: two statements, so both are waited for.
        await until('the slow fetch fails and gives its lease back', async () => {
          const r = await row(slow);
          return r.last_error !== null && r.fetch_lease_owner === null;
        }, DEADLINE_MS + 3000);
        const took = Date.now() - t0;
        assert.ok(took >= DEADLINE_MS - 50 && took < DEADLINE_MS + 3000, `the slow fetch failed after ${took} ms`);
        const failed = await row(slow);
        assert.equal(failed.last_error, `Fetching "${slowName}" failed: The IMAP server 127.0.0.1:${hostile.port} did not finish SELECT within 4 s: the server kept the connection open without answering, so Juniper closed it; the next fetch tries again.`);
        assert.equal(failed.fetch_lease_owner, null, 'the lease is released');
        assert.ok(hostile.closed > closedBefore, 'the connection was closed');
        const shown = (await api('GET', `/api/v1/incoming-servers/${slow}`)).body;
        assert.equal(shown.lastError, failed.last_error);
      } finally {
        await scheduler.stop();
        hostile.select = 'normal';
      }
    });

    it('Test & Confirm against a server answering SELECT with a 1 GB literal refuses it at once, unread, saying why', { timeout: 60_000 }, async () => {
      hostile.select = 'normal';
      const id = await createServer(`big-${dialect}`, { port: hostile.port, security: 'none', allowSelfSigned: false });
      hostile.select = 'literal';
      const writtenBefore = hostile.literalBytesWritten;
      const closedBefore = hostile.closed;
      const t0 = Date.now();
      try {
        const test = await api('POST', `/api/v1/incoming-servers/${id}/test`);
        assert.equal(test.status, 200, test.text);
        assert.equal(test.body.ok, false, test.text);
        assert.equal(test.body.stage, 'folder');
        const message = String(test.body.message);
        assert.match(message, new RegExp(`^127\\.0\\.0\\.1:${hostile.port} sent a response larger than Juniper accepts \\(Literal size 1048576000 exceeds maximum allowed size of 1048576 bytes\\), so the connection was closed without reading it\\.`));
        assert.match(message, /Test & Confirm, which reads no message, accepts 2 MB/);
        assert.doesNotMatch(message, /Folder names are case-sensitive/);
        assert.ok(Date.now() - t0 < 5000, `answered after ${Date.now() - t0} ms`);
        await until('the server sees the connection closed', async () => hostile.closed > closedBefore, 3000);
        // What the kernel's socket buffers took, not the 64 MB the server had to send (nor the 1 GB announced).
        const written = hostile.literalBytesWritten - writtenBefore;
        assert.ok(written < 16 * 1024 * 1024, `${written} bytes of the literal were written`);
        const server = (await api('GET', `/api/v1/incoming-servers/${id}`)).body;
        assert.equal(server.state, 'draft', 'not confirmed');
      } finally {
        hostile.select = 'normal';
      }
    });

    /** Where fetching a server stands: its outcome, lease, cursor and the note of a FETCH that did not finish. */
    const standing = (id: number) =>
      t.app.database.db
        .selectFrom('incoming_servers')
        .select(['last_error', 'error_since', 'last_fetch_at', 'fetch_lease_owner', 'cursor_last_uid', 'attempt_first_uid', 'attempt_last_uid', 'attempt_failed_runs'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
    const storedUids = async (id: number) => (await t.app.database.db.selectFrom('messages').select('uid').where('server_id', '=', id).orderBy('uid').execute()).map((r) => Number(r.uid));
    const isDue = async (id: number) => (await t.app.services.fetchState.due()).some((s) => s.id === id);
    /** A scheduler as `juniper worker` runs it (the default IMAP timeouts: 2 minutes a step), over these servers only. */
    const schedulerOf = (ids: number[]) =>
      new FetchScheduler(t.app.services.incoming.fetcher(), { due: async () => (await t.app.services.fetchState.due()).filter((s) => ids.includes(s.id)) }, t.app.logger, { tickMs: 100, concurrency: 2 });
    /** Stops the scheduler, asserting it resolves within STOP_BOUND_MS; past that, the server's connections are cut so the test ends. */
    const stopWithinBound = async (scheduler: FetchScheduler) => {
      const stopping = scheduler.stop();
      const took = await settledWithin(stopping, STOP_BOUND_MS);
      if (took === undefined) {
        hostile.dropConnections();
        await stopping;
      }
      assert.ok(took !== undefined, `stop() did not resolve within ${STOP_BOUND_MS} ms`);
      return took;
    };

    it('stop() while a server trickles "* OK" lines in SELECT resolves within seconds, not at the 2-minute deadline, and records nothing against the server', { timeout: 60_000 }, async () => {
      hostile.select = 'normal';
      hostile.unseen = [];
      const slow = await confirmed(`stuck-${dialect}`, { port: hostile.port, security: 'none', allowSelfSigned: false });
      const user = `stops-${dialect}@example.test`;
      const fast = await confirmed(user);
      await deliverAll(dovecot, user, [corpusMessage('plain', user, 1).raw]);
      const before = await standing(slow);
      hostile.select = 'trickle';
      const selectsBefore = hostile.selects;
      const closedBefore = hostile.closed;
      const scheduler = schedulerOf([slow, fast]);
      scheduler.start();
      try {
        await until('Dovecot\'s message is stored', async () => (await storedOf(fast)) === 1, 5000);
        await until('the slow server is in SELECT', async () => hostile.selects > selectsBefore && (await standing(slow)).fetch_lease_owner !== null, 5000);
        // A few "* OK" lines into the SELECT.
        await new Promise((resolve) => setTimeout(resolve, 3 * hostile.trickleMs));
        const took = await stopWithinBound(scheduler);
        await until('the server sees the connection closed', async () => hostile.closed > closedBefore, 2000);
        const after = await standing(slow);
        assert.deepEqual(after, { ...before, fetch_lease_owner: null }, `nothing recorded, the lease released (stopped in ${took} ms)`);
        assert.equal(after.last_error, null);
        assert.equal(after.error_since, null);
        assert.ok(await isDue(slow), 'due again at once: the next start fetches it');
        assert.equal((await standing(fast)).last_error, null);
      } finally {
        await scheduler.stop();
        hostile.select = 'normal';
      }
    });

    it('stop() mid-FETCH of a message coming slowly resolves within seconds: what came is stored, nothing unstored is \\Seen, and the next run fetches the rest once, in one FETCH', { timeout: 60_000 }, async () => {
      const uids = [11, 12, 13, 14, 15, 16];
      hostile.select = 'normal';
      hostile.fetch = 'normal';
      hostile.unseen = uids;
      const id = await confirmed(`slow-fetch-${dialect}`, { port: hostile.port, security: 'none', allowSelfSigned: false });
      const before = await standing(id);
      // UID 14 is 8 MB at 320 KB/s (25 s, never below the slowest rate Juniper waits for); 11-13 come at once.
      hostile.fetch = 'slow';
      hostile.slowUids = [14];
      hostile.slowBytes = 8 * 1024 * 1024;
      hostile.trickleMs = 200;
      const fetchesBefore = hostile.fetches.length;
      const slowBefore = hostile.slowBytesWritten;
      const scheduler = schedulerOf([id]);
      scheduler.start();
      try {
        await until('UID 14 is on its way', async () => hostile.slowBytesWritten - slowBefore >= 256 * 1024, 10_000);
        const took = await stopWithinBound(scheduler);
        assert.deepEqual(await storedUids(id), [11, 12, 13], `what arrived whole is stored (stopped in ${took} ms)`);
        assert.deepEqual([...hostile.seen].filter((uid) => !uids.slice(0, 3).includes(uid)), [], 'no unstored message is \\Seen');
        const after = await standing(id);
        assert.deepEqual(after, { ...before, cursor_last_uid: 13 }, 'the cursor past the stored ones only; no error, no note of the FETCH, the lease released');
        assert.ok(await isDue(id), 'due again at once');
      } finally {
        await scheduler.stop();
        hostile.fetch = 'normal';
        hostile.slowUids = [];
        hostile.trickleMs = 200;
      }
      const rest = await t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(id));
      assert.deepEqual(rest, { fetched: 3, stored: 3, duplicates: 0, quarantined: 0 });
      // Not one at a time: the stop left no note that would make the next run suspect a message.
      assert.deepEqual(hostile.fetches.slice(fetchesBefore), ['11:16', '14:16']);
      assert.deepEqual(await storedUids(id), uids, 'each message once');
      assert.deepEqual([...hostile.seen].sort((a, b) => a - b), uids, 'all \\Seen once stored');
      assert.equal((await standing(id)).last_error, null);
    });

    it('a stop that comes as the last message of a FETCH arrives stores every message that arrived whole, those read ahead too', { timeout: 60_000 }, async () => {
      const uids = [21, 22, 23, 24, 25];
      hostile.select = 'normal';
      hostile.fetch = 'normal';
      hostile.unseen = uids;
      const id = await confirmed(`stop-read-ahead-${dialect}`, { port: hostile.port, security: 'none', allowSelfSigned: false });
      const stop = new AbortController();
      // The real reader, told to stop once it has given the last message and before the FETCH's tagged answer: the
      // earlier ones are then still queued in the read-ahead while the first are being stored.
      const real = imapConnector(timeouts);
      const connect: typeof real = async (e, c, o) => {
        const reader = await real(e, c, o);
        const fetch = reader.fetch.bind(reader);
        reader.fetch = async function* (list, ...rest) {
          for await (const m of fetch(list, ...rest)) {
            yield m;
            if (m.uid === list[list.length - 1]) {
              stop.abort();
              throw new FetchStopped();
            }
          }
        };
        return reader;
      };
      const counts = await t.app.services.incoming.fetcher({ connect }).fetchServer(id, { signal: stop.signal, groupSize: 1 });
      assert.deepEqual(await storedUids(id), uids, 'each message that arrived whole is stored');
      assert.equal(counts.stored, uids.length);
      assert.deepEqual([...hostile.seen].filter((uid) => uids.includes(uid)), [], 'none marked: the next run does');
      hostile.unseen = [];
    });

    it('stop() mid-FETCH of a message fetched alone after a failed run counts no run against it: its count, lastError and errorSince stay as the failure left them', { timeout: 60_000 }, async () => {
      const uids = [21, 22, 23];
      hostile.select = 'normal';
      hostile.fetch = 'normal';
      hostile.unseen = uids;
      const id = await confirmed(`alone-${dialect}`, { port: hostile.port, security: 'none', allowSelfSigned: false });
      // Two runs that fail at UID 22 (it trickles "* OK" lines; a 1 s step deadline): first in a FETCH of three
      // (21 is stored), then fetched alone, which counts one run against it.
      const failing = t.app.services.incoming.fetcher({ connect: imapConnector({ ...DEFAULT_IMAP_TIMEOUTS, commandMs: 1000 }) });
      hostile.fetch = 'trickle';
      hostile.slowUids = [22];
      try {
        await assert.rejects(failing.fetchServer(id), /did not finish FETCH of 3 messages within 1 s/);
        await assert.rejects(failing.fetchServer(id), /did not finish FETCH of 1 message within 1 s/);
      } finally {
        hostile.fetch = 'normal';
      }
      const failed = await standing(id);
      assert.deepEqual([failed.attempt_first_uid, failed.attempt_last_uid, failed.attempt_failed_runs], [22, 23, 1]);
      assert.match(String(failed.last_error), /failed at message UID 22, fetched alone, in 1 run in a row \(.*did not finish FETCH of 1 message within 1 s/);
      assert.notEqual(failed.error_since, null);

      // Due again (its interval made to have passed); this time UID 22 comes, slowly, and the scheduler is stopped in it.
      await t.app.database.db.updateTable('incoming_servers').set({ last_fetch_at: 0 }).where('id', '=', id).execute();
      const before = await standing(id);
      hostile.fetch = 'slow';
      hostile.slowBytes = 8 * 1024 * 1024;
      const fetchesBefore = hostile.fetches.length;
      const slowBefore = hostile.slowBytesWritten;
      const scheduler = schedulerOf([id]);
      scheduler.start();
      try {
        await until('UID 22 is on its way', async () => hostile.slowBytesWritten - slowBefore >= 256 * 1024, 10_000);
        const took = await stopWithinBound(scheduler);
        assert.deepEqual(hostile.fetches.slice(fetchesBefore), ['22'], 'stopped in the FETCH of UID 22 alone');
        assert.deepEqual(await standing(id), { ...before, fetch_lease_owner: null }, `the count, lastError and errorSince as before, the lease released (stopped in ${took} ms)`);
        assert.deepEqual(await storedUids(id), [21]);
        assert.deepEqual([...hostile.seen], [21], 'no unstored message is \\Seen');
      } finally {
        await scheduler.stop();
        hostile.fetch = 'normal';
        hostile.slowUids = [];
      }
      // The next run fetches 22 and 23 one at a time, as after the failure, and both are stored once.
      const rest = await t.app.services.incoming.fetchNow(await t.app.services.incomingServers.get(id));
      assert.deepEqual(rest, { fetched: 2, stored: 2, duplicates: 0, quarantined: 0 });
      assert.deepEqual(hostile.fetches.slice(fetchesBefore + 1), ['22', '23']);
      assert.deepEqual(await storedUids(id), uids);
      assert.deepEqual([...hostile.seen].sort((a, b) => a - b), uids);
      const done = await standing(id);
      assert.deepEqual([done.last_error, done.error_since, done.attempt_first_uid, done.attempt_failed_runs], [null, null, null, 0]);
    });

    // Last in this app: stopped, its fetch jobs stay stopped.
    it('stopping the Fetch Now jobs (as `juniper serve` does on SIGTERM) during a trickling SELECT resolves within seconds and records the job stopped, not the server failed', { timeout: 60_000 }, async () => {
      hostile.select = 'normal';
      hostile.unseen = [];
      const id = await confirmed(`job-${dialect}`, { port: hostile.port, security: 'none', allowSelfSigned: false });
      const before = await standing(id);
      hostile.select = 'trickle';
      const selectsBefore = hostile.selects;
      try {
        const started = await api('POST', `/api/v1/incoming-servers/${id}/fetch`);
        assert.equal(started.status, 202, started.text);
        await until('the job is in SELECT', async () => hostile.selects > selectsBefore && (await standing(id)).fetch_lease_owner !== null, 5000);
        await new Promise((resolve) => setTimeout(resolve, 3 * hostile.trickleMs));
        const stopping = t.app.services.fetchJobs.stop();
        const took = await settledWithin(stopping, STOP_BOUND_MS);
        if (took === undefined) {
          hostile.dropConnections();
          await stopping;
        }
        assert.ok(took !== undefined, `stop() did not resolve within ${STOP_BOUND_MS} ms`);
        const job = (await api('GET', `/api/v1/jobs/${String(started.body.id)}`)).body;
        assert.equal(job.state, 'failed');
        assert.equal(job.error, 'Stopped before any message was fetched because Juniper was shutting down; fetch again to get them.');
        assert.deepEqual(await standing(id), before, 'nothing recorded against the server, the lease released');
        assert.ok(await isDue(id), 'due again at once');
      } finally {
        hostile.select = 'normal';
      }
    });
  });
}
