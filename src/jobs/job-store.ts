// The jobs table: one row per background job, written by the process running it (progress at most every
// PROGRESS_WRITE_MS, and a touch every TOUCH_MS while it runs), read by whoever polls GET /api/v1/jobs/:id.
// A running row not touched for STALE_MS belongs to a process that stopped: it is reported, and recorded, failed.
import type { Kysely, Selectable } from 'kysely';
import type { DB } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { JobsTable } from './tables.js';
import './tables.js';

export type Job = Selectable<JobsTable>;

export const TOUCH_MS = 10_000;
export const STALE_MS = 60_000;

export interface JobView {
  id: number;
  kind: string;
  target: string;
  state: Job['state'];
  progress: { done: number; total: number | null };
  result: unknown;
  error: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export function jobView(job: Job): JobView {
  return {
    id: job.id,
    kind: job.kind,
    target: job.target,
    state: job.state,
    progress: { done: job.done, total: job.total },
    result: job.result === null ? null : JSON.parse(job.result),
    error: job.error,
    createdAt: new Date(job.created_at).toISOString(),
    updatedAt: new Date(job.updated_at).toISOString(),
    finishedAt: job.finished_at === null ? null : new Date(job.finished_at).toISOString(),
  };
}

export class JobStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly now: () => number = Date.now,
  ) {}

  async create(job: { kind: string; target: string; owner: string; createdByUserId: number | null }): Promise<Job> {
    const at = this.now();
    return this.db
      .insertInto('jobs')
      .values({ kind: job.kind, target: job.target, owner: job.owner, created_by_user_id: job.createdByUserId, state: 'running', created_at: at, updated_at: at })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  async progress(id: number, done: number, total: number | null): Promise<void> {
    await this.db.updateTable('jobs').set({ done, total, updated_at: this.now() }).where('id', '=', id).where('state', '=', 'running').execute();
  }

  async touch(id: number): Promise<void> {
    await this.db.updateTable('jobs').set({ updated_at: this.now() }).where('id', '=', id).where('state', '=', 'running').execute();
  }

  /**
   * Records the end, whatever the row says: the process that ran the job knows best, even when another one
   * judged it dead meanwhile. A failed job may keep what it did before it stopped (`done`, `result`).
   */
  async finish(id: number, outcome: { ok: true; result: unknown; done: number } | { ok: false; error: string; result?: unknown; done?: number }): Promise<void> {
    const at = this.now();
    const failed = (o: { error: string; result?: unknown; done?: number }) => ({
      state: 'failed' as const,
      error: o.error,
      updated_at: at,
      finished_at: at,
      ...(o.result !== undefined ? { result: JSON.stringify(o.result) } : {}),
      ...(o.done !== undefined ? { done: o.done } : {}),
    });
    await this.db
      .updateTable('jobs')
      .set(outcome.ok ? { state: 'succeeded', result: JSON.stringify(outcome.result), done: outcome.done, updated_at: at, finished_at: at } : failed(outcome))
      .where('id', '=', id)
      .execute();
  }

  /**
   * Records a running job that another process judged dead as failed, with why; a row that has ended
   * meanwhile is left as it is. Returns the row as it now stands.
   */
  async interrupt(job: Job, error: string): Promise<Job> {
    const at = this.now();
    const r = await this.db.updateTable('jobs').set({ state: 'failed', error, updated_at: at, finished_at: at }).where('id', '=', job.id).where('state', '=', 'running').executeTakeFirst();
    if (Number(r.numUpdatedRows) === 1) return { ...job, state: 'failed', error, updated_at: at, finished_at: at };
    return this.get(job.id);
  }

  /** The job, with a running one whose process stopped touching it recorded as failed first. */
  async get(id: number): Promise<Job> {
    const job = await this.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!job) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No job with id ${id}.`);
    return this.expireIfStale(job);
  }

  /** The live running job on this target, if any. */
  async running(target: string): Promise<Job | undefined> {
    const rows = await this.db.selectFrom('jobs').selectAll().where('target', '=', target).where('state', '=', 'running').orderBy('id', 'desc').execute();
    for (const row of rows) {
      const job = await this.expireIfStale(row);
      if (job.state === 'running') return job;
    }
    return undefined;
  }

  private async expireIfStale(job: Job): Promise<Job> {
    if (job.state !== 'running' || this.now() - job.updated_at <= STALE_MS) return job;
    const error = `The process running this job (${job.owner}) stopped before it finished; everything it did so far is kept. Start it again.`;
    await this.db.updateTable('jobs').set({ state: 'failed', error, finished_at: this.now() }).where('id', '=', job.id).where('state', '=', 'running').execute();
    return { ...job, state: 'failed', error, finished_at: this.now() };
  }
}
