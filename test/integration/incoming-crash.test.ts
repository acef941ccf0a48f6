// A fetcher that dies mid-run, on both databases, against a real Dovecot: thrown out of a batch by a reader
// that fails after N messages, and a real `juniper fetch` process killed with SIGKILL. Either way nothing
// stored is lost, nothing unstored is \Seen, and the next run completes. The killed CLI fetch's job row stays
// `running`: only the server's fetch lease says whether its run is alive, so while the lease holds Fetch Now
// and the next `juniper fetch` refuse (naming the job), and once it is free they record the job failed and fetch.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { FETCH_JOB, fetchTarget } from '../../src/jobs/fetch-jobs.js';
import { STALE_MS } from '../../src/jobs/job-store.js';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { MailboxReader } from '../../src/incoming/mailbox-reader.js';
import { cliEnv, projectRoot, runJuniper } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpus, deliverAll, seenByUid, incomingApi, imapPeersForFile, readerWith, type Json } from '../helpers/incoming.js';
import { startJuniper, until } from '../helpers/processes.js';

const PASSWORD = 'imap-secret';
const users = ['crash', 'sigkill', 'unreturned', 'killedapi', 'killedcli'].flatMap((u) => dialects.map((d) => `${u}-${d}@example.test`));

/** The real IMAP reader on Dovecot, with its message fetch replaced (to die or to withhold a message). */
const withFetch = (fetch: (reader: MailboxReader, uids: number[]) => ReturnType<MailboxReader['fetch']>) => readerWith((real) => ({ fetch: (uids) => fetch(real, uids) }));

const peers = imapPeersForFile(users, PASSWORD);
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

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
      assert.match(String((await t.app.services.incomingServers.get(id)).last_error), new RegExp(`^Fetching "${escapeRegExp(user)}" failed: Unexpected error: killed\\. The messages from UID \\d+ to \\d+ not stored yet are fetched one at a time by the next fetch`));

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
      // Batches of 50 (groups of 25) as in the tests below: with 200 a run is two commits, and under load the kill
      // after the first could land after the second, with nothing left unstored to prove anything about.
      const env = { ...cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), JUNIPER_LOG_LEVEL: 'warn', JUNIPER_FETCH_BATCH_SIZE: '50' };
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

    /** The CLI's environment on this test's database. */
    const cli = (extra: NodeJS.ProcessEnv = {}) => {
      const db = t.config.database;
      return { ...cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), JUNIPER_LOG_LEVEL: 'warn', JUNIPER_FETCH_BATCH_SIZE: '50', ...extra };
    };
    const storedCount = async (id: number) => Number((await t.app.database.db.selectFrom('messages').select((eb) => eb.fn.countAll().as('n')).where('server_id', '=', id).executeTakeFirstOrThrow()).n);
    const fetchJobsOf = (id: number) => t.app.database.db.selectFrom('jobs').selectAll().where('target', '=', fetchTarget(id)).orderBy('id').execute();
    /** Starts `juniper fetch ID`, SIGKILLs it once it has stored `atLeast` messages, and returns its job row (left running). */
    const killedMidRun = async (id: number, total: number, atLeast: number, env: NodeJS.ProcessEnv) => {
      const run = startJuniper(env, ['fetch', String(id)]);
      await until(async () => (await storedCount(id)) >= atLeast || run.child.exitCode !== null, 30_000, () => `${atLeast} stored messages; ${run.output()}`);
      const exit = await run.kill('SIGKILL');
      assert.equal(exit.signal, 'SIGKILL', `killed while fetching (code ${exit.code}):\n${run.output()}`);
      const stored = await storedCount(id);
      assert.ok(stored < total, `killed mid-run (${stored} of ${total} stored)`);
      const jobs = await fetchJobsOf(id);
      assert.equal(jobs.length, 1, JSON.stringify(jobs));
      assert.equal(jobs[0]!.kind, FETCH_JOB);
      assert.equal(jobs[0]!.state, 'running', 'nothing recorded the killed run\'s end');
      const server = await t.app.services.incomingServers.get(id);
      assert.equal(server.fetch_lease_owner, jobs[0]!.owner, 'the job\'s run holds the server\'s lease under the job\'s owner');
      return { job: jobs[0]!, stored, leaseUntil: server.fetch_lease_until! };
    };

    it('`juniper fetch` SIGKILLed mid-run: Fetch Now answers 409 naming its job while the dead run\'s lease holds, and starts a new job once it is free; the dead job is recorded failed', async () => {
      const user = mailbox('killedapi');
      const id = await confirmed(user);
      const total = 200;
      await deliverAll(peers.dovecot, user, corpus(total, user).map((m) => m.raw));
      // The default lease (300 s): it holds for the whole first half of the test.
      const { job: dead, stored, leaseUntil } = await killedMidRun(id, total, 40, cli());
      const leaseEnd = new Date(leaseUntil).toISOString();

      const refused = await api('POST', `/api/v1/incoming-servers/${id}/fetch`);
      assert.equal(refused.status, 409, refused.text);
      assert.equal(
        (refused.body.error as Json).message,
        `Incoming server "${user}" (id ${id}) is already being fetched by job ${dead.id} of another Juniper process (${dead.owner}); its progress is at GET /api/v1/jobs/${dead.id} and on the server's page. If that process was stopped, its fetch lease frees the server at ${leaseEnd}: fetch again then.`,
      );
      assert.equal((await api('POST', `/api/v1/incoming-servers/${id}/fetch?wait=true`)).status, 409);
      assert.equal((await api('GET', `/api/v1/jobs/${dead.id}`)).body.state, 'running', 'while its lease holds, nothing tells a dead run from a live one');
      assert.equal(await storedCount(id), stored, 'the refusals fetched nothing');

      // The lease runs out (as 300 s later: a live run would have renewed it with every stored message).
      const expired = Date.now() - 1;
      await t.app.database.db.updateTable('incoming_servers').set({ fetch_lease_until: expired }).where('id', '=', id).execute();
      const fresh = await api('POST', `/api/v1/incoming-servers/${id}/fetch`);
      assert.equal(fresh.status, 202, fresh.text);
      assert.notEqual(fresh.body.id, dead.id);
      assert.equal(fresh.body.joined, false);
      const deadNow = (await api('GET', `/api/v1/jobs/${dead.id}`)).body;
      assert.equal(deadNow.state, 'failed');
      assert.equal(
        deadNow.error,
        `Interrupted: the process running this job (${dead.owner}) stopped before it finished (its fetch lease on the server ran out at ${new Date(expired).toISOString()}, and a live run renews that lease with every message it stores). Everything it stored is kept; the next fetch goes on from there.`,
      );
      assert.ok(deadNow.finishedAt, 'a terminal row has its end');
      let last: Json = {};
      await until(async () => (last = (await api('GET', `/api/v1/jobs/${String(fresh.body.id)}`)).body).state !== 'running', 30_000, () => `the new job to finish: ${JSON.stringify(last)}`);
      assert.equal(last.state, 'succeeded', JSON.stringify(last));
      assert.equal((last.result as Json).fetched, total - stored);
      assert.equal((last.result as Json).duplicates, 0);
      assert.equal(await storedCount(id), total);
      assert.ok([...(await seenByUid(peers.dovecot, user, PASSWORD)).values()].every(Boolean));
      assert.deepEqual((await fetchJobsOf(id)).map((j) => j.state), ['failed', 'succeeded']);
    });

    it('`juniper fetch` SIGKILLed mid-run: the next `juniper fetch` reports ALREADY RUNNING while the dead run\'s lease holds, and fetches the rest once it has run out', async () => {
      const user = mailbox('killedcli');
      const id = await confirmed(user);
      const total = 200;
      await deliverAll(peers.dovecot, user, corpus(total, user).map((m) => m.raw));
      const env = cli();
      const { job: dead, stored, leaseUntil } = await killedMidRun(id, total, 40, env);
      const leaseEnd = new Date(leaseUntil).toISOString();

      // As a minute or more after the kill: the job row is no longer touched, but the dead run's lease (300 s)
      // holds, and the lease alone judges a fetch job: refused, naming the job, not fetched.
      await t.app.database.db.updateTable('jobs').set({ updated_at: Date.now() - STALE_MS - 1000 }).where('id', '=', dead.id).execute();
      assert.equal((await api('GET', `/api/v1/jobs/${dead.id}`)).body.state, 'running', 'a quiet row whose lease holds is not recorded dead');
      const refused = runJuniper(env, ['fetch', String(id)]);
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      assert.equal(refused.stdout, `${id}\t${user}\tALREADY RUNNING: job ${dead.id} (${dead.owner}) is fetching this server, its fetch lease until ${leaseEnd}; not fetched again. If that process was stopped, run juniper fetch ${id} again after ${leaseEnd}.\n`);
      assert.equal(await storedCount(id), stored);
      assert.equal((await fetchJobsOf(id)).length, 1, 'the refused run made no job');

      // The lease runs out (as 300 s later): now the run is dead, and the next fetch records it and takes over.
      await t.app.database.db.updateTable('incoming_servers').set({ fetch_lease_until: Date.now() - 1 }).where('id', '=', id).execute();
      const rerun = runJuniper(env, ['fetch', String(id)]);
      assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
      assert.equal(rerun.stdout, `${id}\t${user}\tfetched ${total - stored}, stored ${total - stored}, duplicates 0, quarantined 0\n`);
      assert.equal(await storedCount(id), total);
      const jobs = await fetchJobsOf(id);
      assert.equal(jobs.length, 2, JSON.stringify(jobs));
      const first = jobs[0]!;
      assert.equal(first.id, dead.id);
      assert.equal(first.state, 'failed');
      assert.ok(first.finished_at !== null);
      assert.match(first.error!, new RegExp(`^Interrupted: the process running this job \\(${escapeRegExp(dead.owner)}\\) stopped before it finished \\(its fetch lease on the server ran out at \\S+Z, and a live run renews that lease with every message it stores\\)\\. Everything it stored is kept; the next fetch goes on from there\\.$`));
      const last = jobs.at(-1)!;
      assert.equal(last.state, 'succeeded');
      assert.ok([...(await seenByUid(peers.dovecot, user, PASSWORD)).values()].every(Boolean));
    });

    it('a UID the server lists but does not return stops the run before it, visibly: lastError says which and what to do', async () => {
      const user = mailbox('unreturned');
      const id = await confirmed(user);
      await deliverAll(peers.dovecot, user, corpus(10, user).map((m) => m.raw));
      const server = await t.app.services.incomingServers.get(id);
      // The 4th listed message never comes back, in a set or alone (a damaged file on the server, say).
      let withheld: number | undefined;
      const withholding = withFetch(async function* (reader, uids) {
        withheld ??= uids[3];
        for await (const m of reader.fetch(uids)) if (m.uid !== withheld) yield m;
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
