// What a CLI command loads: `juniper --help` only commander; a command that reads the database (params list,
// servers list) neither the HTTP layer nor the mail libraries nor, on SQLite, the PostgreSQL driver. Each of
// them costs tens to hundreds of milliseconds of CPU at every start (docs/benchmarks.md, "CLI start"); a static
// import that brings one back fails here rather than in a timing. The CLI is the built one in a child process,
// as admins run it, so nothing this test file loads counts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cliEnv, projectRoot } from '../helpers/cli.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';

function packagesOf(env: NodeJS.ProcessEnv, args: string[]): string[] {
  const preload = path.join(projectRoot, 'test/helpers/loaded-packages.mjs');
  const r = spawnSync(process.execPath, ['--import', preload, 'bin/juniper.js', ...args], { cwd: projectRoot, env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const line = /^loaded-packages: (.*)$/m.exec(r.stderr);
  assert.ok(line, `no package list in stderr: ${r.stderr}`);
  return line[1]!.split(' ');
}

// prom-client too: a one-shot command is never scraped (process-metrics.ts).
const NOT_FOR_A_COMMAND = ['fastify', 'nodemailer', 'mailparser', 'imapflow', 'html-to-text', 'libmime', '@zone-eu/mailsplit', 'prom-client'];

describe('juniper --help', () => {
  it('loads commander and nothing else', () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-footprint-'));
    assert.deepEqual(packagesOf(cliEnv(dataDir), ['--help']), ['commander']);
  });
});

for (const dialect of dialects) {
  describe(`juniper params list and servers list (${dialect})`, () => {
    it('load neither the HTTP layer nor the mail libraries', async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-footprint-'));
      const db = await freshDatabaseConfig(dialect);
      const env = cliEnv(dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`);
      for (const args of [['params', 'list'], ['servers', 'list']]) {
        const loaded = packagesOf(env, args);
        // The list sees both kinds of package: the database driver is CommonJS, kysely ES modules.
        assert.ok(loaded.includes(dialect === 'postgres' ? 'pg' : 'better-sqlite3'), loaded.join(' '));
        assert.ok(loaded.includes('kysely'), loaded.join(' '));
        for (const name of [...NOT_FOR_A_COMMAND, ...(dialect === 'sqlite' ? ['pg'] : [])]) assert.ok(!loaded.includes(name), `${args.join(' ')} loaded ${name}: ${loaded.join(' ')}`);
      }
    });
  });
}
