// `juniper incoming …` and `juniper fetch` as a user runs them (the built CLI in a real process, see helpers/cli.ts),
// against a real Dovecot: create, Test & Confirm, fetch with plain progress lines when not on a terminal. Each
// fetch is a Fetch Now job in the jobs history; a fetch stopped with SIGINT or SIGTERM stops after the message
// in hand, frees the server and records its job as stopped, with what it did (both databases).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { fetchTarget, FETCH_JOB } from '../../src/jobs/fetch-jobs.js';
import { createLogger } from '../../src/lib/logger.js';
import { cliEnv, runJuniper } from '../helpers/cli.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';
import { corpus, deliverAll, seenByUid } from '../helpers/incoming.js';
import { startJuniper, until } from '../helpers/processes.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const USER = 'cli@example.test';
const PASSWORD = 'cli-secret';
const stopUser = (dialect: string) => `cli-stop-${dialect}@example.test`;
const laterUser = (dialect: string) => `cli-later-${dialect}@example.test`;
const busyUser = (dialect: string) => `cli-busy-${dialect}@example.test`;

const juniper = runJuniper;

let idp: IdentityServer;
let dovecot: Dovecot;
before(async () => {
  idp = await startIdentityServer({});
  dovecot = await startDovecot({ identityUrl: idp.url, users: { [USER]: PASSWORD, ...Object.fromEntries(dialects.flatMap((d) => [[stopUser(d), PASSWORD], [laterUser(d), PASSWORD], [busyUser(d), PASSWORD]])) } });
});
after(async () => {
  await dovecot.stop();
  await idp.stop();
});

/** A fresh data dir and database of the dialect, as the CLI's environment. */
async function freshEnv(dialect: 'sqlite' | 'postgres', extra: NodeJS.ProcessEnv = {}): Promise<NodeJS.ProcessEnv> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-cli-incoming-'));
  const db = await freshDatabaseConfig(dialect);
  return { ...cliEnv(dataDir, db.kind === 'sqlite' ? `sqlite:${db.file}` : db.url), ...extra };
}

/** `juniper incoming create` + `test`: a confirmed server's id. */
function confirmedServer(env: NodeJS.ProcessEnv, name: string, user: string): string {
  const created = juniper(
    env,
    ['incoming', 'create', '--name', name, '--host', '127.0.0.1', '--port', String(dovecot.imapsPort), '--security', 'ssl', '--allow-self-signed', '--username', user, '--password-stdin', '--keep-original'],
    `${PASSWORD}\n`,
  );
  assert.equal(created.code, 0, created.stderr);
  const id = /^(\d+)\t/.exec(created.stdout)?.[1];
  assert.ok(id, created.stdout);
  assert.match(created.stdout, /\tdraft/);
  const tested = juniper(env, ['incoming', 'test', id]);
  assert.equal(tested.code, 0, tested.stdout + tested.stderr);
  assert.match(tested.stdout, new RegExp(`^OK: Connected to 127\\.0\\.0\\.1:\\d+ \\(SSL/TLS\\), logged in as ${user.replace(/\./g, '\\.')}`));
  return id;
}

describe('juniper incoming and juniper fetch', () => {
  let env: NodeJS.ProcessEnv;
  before(async () => {
    env = await freshEnv('sqlite');
  });

  it('creates a server (password from stdin), confirms it, fetches with one plain line per server as a job, lists it', async () => {
    const id = confirmedServer(env, 'Orders', USER);

    await deliverAll(dovecot, USER, corpus(7, USER).map((m) => m.raw));
    const fetched = juniper(env, ['fetch']);
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.equal(fetched.stdout, `${id}\tOrders\tfetched 7, stored 7, duplicates 0, quarantined 0\n`);
    assert.ok(!fetched.stderr.includes('['), 'no progress bar when stderr is not a terminal');

    // The fetch ran as a job, as Fetch Now in the UI and API: the jobs history shows it with its counts, and
    // the server's lease it ran under is released.
    const app = await createApp(loadConfig(env), { logger: createLogger('silent') });
    try {
      const jobs = await app.database.db.selectFrom('jobs').selectAll().where('target', '=', fetchTarget(Number(id))).execute();
      assert.equal(jobs.length, 1, JSON.stringify(jobs));
      assert.equal(jobs[0]!.kind, FETCH_JOB);
      assert.equal(jobs[0]!.state, 'succeeded');
      assert.equal(jobs[0]!.created_by_user_id, null);
      assert.deepEqual(JSON.parse(jobs[0]!.result!), { fetched: 7, stored: 7, duplicates: 0, quarantined: 0 });
      assert.match(jobs[0]!.owner, /:\d+:jobs:[0-9a-f]{6}$/);
      const server = await app.services.incomingServers.get(Number(id));
      assert.equal(server.fetch_lease_owner, null);
    } finally {
      await app.close();
    }

    const listed = juniper(env, ['incoming', 'list']);
    assert.match(listed.stdout, new RegExp(`^${id}\\tOrders\\t127\\.0\\.0\\.1:\\d+ ssl\\tauth password as cli@example\\.test\\tfolder INBOX\\tevery 5 min\\tconfirmed\\n$`));

    const wrong = juniper(env, ['incoming', 'update', id, '--password-stdin'], 'wrong\n');
    assert.equal(wrong.code, 0, wrong.stderr);
    assert.match(wrong.stdout, /\tdraft/, 'a new password needs a new Test & Confirm');
    const failed = juniper(env, ['incoming', 'test', id]);
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /^FAILED \(auth\): Authentication refused for cli@example\.test/);
    assert.ok(!(failed.stdout + failed.stderr).includes(PASSWORD));
  });
});

for (const dialect of dialects) {
  describe(`juniper fetch stopped with SIGINT and SIGTERM (${dialect})`, () => {
    let env: NodeJS.ProcessEnv;
    let app: App;
    before(async () => {
      env = await freshEnv(dialect, { JUNIPER_LOG_LEVEL: 'warn', JUNIPER_FETCH_BATCH_SIZE: '50' });
      app = await createApp(loadConfig(env), { logger: createLogger('silent') });
    });
    after(async () => app?.close());

    it('stops after the message in hand, exits 130 / 143, frees the server, records the job stopped with its counts; the next fetch gets the rest', async () => {
      const user = stopUser(dialect);
      const id = confirmedServer(env, 'Stops', user);
      const total = 400;
      await deliverAll(dovecot, user, corpus(total, user).map((m) => m.raw));
      const { db } = app.database;
      const stored = async () => Number((await db.selectFrom('messages').select((eb) => eb.fn.countAll().as('n')).where('server_id', '=', Number(id)).executeTakeFirstOrThrow()).n);
      const jobs = () => db.selectFrom('jobs').selectAll().where('target', '=', fetchTarget(Number(id))).orderBy('id').execute();

      let storedBefore = 0;
      for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
        const run = startJuniper(env, ['fetch', id]);
        await until(async () => (await stored()) >= storedBefore + 30 || run.child.exitCode !== null, 30_000, () => `30 more stored messages; ${run.output()}`);
        const exit = await run.kill(signal);
        assert.equal(exit.code, code, `stopped by ${signal}, not killed by it nor finished (signal ${exit.signal}):\n${run.output()}`);
        const now = await stored();
        const n = now - storedBefore;
        assert.ok(now < total, `stopped mid-run (${now} of ${total})`);
        assert.match(run.output(), new RegExp(`juniper fetch: ${signal} received, stopping after the message in hand \\(a second Ctrl-C or SIGTERM stops at once\\)`));
        const line = `${id}\tStops\tSTOPPED: Stopped after ${n} of ${total - storedBefore} messages because juniper fetch received ${signal} (fetched ${n}, stored ${n}, duplicates 0, quarantined 0). Everything fetched so far is kept; fetch again to get the other ${total - now}.`;
        assert.ok(run.output().split('\n').includes(line), `${line}\nin:\n${run.output()}`);

        const job = (await jobs()).at(-1)!;
        assert.equal(job.state, 'failed');
        assert.equal(job.error, line.split('STOPPED: ')[1]);
        assert.ok(job.finished_at !== null);
        assert.equal(job.done, n);
        assert.deepEqual(JSON.parse(job.result!), { fetched: n, stored: n, duplicates: 0, quarantined: 0 });
        const server = await app.services.incomingServers.get(Number(id));
        assert.equal(server.fetch_lease_owner, null, 'the server is free at once, not after its lease');
        const seen = [...(await seenByUid(dovecot, user, PASSWORD))].filter(([, s]) => s).length;
        assert.ok(seen <= now, 'nothing unstored is \\Seen');
        storedBefore = now;
      }

      const rest = juniper(env, ['fetch', id]);
      assert.equal(rest.code, 0, rest.stdout + rest.stderr);
      assert.equal(rest.stdout, `${id}\tStops\tfetched ${total - storedBefore}, stored ${total - storedBefore}, duplicates 0, quarantined 0\n`);
      assert.equal(await stored(), total);
      assert.deepEqual((await jobs()).map((j) => j.state), ['failed', 'failed', 'succeeded']);
      assert.ok([...(await seenByUid(dovecot, user, PASSWORD)).values()].every(Boolean));
    });

    it('says which servers a signal kept from being fetched at all, and exits with the signal\'s code', async () => {
      const user = laterUser(dialect);
      const first = confirmedServer(env, 'Busy', busyUser(dialect));
      const later = confirmedServer(env, 'Later', user);
      await deliverAll(dovecot, busyUser(dialect), corpus(400, busyUser(dialect)).map((m) => m.raw));
      await deliverAll(dovecot, user, corpus(3, user).map((m) => m.raw));
      const { db } = app.database;
      const stored = async (sid: string) => Number((await db.selectFrom('messages').select((eb) => eb.fn.countAll().as('n')).where('server_id', '=', Number(sid)).executeTakeFirstOrThrow()).n);
      // Every confirmed server, in order: the signal comes while "Busy" is being fetched, before "Later" starts.
      const run = startJuniper(env, ['fetch']);
      await until(async () => (await stored(first)) >= 30 || run.child.exitCode !== null, 30_000, () => `30 stored messages; ${run.output()}`);
      const exit = await run.kill('SIGTERM');
      assert.equal(exit.code, 143, run.output());
      const lines = run.output().split('\n');
      assert.ok(lines.some((l) => l.startsWith(`${first}\tBusy\tSTOPPED: Stopped after `)), run.output());
      assert.ok(lines.includes(`${later}\tLater\tSTOPPED: not started (juniper fetch received SIGTERM); run juniper fetch ${later} to fetch it.`), run.output());
      assert.equal(await stored(later), 0);
      assert.equal((await db.selectFrom('jobs').selectAll().where('target', '=', fetchTarget(Number(later))).execute()).length, 0, 'no job for a server not reached');
    });
  });
}
