// What the outbound benchmarks share: a Juniper app with N Outlook outgoing servers, each connected through
// the loopback identity server (the real connect flow) and pointing at one smtp-server sink that checks
// every XOAUTH2 token at that identity server, as Microsoft 365 does.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { cliActor } from '../src/audit/audit-log.js';
import type { DialectName } from '../src/db/database.js';
import { startTestApp, type TestApp } from '../test/helpers/app.js';
import { connectOutlook, signIn, type BrowserSession } from '../test/helpers/outlook.js';
import { startIdentityServer, type IdentityServer } from '../test/peers/identity-server.js';
import { startSmtpSink, type SmtpSink } from '../test/peers/smtp-sink.js';
import { startSinkProcess } from './sink-process.js';

export interface OutlookBench {
  t: TestApp;
  http: FastifyInstance;
  idp: IdentityServer;
  sink: SmtpSink;
  /** SINK=process only: the sink process's CPU time so far, µs (see sink-process.ts). */
  sinkCpu?: () => Promise<number>;
  admin: BrowserSession;
  adminKey: string;
  /** One mailbox per server; each server's From filter is its mailbox. */
  mailboxes: string[];
  serverIds: number[];
  close(): Promise<void>;
}

/** Connections per server, set on each server (poolSize); the raw baseline opens as many. */
export const CONNECTIONS_PER_SERVER = 2;

export async function startOutlookBench(dialect: DialectName, servers: number): Promise<OutlookBench> {
  const idp = await startIdentityServer();
  // Each connection checks its token once at the identity server; the sink keeps no more than counts and ids.
  const apart = process.env.SINK === 'process' ? await startSinkProcess(idp.url) : undefined;
  const sink = apart?.sink ?? (await startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url, tls: 'starttls' }));
  const t = await startTestApp(dialect, { logLevel: 'warn' });
  const http = await t.app.http();
  const user = await t.createUser('admin', 'admin');
  const admin = await signIn(http, 'admin', user.password);
  const { parameters, settings } = t.app.services;
  await parameters.set('web.base.url', 'https://juniper.example.com', cliActor);
  await parameters.set('microsoft_outlook.endpoint', `${idp.url}/common/oauth2/v2.0/`, cliActor);
  await settings.update({ customEmailServers: true, outlook: { enabled: true, clientId: '3f2504e0-4f89-41d3-9a0c-0305e82c3301', clientSecret: 'bench-secret-0123456789abcdefghij' } }, cliActor);
  const mailboxes = Array.from({ length: servers }, (_, i) => `sender${i}@example.test`);
  const serverIds: number[] = [];
  for (const mailbox of mailboxes) {
    const res = await http.inject({
      method: 'POST',
      url: '/api/v1/outgoing-servers',
      headers: { cookie: admin.cookie, 'x-csrf-token': admin.csrfToken },
      // The rate limit is off: the sink is no Microsoft 365, and the figures are about Juniper's own cost.
      payload: { name: mailbox, auth: 'outlook', username: mailbox, host: '127.0.0.1', port: sink.port, allowSelfSigned: true, poolSize: CONNECTIONS_PER_SERVER, ratePerMinute: 0 },
    });
    assert.equal(res.statusCode, 201, res.body);
    const id = res.json<{ id: number }>().id;
    const confirmed = await connectOutlook(http, admin, 'outgoing', id);
    assert.equal(confirmed.statusCode, 303, confirmed.body);
    serverIds.push(id);
  }
  return {
    t,
    http,
    idp,
    sink,
    ...(apart ? { sinkCpu: apart.cpu } : {}),
    admin,
    adminKey: user.apiKey,
    mailboxes,
    serverIds,
    async close() {
      await t.close();
      await sink.stop();
      await idp.stop();
    },
  };
}

/** Seconds since `start` (a process.hrtime.bigint() reading). */
export const secondsSince = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

/** Resolves once `done()` holds, looking every `everyMs`; fails after `timeoutMs` with `what`. */
export async function until(done: () => Promise<boolean>, what: string, timeoutMs = 600_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`benchmark timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** OUTBOUND_PROFILE=<dir>: a CPU profile of one phase alone (`<name>.cpuprofile`, for Chrome DevTools or speedscope). */
export async function profilePhase(name: string | undefined): Promise<() => Promise<void>> {
  const dir = process.env.OUTBOUND_PROFILE;
  if (!dir || name === undefined) return async () => {};
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  };
}
