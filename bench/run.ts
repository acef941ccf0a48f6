// Benchmarks, printed as figures measured side by side in one run (never as pass/fail timing tests).
// 1. Outgoing throughput on SQLite through a real SMTP server (STARTTLS + AUTH on loopback): the dispatcher
//    claiming one mail per round versus its default batch of 50 over pooled connections.
// 2. Routing decisions per second with 50 servers, cold (parsing every filter) as the dispatcher runs it.
// Usage: npm run bench   (N=1000 npm run bench for more mails)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliActor } from '../src/audit/audit-log.js';
import { createApp } from '../src/app.js';
import { cliPrincipal } from '../src/cli/principal.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/lib/logger.js';
import { Dispatcher, defaultDispatcherOptions } from '../src/outgoing/dispatcher.js';
import { routeMail, type RoutableServer } from '../src/outgoing/routing.js';
import { TransportPool } from '../src/outgoing/transport-pool.js';
import { startSmtpSink } from '../test/peers/smtp-sink.js';

const N = Number(process.env.N ?? 500);

async function dispatchRun(batchSize: number): Promise<number> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-bench-'));
  const app = await createApp(loadConfig({ JUNIPER_DATA_DIR: dataDir }), { logger: createLogger('silent') });
  const sink = await startSmtpSink({ auth: 'password', passwords: { 'bench@example.com': 'pw' } });
  try {
    await app.services.outgoingServers.create(
      { name: 'sink', host: '127.0.0.1', port: sink.port, security: 'starttls', auth: 'password', username: 'bench@example.com', password: 'pw', fromFilter: null, priority: 10, active: true, allowSelfSigned: true },
      cliPrincipal,
      cliActor,
    );
    for (let i = 0; i < N; i++) {
      await app.services.outbox.enqueue({ from: 'bench@example.com', to: [`r${i}@client.test`], subject: `bench ${i}`, text: 'hello' }, null, cliActor);
    }
    const dispatcher = new Dispatcher(
      {
        queue: app.services.queue,
        servers: app.services.outgoingServers,
        parameters: app.services.parameters,
        transports: new TransportPool((s) => app.services.outgoingServers.password(s), app.services.tokens, app.services.outgoingServers.hostGuard),
        log: app.logger,
      },
      { ...defaultDispatcherOptions, batchSize },
    );
    const start = process.hrtime.bigint();
    while ((await dispatcher.runOnce()) > 0);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    await dispatcher.stop();
    if (sink.messages.length !== N) throw new Error(`expected ${N} mails at the sink, got ${sink.messages.length}`);
    return N / seconds;
  } finally {
    await sink.stop();
    await app.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

function routingRun(): number {
  const servers: RoutableServer[] = Array.from({ length: 50 }, (_, i) => ({ id: i + 1, name: `s${i}`, fromFilter: `user${i}@example.com, dept${i}.example.com`, priority: i, active: true }));
  const params = { defaultFrom: 'notifications@example.com', bounceAddress: 'bounce@example.com', massMailingDedicated: false, massMailingServerId: null };
  const rounds = 20_000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) routeMail({ from: `"Person ${i}" <someone${i % 97}@other.example>` }, servers, params);
  return rounds / (Number(process.hrtime.bigint() - start) / 1e9);
}

const one = await dispatchRun(1);
const fifty = await dispatchRun(defaultDispatcherOptions.batchSize);
const routes = routingRun();
console.log(`outgoing, ${N} mails, SQLite → smtp-server (STARTTLS + AUTH), 2 pooled connections:`);
console.log(`  batch 1:  ${one.toFixed(0)} mails/s`);
console.log(`  batch ${defaultDispatcherOptions.batchSize}: ${fifty.toFixed(0)} mails/s  (${(fifty / one).toFixed(2)}x batch 1)`);
console.log(`routing, 50 servers, fallback to the notifications server (worst case): ${routes.toFixed(0)} decisions/s`);
