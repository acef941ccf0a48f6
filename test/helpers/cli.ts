// Runs `juniper …` as a user does: the built CLI (bin/juniper.js → dist/, which scripts/test.sh builds
// first) in a real process with its own environment.
import { spawn, spawnSync } from 'node:child_process';

import { projectRoot } from './project-root.js';

export { projectRoot };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment for a CLI run: the given data dir and database, nothing inherited that would change them. */
export function cliEnv(dataDir: string, databaseUrl?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, JUNIPER_DATA_DIR: dataDir, JUNIPER_LOG_LEVEL: 'info' };
  delete env.DATABASE_URL;
  delete env.JUNIPER_SECRET_KEY;
  delete env.JUNIPER_BASE_URL;
  if (databaseUrl) env.DATABASE_URL = databaseUrl;
  return env;
}

export function runJuniper(env: NodeJS.ProcessEnv, args: string[], input = ''): CliResult {
  const r = spawnSync(process.execPath, ['bin/juniper.js', ...args], { cwd: projectRoot, env, input, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** runJuniper without blocking this process: for a CLI run that calls a peer living in the test process (the identity server). */
export function runJuniperAsync(env: NodeJS.ProcessEnv, args: string[], input = ''): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/juniper.js', ...args], { cwd: projectRoot, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}
