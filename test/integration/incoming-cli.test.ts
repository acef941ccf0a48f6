// `juniper incoming …` and `juniper fetch` as a user runs them (the built CLI in a real process, see helpers/cli.ts),
// against a real Dovecot: create, Test & Confirm, fetch with plain progress lines when not on a terminal.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { fetchTarget, FETCH_JOB } from '../../src/jobs/fetch-jobs.js';
import { createLogger } from '../../src/lib/logger.js';
import { cliEnv, runJuniper } from '../helpers/cli.js';
import { freshDatabaseConfig } from '../helpers/databases.js';
import { corpus, deliverAll } from '../helpers/incoming.js';
import { startDovecot, type Dovecot } from '../peers/dovecot.js';
import { startIdentityServer, type IdentityServer } from '../peers/identity-server.js';

const USER = 'cli@example.test';
const PASSWORD = 'cli-secret';

const juniper = runJuniper;

describe('juniper incoming and juniper fetch', () => {
  let idp: IdentityServer;
  let dovecot: Dovecot;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    idp = await startIdentityServer({});
    dovecot = await startDovecot({ identityUrl: idp.url, users: { [USER]: PASSWORD } });
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-cli-incoming-'));
    const db = await freshDatabaseConfig('sqlite');
    env = cliEnv(dataDir, db.kind === 'sqlite' ? `sqlite:${db.file}` : db.url);
  });
  after(async () => {
    await dovecot.stop();
    await idp.stop();
  });

  it('creates a server (password from stdin), confirms it, fetches with one plain line per server, lists it', async () => {
    const created = juniper(
      env,
      ['incoming', 'create', '--name', 'Orders', '--host', '127.0.0.1', '--port', String(dovecot.imapsPort), '--security', 'ssl', '--allow-self-signed', '--username', USER, '--password-stdin', '--keep-original'],
      `${PASSWORD}\n`,
    );
    assert.equal(created.code, 0, created.stderr);
    const id = /^(\d+)\t/.exec(created.stdout)?.[1];
    assert.ok(id, created.stdout);
    assert.match(created.stdout, /\tdraft/);

    const tested = juniper(env, ['incoming', 'test', id]);
    assert.equal(tested.code, 0, tested.stdout + tested.stderr);
    assert.match(tested.stdout, /^OK: Connected to 127\.0\.0\.1:\d+ \(SSL\/TLS\), logged in as cli@example\.test/);

    await deliverAll(dovecot, USER, corpus(7, USER).map((m) => m.raw));
    const fetched = juniper(env, ['fetch']);
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.equal(fetched.stdout, `${id}\tOrders\tfetched 7, stored 7, duplicates 0, quarantined 0\n`);
    assert.ok(!fetched.stderr.includes('['), 'no progress bar when stderr is not a terminal');

    // The fetch ran as a job, as Fetch Now in the UI and API: the jobs history shows it with its counts.
    const app = await createApp(loadConfig(env), { logger: createLogger('silent') });
    try {
      const jobs = await app.database.db.selectFrom('jobs').selectAll().where('target', '=', fetchTarget(Number(id))).execute();
      assert.equal(jobs.length, 1, JSON.stringify(jobs));
      assert.equal(jobs[0]!.kind, FETCH_JOB);
      assert.equal(jobs[0]!.state, 'succeeded');
      assert.equal(jobs[0]!.created_by_user_id, null);
      assert.deepEqual(JSON.parse(jobs[0]!.result!), { fetched: 7, stored: 7, duplicates: 0, quarantined: 0 });

      // A fetch of this server running in another process (its job row, touched just now): the CLI does not
      // start a second one beside it, says so, and exits 1.
      await deliverAll(dovecot, USER, corpus(2, USER).map((m) => m.raw));
      const elsewhere = await app.services.jobs.create({ kind: FETCH_JOB, target: fetchTarget(Number(id)), owner: 'other-host:4242:jobs:abcdef', createdByUserId: null });
      const refused = juniper(env, ['fetch', id]);
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      assert.equal(refused.stdout, `${id}\tOrders\tALREADY RUNNING: job ${elsewhere.id} (other-host:4242:jobs:abcdef) is fetching this server; not fetched again\n`);
      assert.equal((await app.database.db.selectFrom('jobs').select('id').where('target', '=', fetchTarget(Number(id))).execute()).length, 2, 'no job of its own');
      await app.services.jobs.finish(elsewhere.id, { ok: false, error: 'test' });
      const after = juniper(env, ['fetch', id]);
      assert.equal(after.code, 0, after.stdout + after.stderr);
      assert.equal(after.stdout, `${id}\tOrders\tfetched 2, stored 2, duplicates 0, quarantined 0\n`, 'the two left were not fetched by the refused run');
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
