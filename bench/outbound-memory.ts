// Outbound memory: the peak resident size of a `juniper worker` process (the compiled CLI, as operators run
// it) while it sends a queue in which 10 % of the mails carry a 1 MB attachment of their own. The mails are
// enqueued first by this process (not measured); the sink and the identity server run here too, so the
// worker's figure is Juniper's alone. Peak = the kernel's high-water mark (VmHWM) of the worker, read just
// before it is stopped.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { cliActor } from '../src/audit/audit-log.js';
import type { DialectName } from '../src/db/database.js';
import { cliEnv } from '../test/helpers/cli.js';
import { secondsSince, startOutlookBench, until } from './outlook-setup.js';
import { projectRoot } from '../test/helpers/project-root.js';

/** The target for the worker's peak resident size. */
export const MEMORY_TARGET_MB = 200;
const ATTACHMENT_BYTES = 1024 * 1024;
/** One mail in this many carries an attachment. */
const ATTACHMENT_EVERY = 10;

export interface MemoryFigures {
  dialect: DialectName;
  mails: number;
  withAttachment: number;
  /** Resident size of the worker once started, before it had mails to send. */
  idleMb: number;
  peakMb: number;
  mailsPerSecond: number;
}

const root = projectRoot;

/**
 * Builds dist/ when any source file the build takes (tests excluded) is newer than the bundle the worker runs
 * (dist/app/meta.json, written last by `npm run build`). The build is the project's own and changes nothing when
 * nothing changed; it replaces the bundle file by file, so the `juniper` processes other test files are starting
 * meanwhile never find it missing.
 */
function ensureBuilt(): void {
  const meta = path.join(root, 'dist/app/meta.json');
  const built = fs.existsSync(meta) ? fs.statSync(meta).mtimeMs : 0;
  const newest = (dir: string): number =>
    fs.readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
      if (e.isDirectory()) return Math.max(m, newest(path.join(dir, e.name)));
      return e.name.endsWith('.test.ts') ? m : Math.max(m, fs.statSync(path.join(dir, e.name)).mtimeMs);
    }, 0);
  if (newest(path.join(root, 'src')) > built) execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
}

/** A kernel memory figure of a live process in MB (VmRSS, VmHWM); NaN where /proc does not exist. */
function procMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

const exited = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

export async function outboundMemory(dialect: DialectName, n: number): Promise<MemoryFigures> {
  ensureBuilt();
  const b = await startOutlookBench(dialect, 4);
  let child: ChildProcess | undefined;
  try {
    const { outbox, queue } = b.t.app.services;
    let withAttachment = 0;
    for (let i = 0; i < n; i++) {
      const attach = i % ATTACHMENT_EVERY === 0;
      if (attach) withAttachment++;
      await outbox.enqueue(
        {
          from: b.mailboxes[i % b.mailboxes.length]!,
          to: [`r${i}@client.test`],
          subject: `memory ${i}`,
          text: `hello ${i}\n`,
          // Each its own bytes: a shared PDF would be read once and cached, which is the easy case.
          attachments: attach ? [{ filename: `report-${i}.pdf`, contentType: 'application/pdf', contentBase64: crypto.randomBytes(ATTACHMENT_BYTES).toString('base64') }] : [],
        },
        null,
        cliActor,
      );
    }
    const db = b.t.config.database;
    // At info the worker says when it has started (and hardly anything else: each sent mail is a debug line).
    const env = { ...cliEnv(b.t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), JUNIPER_LOG_LEVEL: 'info' };
    const before = b.sink.messages.length;
    const start = process.hrtime.bigint();
    child = spawn(process.execPath, [path.join(root, 'bin/juniper.js'), 'worker'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[memory worker] ${d.toString()}`));
    const pid = child.pid!;
    let idleMb = NaN;
    child.stdout?.on('data', (d: Buffer) => {
      if (Number.isNaN(idleMb) && d.toString().includes('Juniper worker started')) idleMb = procMb(pid, 'VmRSS');
    });
    await until(async () => {
      if (child!.exitCode !== null) throw new Error(`the memory worker exited with code ${child!.exitCode}`);
      return b.sink.messages.length - before >= n;
    }, `${n} mails at the sink`, 600_000, 20);
    const seconds = secondsSince(start);
    const peakMb = procMb(pid, 'VmHWM');
    child.kill('SIGTERM');
    await exited(child);
    const states = await queue.countByState();
    if (b.sink.messages.length - before !== n || states.queued + states.failed > 0) throw new Error(`memory: expected ${n} mails sent, got ${b.sink.messages.length - before} (${JSON.stringify(states)})`);
    return { dialect, mails: n, withAttachment, idleMb, peakMb, mailsPerSecond: n / seconds };
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    await b.close();
  }
}

export function printOutboundMemory(f: MemoryFigures): void {
  console.log(`outbound memory, ${f.dialect}, ${f.mails} mails (${f.withAttachment} with a 1 MB attachment of their own) sent by one juniper worker process:`);
  console.log(`  worker resident size: ${f.idleMb.toFixed(0)} MB started, ${f.peakMb.toFixed(0)} MB peak (VmHWM); ${f.mailsPerSecond.toFixed(0)} mails/s`);
  console.log(`ratio outbound memory ${f.dialect}: peak ${f.peakMb.toFixed(0)} MB / target ${MEMORY_TARGET_MB} MB = ${(f.peakMb / MEMORY_TARGET_MB).toFixed(2)}x (target <= 1.00x)`);
}
