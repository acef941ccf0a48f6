// `juniper serve` as users run it, with its background workers on the web's own thread (the default) and in a
// thread of their own (--workers-thread): a mail queued through the API is sent at once, the thread's sends
// count in the process's metrics, and SIGTERM stops both. The dispatcher polls once a minute here
// (JUNIPER_SEND_POLL_SECONDS=60) and every wait ends well within that minute, so only the main thread's
// wake-up can explain a send.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startThreadWorkers } from '../../src/worker/thread-workers.js';
import { startTestApp } from '../helpers/app.js';
import { cliEnv, runJuniper } from '../helpers/cli.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';
import { startJuniper, until } from '../helpers/processes.js';
import { freePort } from '../peers/free-port.js';
import { startSmtpSink } from '../peers/smtp-sink.js';

const WITHIN_MS = 20_000;

async function metricValue(port: number, line: RegExp): Promise<number | undefined> {
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = line.exec(body);
  return m ? Number(m[1]) : undefined;
}

for (const dialect of dialects) {
  for (const mode of ['thread', 'main'] as const) {
    describe(`juniper serve on ${dialect}, workers in ${mode === 'thread' ? 'their own thread (--workers-thread)' : 'the web\'s thread (the default)'}`, () => {
      it('sends a mail queued through the API at once, counts it in GET /metrics and stops on SIGTERM', async () => {
        const sink = await startSmtpSink({ auth: 'none', tls: 'none' });
        const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-serve-workers-'));
        const db = await freshDatabaseConfig(dialect);
        const env = cliEnv(dataDir, db.kind === 'postgres' ? db.url : undefined);
        const created = runJuniper(env, ['servers', 'create', '--name', 'Sink', '--host', '127.0.0.1', '--port', String(sink.port), '--security', 'none', '--auth', 'none', '--from-filter', 'example.com']);
        assert.equal(created.code, 0, created.stderr);
        assert.equal(runJuniper(env, ['users', 'create', '--login', 'admin', '--email', 'admin@example.com', '--admin', '--password', 'a-long-password']).code, 0);
        const key = runJuniper(env, ['api-keys', 'create', '--user', 'admin']).stdout.trim();
        const [port, metricsPort] = [await freePort(), await freePort()];
        const serve = startJuniper({ ...env, JUNIPER_PORT: String(port), JUNIPER_METRICS_PORT: String(metricsPort), JUNIPER_SEND_POLL_SECONDS: '60' }, mode === 'thread' ? ['serve', '--workers-thread'] : ['serve']);
        try {
          const startedLine = mode === 'thread' ? 'Juniper workers started in their own thread (--workers-thread)' : "Juniper workers started on the web's own thread";
          await until(() => serve.output().includes(startedLine), 60_000, () => `"${startedLine}" in:\n${serve.output()}`);
          const owner = /"owner":"([^"]+)","workers":"(?:thread|main thread)"/.exec(serve.output())?.[1];
          assert.ok(owner?.includes(`:${serve.pid}:`), `the workers' owner names this process (${serve.pid}): ${owner}`);

          const res = await fetch(`http://127.0.0.1:${port}/api/v1/mails`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ from: 'jane@example.com', to: ['c@client.test'], subject: 'through the thread', text: 'hello' }),
          });
          assert.equal(res.status, 202, await res.clone().text());
          const { id } = (await res.json()) as { id: number };
          await sink.waitFor(1, WITHIN_MS);
          assert.match(sink.messages[0]!.raw.toString(), /Subject: through the thread/);

          const shown = runJuniper(env, ['mails', 'show', String(id)]);
          await until(() => /sent/.test(runJuniper(env, ['mails', 'show', String(id)]).stdout), WITHIN_MS, () => `mail ${id} recorded as sent: ${shown.stdout}`);
          // The main thread sent nothing itself: a 1 here is the workers thread's counter, summed in.
          const sent = await metricValue(metricsPort, /^juniper_mails_sent_total\{server_id="\d+"\} (\d+)$/m);
          assert.equal(sent, 1, 'the sent mail counted once in this process\'s metrics');
          assert.ok((await metricValue(metricsPort, /^juniper_process_cpu_seconds_total (\S+)$/m)) !== undefined, "Node's process metrics still there, once");
        } finally {
          const exit = await serve.kill('SIGTERM');
          await sink.stop();
          assert.equal(exit.code, 0, serve.output());
        }
        assert.match(serve.output(), /SIGTERM received, shutting down/);
        assert.doesNotMatch(serve.output(), /"level":60|stopped unexpectedly/);
      });
    });
  }
}

describe('the workers thread', () => {
  it('that cannot start says why, and startThreadWorkers refuses instead of leaving serve without workers', async () => {
    const t = await startTestApp('sqlite');
    try {
      // A directory where the database file should be: the thread's own open fails.
      const broken = { ...t.app, config: { ...t.app.config, database: { kind: 'sqlite' as const, file: t.config.dataDir } } };
      await assert.rejects(startThreadWorkers(broken), (e: Error) => {
        assert.match(e.message, /^The background workers could not start: /);
        assert.ok(e.message.length > 'The background workers could not start: '.length + 5, e.message);
        return true;
      });
    } finally {
      await t.close();
    }
  });
});
