// What a `juniper worker` that only sends carries: the IMAP client and the message parser load with the first
// incoming connection or message (incoming-mail.ts, parse-on-demand.ts), not at start. They are about 20 MB of
// a worker's resident size (docs/benchmarks.md, "Sixth round, memory"). The worker is the built CLI in a child
// process, as operators run it, so nothing this test file loads counts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cliEnv, projectRoot } from '../helpers/cli.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';

/** Runs `juniper worker` until it has started and made its first rounds, stops it, returns what it had loaded. */
async function packagesOfAWorker(env: NodeJS.ProcessEnv): Promise<string[]> {
  const preload = path.join(projectRoot, 'test/helpers/loaded-packages.mjs');
  const child = spawn(process.execPath, ['--import', preload, 'bin/juniper.js', 'worker'], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const end = Date.now() + 30_000;
  while (!stdout.includes('Juniper worker started')) {
    if (child.exitCode !== null || Date.now() > end) throw new Error(`the worker did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // A few dispatcher and fetch-scheduler rounds: nothing in them may load the incoming side either.
  await new Promise((r) => setTimeout(r, 1500));
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  const line = /^loaded-packages: (.*)$/m.exec(stderr);
  assert.ok(line, `no package list in the worker's stderr: ${stderr}`);
  return line[1]!.split(' ');
}

for (const dialect of dialects) {
  describe(`a sending-only juniper worker (${dialect})`, () => {
    it('has loaded neither the IMAP client nor the message parser', async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-footprint-'));
      const db = await freshDatabaseConfig(dialect);
      const loaded = await packagesOfAWorker({ ...cliEnv(dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), JUNIPER_LOG_LEVEL: 'info' });
      // The list sees CommonJS packages at all: the database driver is one.
      assert.ok(loaded.includes(dialect === 'postgres' ? 'pg' : 'better-sqlite3'), loaded.join(' '));
      for (const name of ['imapflow', 'libmime', 'iconv-lite', '@zone-eu/mailsplit']) assert.ok(!loaded.includes(name), `${name} is loaded: ${loaded.join(' ')}`);
    });
  });
}
