// `juniper worker` processes for the benchmarks that need more than one process on one database (tokens,
// scale-out): the built CLI (bin/juniper.js → dist/, `npm run build`), each with the environment of the
// benchmark's app (its database and data dir, hence its vault key), started and stopped as an operator would.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { Config } from '../src/config.js';
import { projectRoot } from '../test/helpers/project-root.js';

const root = projectRoot;

export interface WorkerProcess {
  child: ChildProcess;
  /** The dispatcher's owner name: what it writes in lease_owner and sent_by. */
  owner: string;
  /** Every log line with this `msg` so far (the workers log JSON lines on stdout). */
  count(msg: string): number;
}

/** The environment of a worker sharing the app's database and data dir; nothing inherited that would change them. */
export function workerEnv(config: Config, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, JUNIPER_DATA_DIR: config.dataDir, JUNIPER_LOG_LEVEL: 'info', ...extra };
  delete env.JUNIPER_SECRET_KEY;
  delete env.JUNIPER_BASE_URL;
  env.DATABASE_URL = config.database.kind === 'postgres' ? config.database.url : `sqlite:${config.database.file}`;
  return env;
}

/** Starts `juniper worker` and resolves once it logged that it started (its dispatcher's loop then runs). */
export function startWorker(env: NodeJS.ProcessEnv, nodeArgs: readonly string[] = [], timeoutMs = 60_000): Promise<WorkerProcess> {
  const entry = path.join(root, 'dist/app/main.js');
  const child = spawn(process.execPath, [...nodeArgs, path.join(root, 'bin/juniper.js'), 'worker'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[worker ${child.pid}] ${d.toString()}`));
  const seen = new Map<string, number>();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`juniper worker did not start within ${timeoutMs} ms (is ${entry} built? run npm run build)`));
    }, timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`juniper worker exited before it started (code ${code}, signal ${signal})`));
    });
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let entryLine: { msg?: unknown; owner?: unknown; level?: unknown };
      try {
        entryLine = JSON.parse(line) as typeof entryLine;
      } catch {
        return;
      }
      const msg = typeof entryLine.msg === 'string' ? entryLine.msg : '';
      seen.set(msg, (seen.get(msg) ?? 0) + 1);
      if (typeof entryLine.level === 'number' && entryLine.level >= 40) process.stderr.write(`[worker ${child.pid}] ${line}\n`);
      if (msg === 'Juniper worker started' && typeof entryLine.owner === 'string') {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve({ child, owner: entryLine.owner, count: (m) => seen.get(m) ?? 0 });
      }
    });
  });
}

/** CPU seconds (user + system) a live process has used so far, from /proc (Linux); NaN elsewhere. */
export function cpuSecondsOf(pid: number | undefined): number {
  try {
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th (clock ticks, 100 a second).
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** SIGTERM (the worker finishes its sends and exits), SIGKILL after timeoutMs. */
export async function stopWorkers(workers: readonly WorkerProcess[], timeoutMs = 20_000): Promise<void> {
  await Promise.all(
    workers.map(
      ({ child }) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
}
