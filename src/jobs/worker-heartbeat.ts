// Each process that runs the background workers (`juniper serve`, `juniper worker`) writes a heartbeat row
// every few seconds from the same event loop its dispatcher and fetch scheduler run on. /readyz counts a
// worker alive when its row is fresher than STALE_AFTER_MS: that proves a worker process runs, its event loop
// is not stuck and it can write to the database. It does not prove each send succeeds (metrics and logs do).
import os from 'node:os';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import './tables.js';

export const BEAT_EVERY_MS = 10_000;
/** Three missed beats: a busy SQLite write lock (5 s) or a slow round does not flap readiness. */
export const STALE_AFTER_MS = 30_000;
/** Rows of processes gone for a day are removed (a killed process cannot delete its own). */
const FORGET_AFTER_MS = 24 * 60 * 60 * 1000;

export interface AliveWorker {
  owner: string;
  host: string;
  pid: number;
  ageMs: number;
}

export class WorkerHeartbeat {
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt: number;

  constructor(
    private readonly db: Kysely<DB>,
    readonly owner: string,
    private readonly now: () => number = Date.now,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {
    this.startedAt = now();
  }

  async beat(): Promise<void> {
    const at = this.now();
    await this.db
      .insertInto('worker_heartbeats')
      .values({ owner: this.owner, host: os.hostname(), pid: process.pid, started_at: this.startedAt, beat_at: at })
      .onConflict((oc) => oc.column('owner').doUpdateSet({ beat_at: at }))
      .execute();
    await this.db.deleteFrom('worker_heartbeats').where('beat_at', '<', at - FORGET_AFTER_MS).execute();
  }

  start(): void {
    if (this.timer) return;
    const tick = () => void this.beat().catch(this.onError);
    tick();
    this.timer = setInterval(tick, BEAT_EVERY_MS);
    this.timer.unref();
  }

  /** Stops beating and removes the row, so readiness drops at once on a clean shutdown. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.db.deleteFrom('worker_heartbeats').where('owner', '=', this.owner).execute().catch(this.onError);
  }
}

export async function aliveWorkers(db: Kysely<DB>, now = Date.now()): Promise<AliveWorker[]> {
  const rows = await db.selectFrom('worker_heartbeats').select(['owner', 'host', 'pid', 'beat_at']).where('beat_at', '>=', now - STALE_AFTER_MS).orderBy('owner').execute();
  return rows.map((r) => ({ owner: r.owner, host: r.host, pid: r.pid, ageMs: Math.max(0, now - r.beat_at) }));
}
