// Fetch Now as a background job (issue 11), against a real Dovecot on loopback: the API answers 202 at once
// with the job; two clicks at once share one job; a job of another process holding the server's fetch lease
// is refused with 409 naming it, and one whose lease is gone (or whose process stopped touching it) is recorded
// failed and replaced; the job runs to the end with nobody polling (the page was closed) and its progress and
// counts are readable; ?wait=true keeps the synchronous answer; the server page shows the running job's
// progress bar; fetch metrics count the run. Both databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { answerFetch } from '../../src/http/api/jobs.js';
import { FetchJobs, fetchTarget, type FetchLeases } from '../../src/jobs/fetch-jobs.js';
import { JobStore, STALE_MS, type Job } from '../../src/jobs/job-store.js';
import { createLogger } from '../../src/lib/logger.js';
import { dialects } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { corpus, deliverAll, incomingApi, type Json, imapPeersForFile } from '../helpers/incoming.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { signIn } from '../helpers/outlook.js';
import { until } from '../helpers/processes.js';

const PASSWORD = 'imap-secret';
const users = ['job', 'join', 'page', 'race', 'window', 'wait'].flatMap((u) => dialects.map((d) => `${u}-${d}@example.test`));

const peers = imapPeersForFile(users, PASSWORD);

interface JobBody {
  id: number;
  state: string;
  joined?: boolean;
  target: string;
  progress: { done: number; total: number | null };
  result: Json | null;
  error: string | null;
}

for (const dialect of dialects) {
  describe(`background fetch jobs (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    let key: string;
    const mailbox = (name: string) => `${name}-${dialect}@example.test`;
    const { api, confirmed } = incomingApi(() => ({ http, key }), () => peers.dovecot, PASSWORD);
    const job = async (id: number) => (await api('GET', `/api/v1/jobs/${id}`)).body as unknown as JobBody;
    const finished = async (id: number) => {
      let last: JobBody | undefined;
      await until(async () => (last = await job(id)).state !== 'running', 30_000, () => `job ${id} to finish: ${JSON.stringify(last)}`);
      return last!;
    };

    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
      key = (await t.createUser('admin', 'admin', 'admin-password-0123')).apiKey;
    });
    after(async () => t.close());

    it('answers 202 with a job at once, shares one job between two clicks, and runs it to the end with nobody polling', async () => {
      const user = mailbox('job');
      const id = await confirmed(user);
      await deliverAll(peers.dovecot, user, corpus(60, user).map((m) => m.raw));
      // Counters are per process and both databases' runs share it (and server ids): compare with before.
      const metric = async (line: string) => Number(new RegExp(`^${line.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec((await api('GET', '/metrics')).text)?.[1] ?? 0);
      const runs = `juniper_fetch_runs_total{server_id="${id}",outcome="ok"}`;
      const stored = `juniper_fetched_messages_total{server_id="${id}",result="stored"}`;
      const durations = `juniper_fetch_duration_seconds_count{server_id="${id}"}`;
      const before = { runs: await metric(runs), stored: await metric(stored), durations: await metric(durations) };
      const [first, second] = await Promise.all([api('POST', `/api/v1/incoming-servers/${id}/fetch`), api('POST', `/api/v1/incoming-servers/${id}/fetch`)]);
      assert.equal(first.status, 202, first.text);
      assert.equal(second.status, 202, second.text);
      const a = first.body as unknown as JobBody;
      const b = second.body as unknown as JobBody;
      assert.equal(a.id, b.id, 'the second click joined the first job');
      assert.deepEqual([a.joined, b.joined].sort(), [false, true]);
      assert.equal(a.target, `incoming_server:${id}`);

      // Nobody polls: the job goes on by itself (as when the page is closed).
      const count = async () => Number((await t.app.database.db.selectFrom('messages').select((eb) => eb.fn.countAll().as('n')).where('server_id', '=', id).executeTakeFirstOrThrow()).n);
      await until(async () => (await count()) === 60, 30_000, () => 'the 60 messages to be stored');
      const done = await finished(a.id);
      assert.equal(done.state, 'succeeded', JSON.stringify(done));
      assert.deepEqual(done.result, { fetched: 60, stored: 60, duplicates: 0, quarantined: 0 });
      assert.deepEqual(done.progress, { done: 60, total: 60 });

      // Finished jobs are not joined: the next click starts a new one.
      const again = await api('POST', `/api/v1/incoming-servers/${id}/fetch?wait=true`);
      assert.equal(again.status, 200, again.text);
      assert.deepEqual(again.body, { fetched: 0, stored: 0, duplicates: 0, quarantined: 0 }, '?wait=true answers the counts as before');

      assert.equal(await metric(runs), before.runs + 2);
      assert.equal(await metric(stored), before.stored + 60);
      assert.equal(await metric(durations), before.durations + 2);
    });

    it('refuses (409, naming it) a Fetch Now while another process\'s job holds the server\'s lease, and takes over one whose lease is gone or whose process stopped touching it', async () => {
      const id = await confirmed(mailbox('join'));
      const { jobs } = t.app.services;
      const servers = () => t.app.database.db.updateTable('incoming_servers').where('id', '=', id);
      const elsewhere = await jobs.create({ kind: 'incoming.fetch', target: fetchTarget(id), owner: 'other-host:1:jobs', createdByUserId: null });
      const leaseUntil = Date.now() + 60_000;
      await servers().set({ fetch_lease_owner: 'other-host:1:jobs', fetch_lease_until: leaseUntil }).execute();
      const refused = await api('POST', `/api/v1/incoming-servers/${id}/fetch`);
      assert.equal(refused.status, 409, refused.text);
      assert.equal(
        (refused.body.error as Json).message,
        `Incoming server "${mailbox('join')}" (id ${id}) is already being fetched by job ${elsewhere.id} of another Juniper process (other-host:1:jobs); its progress is at GET /api/v1/jobs/${elsewhere.id} and on the server's page. If that process was stopped, its fetch lease frees the server at ${new Date(leaseUntil).toISOString()}: fetch again then.`,
      );
      assert.equal((await job(elsewhere.id)).state, 'running', 'a job holding its lease is left running');

      // Its lease ran out: the row (touched just now) is a dead run's; the next click records it and starts anew.
      const expired = Date.now() - 1;
      await servers().set({ fetch_lease_until: expired }).execute();
      assert.equal((await job(elsewhere.id)).state, 'failed', 'polling the job shows it failed as soon as its lease is free');
      const dead = await job(elsewhere.id);
      assert.equal(dead.error, `Interrupted: the process running this job (other-host:1:jobs) stopped before it finished (its fetch lease on the server ran out at ${new Date(expired).toISOString()}, and a live run renews that lease with every message it stores). Everything it stored is kept; the next fetch goes on from there.`);
      const fresh = await api('POST', `/api/v1/incoming-servers/${id}/fetch`);
      assert.equal(fresh.status, 202, fresh.text);
      assert.equal(fresh.body.joined, false);
      assert.equal((await finished(fresh.body.id as number)).state, 'succeeded');

      // A running row whose process never held the lease (or released it without recording its end) is dead at once.
      const unleased = await jobs.create({ kind: 'incoming.fetch', target: fetchTarget(id), owner: 'other-host:2:jobs', createdByUserId: null });
      const next = await api('POST', `/api/v1/incoming-servers/${id}/fetch`);
      assert.equal(next.status, 202, next.text);
      assert.notEqual(next.body.id, unleased.id);
      assert.match((await job(unleased.id)).error!, /^Interrupted: the process running this job \(other-host:2:jobs\) stopped before it finished \(it no longer holds the server's fetch lease, /);
      assert.equal((await finished(next.body.id as number)).state, 'succeeded');

      // A row not touched for STALE_MS (its process cannot reach the database, or was killed less than a lease
      // ago): a fetch job is judged by its lease alone, so it is still running and the refusal names it.
      const quiet = await jobs.create({ kind: 'incoming.fetch', target: fetchTarget(id), owner: 'other-host:3:jobs', createdByUserId: null });
      await servers().set({ fetch_lease_owner: 'other-host:3:jobs', fetch_lease_until: leaseUntil }).execute();
      await t.app.database.db.updateTable('jobs').set({ updated_at: Date.now() - STALE_MS - 1000 }).where('id', '=', quiet.id).execute();
      const held = await api('POST', `/api/v1/incoming-servers/${id}/fetch`);
      assert.equal(held.status, 409, held.text);
      assert.match(String((held.body.error as Json).message), new RegExp(`is already being fetched by job ${quiet.id} of another Juniper process \\(other-host:3:jobs\\)`));
      const quietNow = await job(quiet.id);
      assert.equal(quietNow.state, 'running', JSON.stringify(quietNow));
      assert.equal(quietNow.error, null);
      // Its lease ran out: now it is dead, with the lease's reason.
      await servers().set({ fetch_lease_until: Date.now() - 1 }).execute();
      const quietDead = await job(quiet.id);
      assert.equal(quietDead.state, 'failed');
      assert.match(quietDead.error!, /^Interrupted: the process running this job \(other-host:3:jobs\) stopped before it finished \(its fetch lease on the server ran out at /);
      await servers().set({ fetch_lease_owner: null, fetch_lease_until: null }).execute();
    });

    it('never records a live job dead: not when it starts between another process\'s reads, not while its lease is held, not between its fetch\'s end and its row\'s', async () => {
      const { jobs, fetchState, incoming, fetchJobs } = t.app.services;
      const silent = createLogger('silent');
      const id = await confirmed(mailbox('race'));
      await deliverAll(peers.dovecot, mailbox('race'), corpus(30, mailbox('race')).map((m) => m.raw));
      const server = await t.app.services.incomingServers.get(id);

      // The interrupt is one statement that checks the lease: a row whose owner holds its server's lease stays.
      const leased = await jobs.create({ kind: 'incoming.fetch', target: fetchTarget(id), owner: 'other-host:4:jobs', createdByUserId: null });
      const servers = () => t.app.database.db.updateTable('incoming_servers').where('id', '=', id);
      await servers().set({ fetch_lease_owner: 'other-host:4:jobs', fetch_lease_until: Date.now() + 60_000 }).execute();
      assert.equal((await jobs.interrupt(leased, 'judged from a stale read', { serverId: id })).state, 'running');
      assert.equal((await jobs.get(leased.id)).state, 'running', 'a job whose owner holds the lease is never recorded dead');
      await servers().set({ fetch_lease_until: Date.now() - 1 }).execute();
      assert.equal((await jobs.interrupt(leased, 'its lease ran out', { serverId: id })).state, 'failed');
      await servers().set({ fetch_lease_owner: null, fetch_lease_until: null }).execute();

      // Process B (a FetchJobs of its own over the same database) reads the server's lease; process A (this
      // app's) starts its job right after that read (lease, then row), before B goes on. The hook only orders
      // the two; the leases are the real FetchState's.
      let between: (() => Promise<void>) | undefined;
      const stateB: FetchLeases = {
        get: async (sid) => {
          const read = await fetchState.get(sid);
          const hook = between;
          between = undefined;
          await hook?.();
          return read;
        },
        acquireLease: (...args) => fetchState.acquireLease(...args),
        releaseLease: (...args) => fetchState.releaseLease(...args),
      };
      const b = new FetchJobs(jobs, () => incoming, silent, { state: stateB, ms: 300_000 });
      let started: Job | undefined;
      between = async () => void (started = (await fetchJobs.start(server, null)).job);
      await assert.rejects(b.start(server, null), (err: Error & { details?: Json }) => {
        assert.ok(started, 'A started in the window');
        assert.match(err.message, new RegExp(`is already being fetched by job ${started.id} of another Juniper process`));
        return true;
      });
      const raced = await finished(started!.id);
      assert.equal(raced.state, 'succeeded', JSON.stringify(raced));
      assert.equal(raced.error, null, 'A\'s job was never recorded Interrupted');
      assert.deepEqual(raced.result, { fetched: 30, stored: 30, duplicates: 0, quarantined: 0 });

      // A's fetch has ended (its counts are in hand) and its row is about to say so: a poller in another process
      // (this app's FetchJobs, as the web page's GET /api/v1/jobs/:id) looks in just that window.
      await deliverAll(peers.dovecot, mailbox('race'), corpus(5, mailbox('race')).map((m) => m.raw));
      let polled: Job | undefined;
      class WatchedStore extends JobStore {
        override async finish(jobId: number, outcome: Parameters<JobStore['finish']>[1]): Promise<void> {
          polled = await fetchJobs.checked(await jobs.get(jobId));
          return super.finish(jobId, outcome);
        }
      }
      const a = new FetchJobs(new WatchedStore(t.app.database.db), () => incoming, silent, { state: fetchState, ms: 300_000 });
      const run = await a.start(server, null);
      assert.equal((await a.settled(run.job.id))?.ok, true);
      assert.equal(polled?.state, 'running', `seen running until its end is recorded: ${JSON.stringify(polled)}`);
      const ended = await job(run.job.id);
      assert.equal(ended.state, 'succeeded');
      assert.equal(ended.error, null);
      assert.deepEqual(ended.result, { fetched: 5, stored: 5, duplicates: 0, quarantined: 0 });
      assert.equal((await fetchState.get(id)).fetch_lease_owner, null, 'the lease is released once the row says so');
    });

    it('?wait=true answers a joined run that ended before it could wait from the job\'s row', async () => {
      const { fetchJobs, jobs } = t.app.services;
      const id = await confirmed(mailbox('wait'));
      await deliverAll(peers.dovecot, mailbox('wait'), corpus(3, mailbox('wait')).map((m) => m.raw));
      const server = await t.app.services.incomingServers.get(id);
      // The join came back just as the run ended: start answers the job, its run is over before settled looks.
      const late: Pick<FetchJobs, 'start' | 'settled'> = {
        start: async (s, userId) => {
          const { job } = await fetchJobs.start(s, userId);
          await fetchJobs.settled(job.id);
          return { job, joined: true };
        },
        settled: (jobId, timeoutMs) => fetchJobs.settled(jobId, timeoutMs),
      };
      const request = { query: { wait: 'true' }, principal: { user: { id: null } } } as unknown as FastifyRequest;
      const answer = await answerFetch({ fetchJobs: late as FetchJobs, jobs }, request, {} as FastifyReply, server);
      assert.deepEqual(answer, { fetched: 3, stored: 3, duplicates: 0, quarantined: 0 });
    });

    it('refuses at once what cannot start (a draft: 409), and hides jobs of servers the caller may not manage (404)', async () => {
      const draft = await api('POST', '/api/v1/incoming-servers', { name: 'draft', host: '127.0.0.1', port: peers.dovecot.imapsPort, security: 'ssl', allowSelfSigned: true, auth: 'password', username: 'x@example.test', password: PASSWORD });
      const refused = await api('POST', `/api/v1/incoming-servers/${String(draft.body.id)}/fetch`);
      assert.equal(refused.status, 409);
      assert.match(String((refused.body.error as Json).message), /is a draft: run Test & Confirm first/);
      const adminsJob = await t.app.services.jobs.create({ kind: 'incoming.fetch', target: fetchTarget(draft.body.id as number), owner: 'x', createdByUserId: null });
      const jane = await t.createUser(`jane-${dialect}`, 'user');
      const res = await http.inject({ url: `/api/v1/jobs/${adminsJob.id}`, headers: { authorization: `Bearer ${jane.apiKey}` } });
      assert.equal(res.statusCode, 404);
      await t.app.services.jobs.finish(adminsJob.id, { ok: false, error: 'test' });
    });

    it('shows a running fetch job as a live progress bar on the server page, with its script', async () => {
      const id = await confirmed(mailbox('page'));
      // Another process's job, alive as far as anyone can tell: it holds the server's fetch lease.
      const running = await t.app.services.jobs.create({ kind: 'incoming.fetch', target: fetchTarget(id), owner: 'other-host:2:jobs', createdByUserId: null });
      await t.app.database.db.updateTable('incoming_servers').set({ fetch_lease_owner: 'other-host:2:jobs', fetch_lease_until: Date.now() + 60_000 }).where('id', '=', id).execute();
      await t.app.services.jobs.progress(running.id, 7, 20);
      const session = await signIn(http, 'admin', 'admin-password-0123');
      const page = await http.inject({ url: `/incoming-servers/${id}`, headers: { cookie: session.cookie } });
      assert.equal(page.statusCode, 200);
      assert.match(page.body, new RegExp(`data-job-url="/api/v1/jobs/${running.id}"`));
      assert.match(page.body, /<progress data-job-bar max="20" value="7"><\/progress>/);
      assert.match(page.body, /Fetching: 7 of 20 messages/);
      assert.match(page.body, /<script src="\/jobs\/progress\.js" defer><\/script>/);
      // Fetch Now on that page: not started beside it, said as a warning (nothing failed), its bar still shown.
      const form = new FormBrowser(http);
      await form.signIn('admin', 'admin-password-0123');
      await form.get(`/incoming-servers/${id}`);
      const clicked = await form.post(`/incoming-servers/${id}/fetch`, {});
      assert.equal(clicked.statusCode, 200);
      assert.match(clicked.body, new RegExp(`class="flash flash-warning"[^>]*>Not started: Incoming server &quot;${mailbox('page').replace(/\./g, '\\.')}&quot; \\(id ${id}\\) is already being fetched by job ${running.id} of another Juniper process \\(other-host:2:jobs\\)`));
      assert.match(clicked.body, new RegExp(`data-job-url="/api/v1/jobs/${running.id}"`));
      const js = await http.inject({ url: '/jobs/progress.js' });
      assert.equal(js.statusCode, 200);
      assert.match(js.body, /fetch\(url, \{ credentials: 'same-origin'/);
      await t.app.services.jobs.finish(running.id, { ok: false, error: 'test' });
      assert.doesNotMatch((await http.inject({ url: `/incoming-servers/${id}`, headers: { cookie: session.cookie } })).body, /data-job-url/);

      // A running row whose lease is gone (its process was killed) shows no progress bar, and is recorded failed.
      const dead = await t.app.services.jobs.create({ kind: 'incoming.fetch', target: fetchTarget(id), owner: 'other-host:2:jobs', createdByUserId: null });
      await t.app.database.db.updateTable('incoming_servers').set({ fetch_lease_until: Date.now() - 1 }).where('id', '=', id).execute();
      assert.doesNotMatch((await http.inject({ url: `/incoming-servers/${id}`, headers: { cookie: session.cookie } })).body, /data-job-url/);
      assert.equal((await job(dead.id)).state, 'failed');
    });
  });
}
