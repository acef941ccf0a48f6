// The `juniper` command as a user runs it: real processes, real data directory, both databases.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cliEnv, projectRoot, runJuniper } from '../helpers/cli.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';
import { freePort } from '../peers/free-port.js';
import { startSmtpSink } from '../peers/smtp-sink.js';

const root = projectRoot;

const envFor = cliEnv;
const juniper = runJuniper;

for (const dialect of dialects) {
  describe(`juniper CLI on ${dialect}`, () => {
    it('creates an admin and an API key, keeps parameters across runs, and refuses a bad domain naming the key and rule', async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-cli-'));
      const db = await freshDatabaseConfig(dialect);
      const env = envFor(dataDir, db.kind === 'postgres' ? db.url : undefined);

      const created = juniper(env, ['users', 'create', '--login', 'Admin', '--email', 'admin@example.com', '--admin', '--password', 'a-long-password']);
      assert.equal(created.code, 0, created.stderr);
      assert.match(created.stdout, /Created admin admin/);

      const key = juniper(env, ['api-keys', 'create', '--user', 'admin']);
      assert.equal(key.code, 0, key.stderr);
      assert.match(key.stdout, /^jnp_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}\n$/, 'prints only the key');
      assert.match(juniper(env, ['api-keys', 'list']).stdout, /^\d+\tjnp_[A-Za-z0-9]{8}…\tadmin\tapi key\tnever used\n$/, 'keys are listed with their user\'s login');

      const set = juniper(env, ['params', 'set', 'mail.catchall.domain', 'Example.COM']);
      assert.equal(set.code, 0, set.stderr);
      const get = juniper(env, ['params', 'get', 'mail.catchall.domain']);
      assert.equal(get.code, 0, get.stderr);
      assert.match(get.stdout, /example\.com/);

      const bad = juniper(env, ['params', 'set', 'mail.catchall.domain', 'not a domain']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /mail\.catchall\.domain/);
      assert.match(bad.stderr, /domain name/);
      assert.match(juniper(env, ['params', 'get', 'mail.catchall.domain']).stdout, /example\.com/, 'the bad value changed nothing');

      const users = juniper(env, ['users', 'list']);
      assert.match(users.stdout, /admin\tadmin@example\.com\tadmin/);

      if (dialect === 'sqlite') {
        assert.ok(fs.existsSync(path.join(dataDir, 'juniper.sqlite')), 'SQLite data lands in the data dir');
      }
      const mode = fs.statSync(path.join(dataDir, 'vault.key')).mode & 0o777;
      assert.equal(mode, 0o600, `vault key mode ${mode.toString(8)}`);

      // A server's certificate check turned off and on again, and an archived server brought back, from the shell.
      const server = juniper(env, ['servers', 'create', '--name', 'Relay', '--host', '192.0.2.25', '--port', '587', '--security', 'starttls', '--auth', 'none', '--allow-self-signed']);
      assert.equal(server.code, 0, server.stderr);
      const sid = /^(\d+)\t/.exec(server.stdout)?.[1] ?? '';
      const shown = () => JSON.parse(juniper(env, ['servers', 'show', sid, '--json']).stdout) as { allowSelfSigned: boolean; archived: boolean; active: boolean };
      assert.equal(shown().allowSelfSigned, true);
      const checked = juniper(env, ['servers', 'update', sid, '--no-allow-self-signed']);
      assert.equal(checked.code, 0, checked.stderr);
      assert.equal(shown().allowSelfSigned, false);
      assert.equal(juniper(env, ['servers', 'archive', sid]).code, 0);
      assert.equal(shown().archived, true);
      const restored = juniper(env, ['servers', 'restore', sid]);
      assert.equal(restored.code, 0, restored.stderr);
      assert.match(restored.stdout, new RegExp(`^Restored Relay \\(id ${sid}\\); (active|inactive until update ${sid} --active)\\.\\n$`));
      assert.equal(shown().archived, false);
      assert.match(juniper(env, ['servers', 'list']).stdout, /\tRelay\t/, 'listed again');
    });
  });
}

describe('juniper CLI errors', () => {
  it('explains a bad DATABASE_URL and an unknown user without a stack trace', () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-cli-'));
    const bad = juniper({ ...envFor(dataDir), DATABASE_URL: 'mysql://x' }, ['users', 'list']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^juniper: DATABASE_URL must start with postgres:\/\//);
    const unknown = juniper(envFor(dataDir), ['api-keys', 'create', '--user', 'nobody']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No user with login "nobody"/);
    assert.doesNotMatch(unknown.stderr, /at .*\.ts:\d+/);
  });
});

describe('npm start (the built juniper serve)', () => {
  it('serves /healthz and the sign-in page, prints a one-time setup link, and stops cleanly on SIGTERM', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-serve-'));
    const port = await freePort();
    const help = spawnSync(process.execPath, ['bin/juniper.js', '--help'], { cwd: root, encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /serve/);

    const child = spawn(process.execPath, ['bin/juniper.js', 'serve'], { cwd: root, env: { ...envFor(dataDir), JUNIPER_PORT: String(port) } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const base = `http://127.0.0.1:${port}`;
      let health: Response | undefined;
      for (let i = 0; i < 100 && !health; i++) {
        health = await fetch(`${base}/healthz`).catch(() => undefined);
        if (!health) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(health?.status, 200, out);
      const login = await fetch(`${base}/login`);
      assert.equal(login.status, 200);
      assert.match(await login.text(), /Sign in to Juniper/);
      for (let i = 0; i < 50 && !out.includes('/setup?token='); i++) await new Promise((r) => setTimeout(r, 100));
      const link = /(http:\/\/\S+\/setup\?token=\S+)/.exec(out)?.[1];
      assert.ok(link, `setup link printed: ${out}`);
      assert.equal((await fetch(link)).status, 200);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, out);
  });

  it('with JUNIPER_PORT=0 prints the port it really got, in the listening line and the setup link', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-serve-'));
    const child = spawn(process.execPath, ['bin/juniper.js', 'serve', '--no-workers'], { cwd: root, env: { ...envFor(dataDir), JUNIPER_PORT: '0' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      for (let i = 0; i < 100 && !out.includes('/setup?token='); i++) await new Promise((r) => setTimeout(r, 100));
      const listening = /Juniper listening on http:\/\/localhost:(\d+)/.exec(out)?.[1];
      const link = /(http:\/\/localhost:(\d+)\/setup\?token=\S+)/.exec(out);
      assert.ok(listening && link, out);
      assert.notEqual(listening, '0', out);
      assert.equal(link[2], listening, 'the setup link names the same port');
      assert.equal((await fetch(link[1]!.replace('localhost', '127.0.0.1'))).status, 200, 'and it answers');
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, out);
  });
});

describe('juniper serve --no-workers', () => {
  it('serves the UI and API but sends nothing itself: a queued mail waits for a juniper worker process, which sends it', async () => {
    const sink = await startSmtpSink({ auth: 'none', tls: 'none' });
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-web-only-'));
    const env = envFor(dataDir);
    const server = runJuniper(env, ['servers', 'create', '--name', 'Sink', '--host', '127.0.0.1', '--port', String(sink.port), '--security', 'none', '--auth', 'none', '--from-filter', 'example.com']);
    assert.equal(server.code, 0, server.stderr);
    const port = await freePort();
    const started = (args: string[], extra: NodeJS.ProcessEnv = {}) => {
      const child = spawn(process.execPath, ['bin/juniper.js', ...args], { cwd: root, env: { ...env, ...extra } });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      return { child, out: () => out, exited: new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code))) };
    };
    const web = started(['serve', '--no-workers'], { JUNIPER_PORT: String(port) });
    let worker: ReturnType<typeof started> | undefined;
    try {
      // The line comes once the workers would have started, which is after the listening line.
      for (let i = 0; i < 100 && !web.out().includes('no background workers'); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(web.out(), /Juniper listening/);
      assert.match(web.out(), /no background workers in this process \(--no-workers\)/);
      const queued = runJuniper(env, ['send', '--from', 'jane@example.com', '--to', 'c@client.test', '--subject', 'web only', '--text', 'hello']);
      assert.equal(queued.code, 0, queued.stderr);
      // serve polls nothing: well past a dispatcher's poll (1 s) the mail is still queued and the sink saw nothing.
      await new Promise((r) => setTimeout(r, 2500));
      assert.match(runJuniper(env, ['mails', 'list']).stdout, /\tqueued\t/);
      assert.equal(sink.messages.length, 0);
      worker = started(['worker']);
      await sink.waitFor(1, 30_000);
      assert.match(sink.messages[0]!.raw.toString(), /Subject: web only/);
    } finally {
      web.child.kill('SIGTERM');
      worker?.child.kill('SIGTERM');
      await sink.stop();
    }
    assert.equal(await web.exited, 0, web.out());
    assert.equal(await worker?.exited, 0, worker?.out());
  });
});
