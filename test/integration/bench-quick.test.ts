// `npm run bench -- --quick` inside the suite: only proves the benchmark code still works end to end (every
// mail of every run reaches the sink, each benchmark prints its ratio line). Figures are never asserted here:
// speed goals live in `npm run bench`, on a quiet machine.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { postgresUrl } from '../helpers/databases.js';
import { projectRoot } from '../helpers/cli.js';
import { moduleArgs } from '../helpers/project-root.js';

describe('npm run bench -- --quick', () => {
  it('runs every benchmark on both databases and prints a ratio line for each', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [...moduleArgs(import.meta.url, 'bench/run'), '--quick'], {
      cwd: projectRoot,
      env: { ...process.env, JUNIPER_TEST_PG_URL: postgresUrl() },
      // Generous: on a loaded two-core machine the quick run has taken 240 s (140 s when quiet).
      timeout: 480_000,
    });
    for (const dialect of ['sqlite', 'postgres']) {
      // One round with --quick: a ratio each, no spread.
      assert.match(stdout, new RegExp(`^ratio outbound ${dialect}: juniper/raw \\d+\\.\\d\\dx, end-to-end/raw \\d+\\.\\d\\dx, end-to-end workers thread/raw \\d+\\.\\d\\dx, batch end-to-end/raw \\d+\\.\\d\\dx, end-to-end web\\+worker apart/raw \\d+\\.\\d\\dx$`, 'm'), stdout);
      assert.match(stdout, new RegExp(`^outbound, ${dialect}, 100 mails .* 1 round of every phase:$`, 'm'), stdout);
      assert.match(stdout, new RegExp(`^ratio inbound ${dialect}: juniper/raw \\d+\\.\\d\\dx$`, 'm'), stdout);
      assert.match(stdout, new RegExp(`^ratio outbound memory ${dialect}: peak \\d+ MB / target 200 MB = \\d+\\.\\d\\dx \\(target <= 1\\.00x\\)$`, 'm'), stdout);
      assert.match(stdout, new RegExp(`^ratio tokens ${dialect}: refreshes seen/expected \\d+/2 \\(\\d+\\.\\d\\dx, target 1\\.00x\\), 8 senders in 2 processes across 1 expiry$`, 'm'), stdout);
    }
    assert.match(stdout, /^ratio scale-out postgres: 2w\/1w \d+\.\d\dx \(target >= 1\.8x\), 4w\/1w \d+\.\d\dx \(target >= 3\.2x\); all workers active \S+, \S+; median of 1 cycle; raw nodemailer 2p\/1p \S+, 4p\/1p \S+; runs where a worker sent nothing \d; sent twice 0$/m, stdout);
  });
});
