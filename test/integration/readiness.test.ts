// /readyz (issue 11): ready only when the database answers, every migration is applied and a worker process
// beats; /healthz stays liveness and answers whatever the rest says. Both databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createApp } from '../../src/app.js';
import { openDatabase } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { Readiness } from '../../src/jobs/readiness.js';
import { aliveWorkers, STALE_AFTER_MS, WorkerHeartbeat } from '../../src/jobs/worker-heartbeat.js';
import { createLogger } from '../../src/lib/logger.js';
import { createWorkers } from '../../src/worker/workers.js';
import { dialects, freshDatabaseConfig } from '../helpers/databases.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

interface ReadyBody {
  status: string;
  database: { ok: boolean; error?: string };
  migrations: { ok: boolean; pending?: string[] };
  workers: { ok: boolean; alive: number; error?: string };
}

for (const dialect of dialects) {
  describe(`readiness and liveness (${dialect})`, () => {
    let t: TestApp;
    let http: FastifyInstance;
    before(async () => {
      t = await startTestApp(dialect);
      http = await t.app.http();
    });
    after(async () => t.close());

    const readyz = async () => {
      const res = await http.inject({ url: '/readyz' });
      return { status: res.statusCode, body: res.json<ReadyBody>() };
    };

    it('is not ready without a worker process, says which check failed, and /healthz still answers 200', async () => {
      const r = await readyz();
      assert.equal(r.status, 503);
      assert.equal(r.body.status, 'not_ready');
      assert.equal(r.body.database.ok, true);
      assert.equal(r.body.migrations.ok, true);
      assert.equal(r.body.workers.ok, false);
      assert.equal(r.body.workers.alive, 0);
      assert.match(r.body.workers.error!, /juniper worker/);
      assert.equal((await http.inject({ url: '/healthz' })).statusCode, 200);
    });

    it('is ready while the workers run, shows no host or pid, and not ready again as soon as they stop', async () => {
      const workers = createWorkers(t.app);
      workers.start();
      try {
        let r = await readyz();
        for (let i = 0; i < 100 && r.status !== 200; i++) {
          await new Promise((res) => setTimeout(res, 20));
          r = await readyz();
        }
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.status, 'ready');
        assert.equal(r.body.workers.alive, 1);
        assert.doesNotMatch(JSON.stringify(r.body), new RegExp(`"pid"|${process.pid}`));
      } finally {
        await workers.stop();
      }
      assert.equal((await readyz()).status, 503);
    });

    it('counts a heartbeat older than the stale limit as dead and a fresh one as alive', async () => {
      const { db } = t.app.database;
      const now = Date.now();
      await new WorkerHeartbeat(db, 'old-worker', () => now - STALE_AFTER_MS - 1).beat();
      assert.deepEqual((await aliveWorkers(db, now)).map((w) => w.owner), []);
      await new WorkerHeartbeat(db, 'fresh-worker', () => now - STALE_AFTER_MS + 1000).beat();
      assert.deepEqual((await aliveWorkers(db, now)).map((w) => w.owner), ['fresh-worker']);
      await db.deleteFrom('worker_heartbeats').execute();
    });

    it('names the migrations not applied yet', async () => {
      const app = await createApp({ ...t.config, database: await freshDatabaseConfig(dialect) }, { logger: createLogger('silent'), migrate: false });
      try {
        const report = await app.services.readiness.check();
        assert.equal(report.ready, false);
        assert.equal(report.checks.database.ok, true);
        assert.equal(report.checks.migrations.ok, false);
        assert.ok(report.checks.migrations.pending!.includes('001-foundation'), JSON.stringify(report.checks.migrations));
        assert.ok(report.checks.migrations.pending!.includes('014-worker-heartbeats-and-jobs'));
      } finally {
        await app.close();
      }
    });

    it('reports a database that does not answer', async () => {
      const database = openDatabase(await freshDatabaseConfig(dialect));
      await migrateToLatest(database);
      await database.close();
      const report = await new Readiness(database).check();
      assert.equal(report.ready, false);
      assert.equal(report.checks.database.ok, false);
      assert.match(report.checks.database.error!, /does not answer/);
      assert.equal(report.checks.workers.ok, false);
    });
  });
}

describe('request ids in answers and logs', () => {
  it('answers every request with x-request-id, logs its lines under that id, and keeps a plain id the caller sent', async () => {
    const t = await startTestApp('sqlite');
    try {
      const http = await t.app.http();
      const own = await http.inject({ url: '/api/v1/nothing-here', headers: { 'x-request-id': 'lb-42.abc' } });
      assert.equal(own.headers['x-request-id'], 'lb-42.abc');
      assert.match(t.logs(), /"reqId":"lb-42\.abc","req":\{"method":"GET","url":"\/api\/v1\/nothing-here"/);
      assert.match(t.logs(), /"reqId":"lb-42\.abc","res":\{"statusCode":404\}/);
      const forged = await http.inject({ url: '/healthz', headers: { 'x-request-id': 'evil"id with spaces' } });
      assert.match(String(forged.headers['x-request-id']), /^[0-9a-f-]{36}$/);
      assert.doesNotMatch(t.logs(), /evil/);
      // The request line of a URL with a one-time secret in its query keeps the name, never the value.
      await http.inject({ url: '/api/v1/nothing-here?code=one-time-c0de&page=2', headers: { 'x-request-id': 'lb-43' } });
      assert.match(t.logs(), /"reqId":"lb-43","req":\{"method":"GET","url":"\/api\/v1\/nothing-here\?code=\[redacted\]&page=2"/);
      assert.doesNotMatch(t.logs(), /one-time-c0de/);
    } finally {
      await t.close();
    }
  });
});
