// A lost vault key is never silently replaced (newcomer review): a data directory that holds secrets but no
// longer its vault.key (or a JUNIPER_SECRET_KEY that is not the one the secrets were made with) makes every
// command that opens the vault refuse, naming the key id the database needs and where Juniper looked; doctor
// and `vault status` still run and report it; no key file is ever written then. A fresh install still gets
// its key on first start. Each command runs as a real process, on both databases; no output holds a secret.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import type { Database as DatabaseConfig } from '../../src/config.js';
import { keyIdOf } from '../../src/vault/index.js';
import { cliEnv, projectRoot, type CliResult } from '../helpers/cli.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const CLIENT_SECRET = 'lost-key-client-secret~0123456789abcdef';
const SMTP_PASSWORD = 'lost-key-smtp-password-0123';
const OTHER_KEY = crypto.randomBytes(32).toString('hex');

const dbUrl = (d: DatabaseConfig) => (d.kind === 'postgres' ? d.url : `sqlite:${d.file}`);

// serve and worker would run until stopped if they did not refuse: the timeout turns that into a failure.
function run(env: NodeJS.ProcessEnv, args: string[], input = ''): CliResult {
  const r = spawnSync(process.execPath, ['bin/juniper.js', ...args], { cwd: projectRoot, env: { ...env, JUNIPER_PORT: '0' }, input, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertNoSecret(r: CliResult, ...more: string[]): void {
  for (const s of [CLIENT_SECRET, SMTP_PASSWORD, OTHER_KEY, ...more]) assert.ok(!r.stdout.includes(s) && !r.stderr.includes(s), `no secret in the output of a command:\n${r.stdout}\n${r.stderr}`);
}

for (const dialect of dialects) {
  describe(`a lost vault key (${dialect})`, () => {
    let t: TestApp;
    let keyFile: string;
    let keyText: string;
    let keyId: string;
    let env: NodeJS.ProcessEnv;
    let webhookId: number;

    before(async () => {
      t = await startTestApp(dialect);
      const { settings, outgoingServers } = t.app.services;
      await settings.update({ customEmailServers: true, outlook: { enabled: true, clientId: '3f2504e0-4f89-41d3-9a0c-0305e82c3301', clientSecret: CLIENT_SECRET } }, cliActor);
      await outgoingServers.create({ name: 'relay', host: 'smtp.example.com', port: 587, security: 'starttls', auth: 'password', username: 'relay@example.com', password: SMTP_PASSWORD, fromFilter: null, priority: 10, active: true, allowSelfSigned: false }, cliPrincipal, cliActor);
      await t.app.services.parameters.set('mail.server.allowed_private_hosts', '127.0.0.1', cliActor);
      const { webhook } = await t.app.services.webhooks.create({ url: 'http://127.0.0.1:9/lost-key', events: ['mail.sent'], active: false }, null);
      webhookId = webhook.id;
      const now = Date.now();
      await t.app.database.db
        .insertInto('webhook_deliveries')
        .values([1, 2].map((n) => ({ webhook_id: webhook.id, event: 'mail.sent', subject: `mail:${n}`, payload: '{}', state: 'pending' as const, next_attempt_at: now, created_at: now })))
        .execute();
      await t.app.close();
      keyFile = path.join(t.config.dataDir, 'vault.key');
      keyText = fs.readFileSync(keyFile, 'utf8').trim();
      keyId = keyIdOf(Buffer.from(keyText, 'base64'));
      fs.unlinkSync(keyFile);
      env = cliEnv(t.config.dataDir, dbUrl(t.config.database));
    });
    after(() => {
      fs.rmSync(t.config.dataDir, { recursive: true, force: true });
    });

    it('every command that opens the vault refuses, names the key id it needs and where Juniper looked, and writes no key', () => {
      for (const args of [['params', 'list'], ['users', 'list'], ['serve'], ['worker'], ['vault', 'rotate'], ['settings', 'set', '--client-secret-stdin']]) {
        const r = run(env, args, 'another-client-secret-0123456789\n');
        assert.equal(r.code, 1, `${args.join(' ')} refuses:\n${r.stdout}\n${r.stderr}`);
        assert.match(r.stderr, new RegExp(`encrypted with vault key id ${keyId} \\(3 secrets\\), which is not configured`), args.join(' '));
        assert.match(r.stderr, new RegExp(`looked in ${keyFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(no such file; JUNIPER_SECRET_KEY is not set\\) and did not create a new key`), r.stderr);
        assert.match(r.stderr, /put the data directory's vault\.key back from a backup/);
        assert.ok(!fs.existsSync(keyFile), `${args.join(' ')} wrote no vault.key`);
        assertNoSecret(r, keyText);
      }
    });

    it('doctor FAILs naming the secrets it cannot decrypt (never their values) and creates no key', () => {
      const r = run(env, ['doctor']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`FAIL {2}vault key: 3 of 3 stored secret\\(s\\) cannot be decrypted: Outlook client secret \\(Settings → Outlook Credentials\\) \\(key ${keyId} is not configured\\); password of outgoing server "relay" \\(id \\d+\\) \\(key ${keyId} is not configured\\); signing secret of webhook id \\d+ \\(key ${keyId} is not configured\\)`));
      assert.match(r.stdout, new RegExp(`juniper vault forget --key-id ${keyId} --yes`));
      assert.match(r.stdout, /FAIL {2}outlook credentials: A client secret is stored but cannot be decrypted/);
      assert.doesNotMatch(r.stdout, /ok {4}outlook credentials/);
      assert.ok(!fs.existsSync(keyFile), 'doctor wrote no vault.key');
      assertNoSecret(r, keyText);
    });

    it('vault status says the key is not configured (not "run rotate") and creates no key', () => {
      const r = run(env, ['vault', 'status']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^keys: none configured$/m);
      assert.match(r.stdout, new RegExp(`^  settings\\.outlook\\.client_secret: 1 under ${keyId} \\(not configured\\)$`, 'm'));
      assert.match(r.stdout, new RegExp(`3 stored secrets are encrypted with vault key id ${keyId} \\(3 secrets\\), which is not configured: they cannot be decrypted`));
      assert.doesNotMatch(r.stdout, /older key|vault rotate/);
      assert.ok(!fs.existsSync(keyFile), 'vault status wrote no vault.key');
      assertNoSecret(r, keyText);
    });

    it('with a JUNIPER_SECRET_KEY that is not the one, commands refuse naming the variable; doctor reports it; no key file appears', () => {
      const withVar = { ...env, JUNIPER_SECRET_KEY: OTHER_KEY };
      const r = run(withVar, ['params', 'list']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, new RegExp(`vault key id ${keyId} .*looked in JUNIPER_SECRET_KEY \\(key id ${keyIdOf(Buffer.from(OTHER_KEY, 'hex'))}; the data directory's vault\\.key is not read when it is set\\)`));
      const d = run(withVar, ['doctor']);
      assert.equal(d.code, 1);
      assert.match(d.stdout, new RegExp(`FAIL {2}vault key: 3 of 3 stored secret\\(s\\) cannot be decrypted: .*key ${keyId} is not configured`));
      assert.ok(!fs.existsSync(keyFile));
      assertNoSecret(r, keyText);
      assertNoSecret(d, keyText);
      // The key itself, given as the variable, is accepted.
      const ok = run({ ...env, JUNIPER_SECRET_KEY: keyText }, ['vault', 'status']);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, new RegExp(`Every secret is under ${keyId}, the only key\\.`));
      assert.ok(!fs.existsSync(keyFile));
    });

    it('the restored key file makes everything work again; doctor then says the secrets decrypt', () => {
      fs.writeFileSync(keyFile, `${keyText}\n`, { mode: 0o600 });
      try {
        const r = run(env, ['params', 'list']);
        assert.equal(r.code, 0, r.stderr);
        const d = run(env, ['doctor']);
        assert.match(d.stdout, /ok {4}vault key: 3 stored secret\(s\) decrypt with the configured key\(s\)/);
        assertNoSecret(d, keyText);
      } finally {
        fs.unlinkSync(keyFile);
      }
    });

    it('vault forget lists, then with --yes deletes, the secrets under the lost key; the next start makes a new key', () => {
      const dry = run(env, ['vault', 'forget', '--key-id', keyId]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /^would forget: Outlook client secret/m);
      assert.match(dry.stdout, /^would forget: password of outgoing server "relay"/m);
      assert.match(dry.stdout, new RegExp(`^would forget: signing secret of webhook id ${webhookId} \\(deletes webhook id ${webhookId} and its 2 deliveries\\)$`, 'm'));
      assert.match(dry.stdout, /No stored secret can be read with the keys this command found .*no such file; JUNIPER_SECRET_KEY is not set.*add --all-keys-lost/);
      assert.match(dry.stdout, /Nothing was changed/);
      assert.equal(run(env, ['params', 'list']).code, 1, 'a dry run changes nothing');

      // This shell has no key at all: more likely the service's JUNIPER_SECRET_KEY is missing here than lost.
      const refused = run(env, ['vault', 'forget', '--key-id', keyId, '--yes']);
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.stderr, /No stored secret can be read .*Run this command with JUNIPER_SECRET_KEY exactly as the service gets it.*--all-keys-lost\. Nothing was deleted\./);
      assert.equal(run(env, ['vault', 'forget', '--key-id', keyId]).stdout, dry.stdout, 'the refusal deleted nothing');

      // A key that reads none of the secrets (another install's, a typo) is refused the same way.
      const other = run({ ...env, JUNIPER_SECRET_KEY: OTHER_KEY }, ['vault', 'forget', '--key-id', keyId, '--yes']);
      assert.equal(other.code, 1, other.stdout);
      assert.match(other.stderr, /No stored secret can be read with the keys this command found \(it looked in JUNIPER_SECRET_KEY \(key id /);
      assert.equal(run(env, ['vault', 'forget', '--key-id', keyId]).stdout, dry.stdout, 'the refusal deleted nothing');

      const done = run(env, ['vault', 'forget', '--key-id', keyId, '--yes', '--all-keys-lost']);
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stdout, /^forgot: Outlook client secret/m);
      assert.match(done.stdout, new RegExp(`^forgot: signing secret of webhook id ${webhookId} \\(deleted webhook id ${webhookId} and its 2 deliveries\\)$`, 'm'));
      assertNoSecret(dry, keyText);
      assertNoSecret(refused, keyText);
      assertNoSecret(other, keyText);
      assertNoSecret(done, keyText);
      assert.ok(!fs.existsSync(keyFile), 'forget writes no key either');

      const next = run(env, ['params', 'list']);
      assert.equal(next.code, 0, next.stderr);
      assert.ok(fs.existsSync(keyFile), 'with no secret left, the next start creates the key');
      const d = run(env, ['doctor']);
      assert.match(d.stdout, /FAIL {2}outlook credentials: The Outlook Client Secret is not set/);
      assert.match(d.stdout, /ok {4}vault key: 0 stored secret\(s\)/);
    });
  });

  describe(`a command run without the service's JUNIPER_SECRET_KEY (${dialect})`, () => {
    it('refuses instead of storing the secret under a stray vault.key the service cannot read (docs/deploy.md trap)', async () => {
      const serviceKey = crypto.randomBytes(32).toString('base64');
      const t = await startTestApp(dialect, { secretKeys: [serviceKey] });
      try {
        await t.app.services.settings.update({ customEmailServers: true, outlook: { enabled: true, clientId: '3f2504e0-4f89-41d3-9a0c-0305e82c3301', clientSecret: CLIENT_SECRET } }, cliActor);
        const env = cliEnv(t.config.dataDir, dbUrl(t.config.database));
        const keyFile = path.join(t.config.dataDir, 'vault.key');
        for (const args of [['doctor'], ['settings', 'set', '--client-secret-stdin']]) {
          const r = run(env, args, 'stray-client-secret-0123456789abcdef\n');
          assert.equal(r.code, 1, r.stdout + r.stderr);
          assert.match(r.stdout + r.stderr, new RegExp(`key ${keyIdOf(Buffer.from(serviceKey, 'base64'))} is not configured|vault key id ${keyIdOf(Buffer.from(serviceKey, 'base64'))}`));
          assert.ok(!fs.existsSync(keyFile), `${args.join(' ')} wrote no stray vault.key`);
          assertNoSecret(r, serviceKey);
        }
        const ok = run({ ...env, JUNIPER_SECRET_KEY: serviceKey }, ['settings', 'set', '--client-secret-stdin'], 'new-client-secret-0123456789abcdef\n');
        assert.equal(ok.code, 0, ok.stderr);
        assert.equal((await t.app.services.settings.outlookCredentials())?.clientSecret, 'new-client-secret-0123456789abcdef', 'the service reads what the command stored');
      } finally {
        await t.close();
      }
    });
  });

  describe(`a fresh install's vault key (${dialect})`, () => {
    it('doctor and vault status create no key; the first command that opens the vault does, once', async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-fresh-'));
      try {
        const env = cliEnv(dataDir, dbUrl(await freshDatabaseConfig(dialect)));
        const keyFile = path.join(dataDir, 'vault.key');
        assert.equal(run(env, ['migrate']).code, 0);
        const d = run(env, ['doctor']);
        assert.match(d.stdout, /ok {4}vault key: No key yet and no secret stored: `juniper serve` creates one on first start/);
        const s = run(env, ['vault', 'status']);
        assert.equal(s.code, 0, s.stderr);
        assert.match(s.stdout, /No secret is stored yet/);
        assert.ok(!fs.existsSync(keyFile), 'read-only commands create no key');
        assert.equal(run(env, ['params', 'list']).code, 0);
        const first = fs.readFileSync(keyFile, 'utf8');
        assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
        assert.equal(run(env, ['params', 'list']).code, 0);
        assert.equal(fs.readFileSync(keyFile, 'utf8'), first, 'the key is made once');
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
}
