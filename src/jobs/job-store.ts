// The jobs table: one row per background job, written by the process running it (progress at most every
// PROGRESS_WRITE_MS, and a touch every TOUCH_MS while it runs), read by whoever polls GET /api/v1/jobs/:id.
// A running row not touched for STALE_MS belongs to a process that stopped: it is reported, and recorded, failed.
// Fetch jobs are the exception: their server's fetch lease alone says whether they live (fetch-jobs.ts), since
// a live run that cannot write its row for a while (the database away) still holds its lease, and a killed
// one's lease runs out on its own schedule (JUNIPER_FETCH_LEASE_SECONDS, 300 s by default), not this one's.
import { sql, type Kysely, type Selectable } from 'kysely';
import type { DB } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { JobsTable } from './tables.js';
import './tables.js';

export type Job = Selectable<JobsTable>;

export const TOUCH_MS = 10_000;
export const STALE_MS = 60_000;

/** A fetch job (Fetch Now, `juniper fetch`): judged by its server's fetch lease, never by STALE_MS. */
export const FETCH_JOB = 'incoming.fetch';

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
      // A success clears an error another process wrote while judging the run dead: the row must not say both.
      .set(outcome.ok ? { state: 'succeeded', error: null, result: JSON.stringify(outcome.result), done: outcome.done, updated_at: at, finished_at: at } : failed(outcome))
      .where('id', '=', id)
      .execute();
  }

  /**
   * Records a running job that another process judged dead as failed, with why; a row that has ended
   * meanwhile is left as it is, and so is one whose owner holds `unlessLeased`'s server's fetch lease at this
   * moment (checked in the same statement: a run that took the lease after the caller looked is never recorded
   * dead). Returns the row as it now stands.
   */
  async interrupt(job: Job, error: string, unlessLeased?: { serverId: number }): Promise<Job> {
    const at = this.now();
    const r = await this.db
      .updateTable('jobs')
      .set({ state: 'failed', error, updated_at: at, finished_at: at })
      .where('id', '=', job.id)
      .where('state', '=', 'running')
      .$if(unlessLeased !== undefined, (q) =>
        q.where((eb) =>
          eb.not(
            eb.exists(
              eb
                .selectFrom('incoming_servers')
                  .select(sql<number>`1`.as('held'))
                  .where('id', '=', unlessLeased!.serverId)
                  .where('fetch_lease_owner', '=', job.owner)
                  .where('fetch_lease_until', '>=', at),
            ),
          ),
        ),
      )
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) === 1) return { ...job, state: 'failed', error, updated_at: at, finished_at: at };
    return this.get(job.id);
  }

  /** The job, with a running one whose process stopped touching it recorded as failed first (fetch jobs: see FetchJobs.checked). */
  async get(id: number): Promise<Job> {
    const job = await this.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!job) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No job with id ${id}.`);
    return this.expireIfStale(job);
  }

  /** The live running job on this target, if any (a fetch job's row as it stands: FetchJobs judges it by its lease). */
  async running(target: string): Promise<Job | undefined> {
    const rows = await this.db.selectFrom('jobs').selectAll().where('target', '=', target).where('state', '=', 'running').orderBy('id', 'desc').execute();
    for (const row of rows) {
      const job = await this.expireIfStale(row);
      if (job.state === 'running') return job;
    }
    return undefined;
  }

  private async expireIfStale(job: Job): Promise<Job> {
    if (job.state !== 'running' || job.kind === FETCH_JOB || this.now() - job.updated_at <= STALE_MS) return job;
    const error = `The process running this job (${job.owner}) stopped before it finished; everything it did so far is kept. Start it again.`;
    await this.db.updateTable('jobs').set({ state: 'failed', error, finished_at: this.now() }).where('id', '=', job.id).where('state', '=', 'running').execute();
    return { ...job, state: 'failed', error, finished_at: this.now() };
  }
}
