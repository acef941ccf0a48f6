// `juniper worker` processes against one database: a worker killed mid-batch loses no mail (its leases
// expire and another worker sends them), and two workers on PostgreSQL deliver 1,000 mails exactly once.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { cliActor } from '../../src/audit/audit-log.js';
import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { cliPrincipal } from '../../src/cli/principal.js';
import { cliEnv, projectRoot } from '../helpers/cli.js';
import { freshDatabaseConfig } from '../helpers/databases.js';
import { headersOf } from '../helpers/outgoing.js';
import { startSmtpSink, type SmtpSink } from '../peers/smtp-sink.js';

interface Setup {
  app: App;
  env: NodeJS.ProcessEnv;
  sink: SmtpSink;
}

async function setup(dialect: 'sqlite' | 'postgres', extraEnv: Record<string, string>): Promise<Setup> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-workers-'));
  const db = await freshDatabaseConfig(dialect);
  const env = { ...cliEnv(dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`), JUNIPER_LOG_LEVEL: 'warn', ...extraEnv };
  const app = await createApp(loadConfig(env), { logger: createLogger('silent') });
  const sink = await startSmtpSink({ auth: 'password', passwords: { 'notifications@example.com': 'pw' } });
  await app.services.outgoingServers.create(
    { name: 'sink', host: '127.0.0.1', port: sink.port, security: 'starttls', auth: 'password', username: 'notifications@example.com', password: 'pw', fromFilter: null, priority: 10, active: true, allowSelfSigned: true },
    cliPrincipal,
    cliActor,
  );
  return { app, env, sink };
}

async function enqueue(app: App, n: number): Promise<Set<string>> {
  const ids = new Set<string>();
  for (let i = 0; i < n; i++) {
    const r = await app.services.outbox.enqueue({ from: 'notifications@example.com', to: [`r${i}@client.test`], subject: `mail ${i}`, text: 'hello' }, null, cliActor);
    ids.add(r.messageId);
  }
  return ids;
}

function startWorker(env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, ['bin/juniper.js', 'worker'], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[worker ${child.pid}] ${d.toString()}`));
  return child;
}

const exited = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function messageIdsAtSink(sink: SmtpSink): Promise<string[]> {
  return Promise.all(sink.messages.map(async (m) => (await headersOf(m.raw)).messageId));
}

describe('juniper worker processes', () => {
  const children: ChildProcess[] = [];
  const setups: Setup[] = [];
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map(exited));
    for (const s of setups) {
      await s.sink.stop();
      await s.app.close();
    }
  });

  for (const dialect of ['sqlite', 'postgres'] as const) {
    it(`loses no mail when a worker is killed mid-batch (${dialect})`, async () => {
      const s = await setup(dialect, { JUNIPER_SEND_LEASE_SECONDS: '2', JUNIPER_SEND_BATCH_SIZE: '20' });
      setups.push(s);
      const sent = await enqueue(s.app, 150);
      const first = startWorker(s.env);
      children.push(first);
      await until(() => s.sink.messages.length >= 10, 20_000, 'the first worker to send some mail');
      first.kill('SIGKILL');
      await exited(first);
      const counts = await s.app.services.queue.countByState();
      assert.ok(counts.sent < 150, `the worker died before finishing (${JSON.stringify(counts)})`);
      const second = startWorker(s.env);
      children.push(second);
      await until(async () => (await s.app.services.queue.countByState()).sent === 150, 30_000, 'every mail to be sent');
      second.kill('SIGTERM');
      await exited(second);
      const arrived = new Set(await messageIdsAtSink(s.sink));
      for (const id of sent) assert.ok(arrived.has(id), `mail ${id} was lost`);
      // At-least-once: only mails in flight at the kill can arrive twice, never more than one batch.
      assert.ok(s.sink.messages.length - sent.size <= 20, `${s.sink.messages.length - sent.size} duplicates`);
    });
  }

  it('two workers on PostgreSQL deliver 1,000 mails exactly once', async () => {
    const s = await setup('postgres', { JUNIPER_SEND_BATCH_SIZE: '25' });
    setups.push(s);
    const sent = await enqueue(s.app, 1000);
    const workers = [startWorker(s.env), startWorker(s.env)];
    children.push(...workers);
    await until(async () => (await s.app.services.queue.countByState()).sent === 1000, 60_000, '1,000 mails sent');
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map(exited));
    const ids = await messageIdsAtSink(s.sink);
    assert.equal(ids.length, 1000, 'no mail delivered twice');
    assert.deepEqual(new Set(ids), sent);
    const rows = await s.app.database.db.selectFrom('outgoing_mails').select(['attempts', 'state']).execute();
    assert.ok(rows.every((r) => r.attempts === 1 && r.state === 'sent'), 'each mail claimed once');
  });
});
