// `juniper incoming …` and `juniper fetch` as a user runs them (the built CLI in a real process, see helpers/cli.ts),
// against a real Dovecot: create, Test & Confirm, fetch with plain progress lines when not on a terminal.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
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
