// Readiness (/readyz): may this instance take traffic? The database answers, every migration is applied,
// and at least one worker process is alive (worker-heartbeat.ts says what "alive" proves). Liveness
// (/healthz) stays a constant answer: a load balancer must not restart a process because its database is away.
import { sql } from 'kysely';
import type { Database } from '../db/database.js';
import { pendingMigrations } from '../db/migrate.js';
import { aliveWorkers, STALE_AFTER_MS, type AliveWorker } from './worker-heartbeat.js';

export interface ReadinessReport {
  ready: boolean;
  checks: {
    database: { ok: boolean; error?: string };
    migrations: { ok: boolean; pending?: string[]; error?: string };
    workers: { ok: boolean; alive: AliveWorker[]; staleAfterMs: number; error?: string };
  };
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

export class Readiness {
  constructor(private readonly database: Database) {}

  async check(now = Date.now()): Promise<ReadinessReport> {
    const { db } = this.database;
    const database: ReadinessReport['checks']['database'] = await sql`select 1`
      .execute(db)
      .then(() => ({ ok: true }))
      .catch((e: unknown) => ({ ok: false, error: `The database does not answer: ${message(e)}` }));
    const migrations: ReadinessReport['checks']['migrations'] = database.ok
      ? await pendingMigrations(this.database)
          .then((pending) => (pending.length ? { ok: false, pending } : { ok: true }))
          .catch((e: unknown) => ({ ok: false, error: message(e) }))
      : { ok: false, error: 'not checked: the database does not answer' };
    const workers: ReadinessReport['checks']['workers'] = database.ok
      ? await aliveWorkers(db, now)
          .then((alive) => ({ ok: alive.length > 0, alive, staleAfterMs: STALE_AFTER_MS, ...(alive.length ? {} : { error: `No worker process wrote a heartbeat in the last ${STALE_AFTER_MS / 1000} s: start \`juniper serve\` or \`juniper worker\`.` }) }))
          .catch((e: unknown) => ({ ok: false, alive: [], staleAfterMs: STALE_AFTER_MS, error: message(e) }))
      : { ok: false, alive: [], staleAfterMs: STALE_AFTER_MS, error: 'not checked: the database does not answer' };
    return { ready: database.ok && migrations.ok && workers.ok, checks: { database, migrations, workers } };
  }
}
