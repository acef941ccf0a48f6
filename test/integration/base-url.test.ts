// Juniper's public address as a new admin meets it, in real `juniper serve` and `juniper doctor` processes: the
// setup link printed on a loopback listener is the localhost address (the one Microsoft accepts over http, the one
// README names), and a JUNIPER_BASE_URL that a stored web.base.url overrides on a later start is said, naming
// both and how to change the parameter, in the log and by doctor.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cliEnv, runJuniper } from '../helpers/cli.js';
import { startJuniper, until, type JuniperProcess } from '../helpers/processes.js';
import { freePort } from '../peers/free-port.js';

async function serveUntilSetupLink(env: NodeJS.ProcessEnv): Promise<{ proc: JuniperProcess; link: string }> {
  const proc = startJuniper(env, ['serve']);
  let link: string | undefined;
  await until(() => (link = /(\S+\/setup\?token=\S+)/.exec(proc.output())?.[1]) !== undefined || proc.child.exitCode !== null, 20_000, () => `the setup link: ${proc.output()}`);
  assert.ok(link, proc.output());
  return { proc, link };
}

describe('the public address at start (juniper serve, juniper doctor)', () => {
  it('prints the setup link at http://localhost:PORT on 127.0.0.1, and it works; a stored web.base.url overriding JUNIPER_BASE_URL is logged and doctor warns', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-base-url-'));
    const port = await freePort();
    const env = { ...cliEnv(dataDir), JUNIPER_PORT: String(port), JUNIPER_HOST: '127.0.0.1' };

    const first = await serveUntilSetupLink(env);
    try {
      assert.match(first.link, new RegExp(`^http://localhost:${port}/setup\\?token=[\\w-]+$`), first.proc.output());
      const page = await fetch(first.link);
      assert.equal(page.status, 200, 'the printed link opens the setup page');
      assert.doesNotMatch(first.proc.output(), /JUNIPER_BASE_URL is/);
    } finally {
      assert.equal((await first.proc.kill('SIGTERM')).code, 0, first.proc.output());
    }

    // The admin settles on localhost, then a later start names another address in the environment.
    assert.equal(runJuniper(env, ['params', 'set', 'web.base.url', `http://localhost:${port}`]).code, 0);
    const moved = { ...env, JUNIPER_BASE_URL: 'https://mail.example.com' };
    const second = await serveUntilSetupLink(moved);
    try {
      assert.match(second.link, new RegExp(`^http://localhost:${port}/setup\\?token=`), 'the parameter, which wins, is the printed address');
      await until(() => /JUNIPER_BASE_URL is/.test(second.proc.output()), 5_000, () => `the warning: ${second.proc.output()}`);
      const line = second.proc.output().split('\n').find((l) => l.includes('JUNIPER_BASE_URL is'));
      const entry = JSON.parse(line!) as { level: number; msg: string; env: string; parameter: string };
      assert.equal(entry.level, 40, 'a warning');
      assert.deepEqual([entry.env, entry.parameter], ['https://mail.example.com', `http://localhost:${port}`]);
      assert.match(entry.msg, new RegExp(`JUNIPER_BASE_URL is https://mail\\.example\\.com but the system parameter web\\.base\\.url is http://localhost:${port}, and the parameter wins`));
      assert.match(entry.msg, /run `juniper params set web\.base\.url https:\/\/mail\.example\.com`/);
    } finally {
      await second.proc.kill('SIGTERM');
    }
    assert.equal(runJuniper(moved, ['params', 'get', 'web.base.url']).stdout.trim().endsWith(`http://localhost:${port}`), true, 'the stored value is kept, as documented');

    const doctor = runJuniper(moved, ['doctor']);
    assert.match(doctor.stdout, new RegExp(`^WARN {2}JUNIPER_BASE_URL: JUNIPER_BASE_URL is https://mail\\.example\\.com but the system parameter web\\.base\\.url is http://localhost:${port}`, 'm'), doctor.stdout);
    assert.doesNotMatch(runJuniper(env, ['doctor']).stdout, /JUNIPER_BASE_URL:/, 'no warning without the variable');
  });
});
