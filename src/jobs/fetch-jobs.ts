// Fetch Now as a background job: the request answers at once with the job, the fetch runs on in this
// process whether or not anyone watches (closing the page does not stop it), and a second Fetch Now while
// one runs gets the same job back. Refusals known before starting (archived, draft, fetched by another
// worker right now) are still answered at once as errors.
import crypto from 'node:crypto';
import os from 'node:os';
import type { IncomingServer } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { FetchCounts } from '../incoming/fetcher.js';
import type { IncomingMail } from '../incoming/incoming-mail.js';
import { TOUCH_MS, type Job, type JobStore } from './job-store.js';

export const FETCH_JOB = 'incoming.fetch';
/** Progress is written at most this often: a fast fetch of 10,000 messages must not write 10,000 rows. */
export const PROGRESS_WRITE_MS = 500;

export type FetchOutcome = { ok: true; counts: FetchCounts } | { ok: false; error: unknown };

export const fetchTarget = (serverId: number) => `incoming_server:${serverId}`;

export class FetchJobs {
  readonly owner = `${os.hostname()}:${process.pid}:jobs:${crypto.randomBytes(3).toString('hex')}`;
  /** Jobs this process runs, by target: a second click joins before any database round trip. */
  private readonly active = new Map<string, Promise<Job>>();
  private readonly runs = new Map<number, Promise<FetchOutcome>>();
  private readonly stopping = new AbortController();

  constructor(
    private readonly store: JobStore,
    private readonly incoming: () => IncomingMail,
    private readonly log: Logger,
  ) {}

  /** Starts a fetch of the server, or joins the one running. */
  async start(server: IncomingServer, userId: number | null): Promise<{ job: Job; joined: boolean }> {
    const target = fetchTarget(server.id);
    const mine = this.active.get(target);
    if (mine) return { job: await mine, joined: true };
    const starting = this.startNew(server, userId, target);
    const shared = starting.then((r) => r.job);
    // Handled where it is awaited (start's own catch, or a joining click); never an unhandled rejection.
    shared.catch(() => undefined);
    this.active.set(target, shared);
    try {
      return await starting;
    } catch (e) {
      this.active.delete(target);
      throw e;
    }
  }

  private async startNew(server: IncomingServer, userId: number | null, target: string): Promise<{ job: Job; joined: boolean }> {
    const elsewhere = await this.store.running(target);
    if (elsewhere) {
      this.active.delete(target);
      return { job: elsewhere, joined: true };
    }
    assertFetchable(server);
    const job = await this.store.create({ kind: FETCH_JOB, target, owner: this.owner, createdByUserId: userId });
    this.runs.set(job.id, this.run(job, server, target));
    return { job, joined: false };
  }

  private async run(job: Job, server: IncomingServer, target: string): Promise<FetchOutcome> {
    let lastWrite = 0;
    let pending: Promise<void> = Promise.resolve();
    const touch = setInterval(() => void this.store.touch(job.id).catch(() => undefined), TOUCH_MS);
    touch.unref();
    try {
      const counts: FetchCounts = await this.incoming().fetchNow(server, {
        signal: this.stopping.signal,
        onProgress: (p) => {
          const now = Date.now();
          if (now - lastWrite < PROGRESS_WRITE_MS) return;
          lastWrite = now;
          pending = pending.then(() => this.store.progress(job.id, p.fetched, p.total)).catch(() => undefined);
        },
      });
      await pending;
      await this.store.finish(job.id, { ok: true, result: counts, done: counts.fetched });
      return { ok: true, counts };
    } catch (error) {
      await pending;
      const message = error instanceof Error ? error.message : String(error);
      await this.store.finish(job.id, { ok: false, error: message }).catch((err: unknown) => this.log.error({ err, job: job.id }, 'could not record the failed job'));
      return { ok: false, error };
    } finally {
      clearInterval(touch);
      this.active.delete(target);
      this.runs.delete(job.id);
    }
  }

  /**
   * The outcome of a job this process runs, once it has finished (`?wait=true`, and the page's short wait);
   * undefined when it runs elsewhere or is still running after timeoutMs.
   */
  async settled(jobId: number, timeoutMs = Infinity): Promise<FetchOutcome | undefined> {
    const run = this.runs.get(jobId);
    if (!run) return undefined;
    if (timeoutMs === Infinity) return run;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([run, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)))]);
    clearTimeout(timer);
    return outcome;
  }

  /** Shutdown: running fetches stop after the message in hand (everything so far kept), then their jobs are recorded. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all([...this.runs.values()]);
  }
}

/** The refusals a fetch would meet at once: answered to the click, not hidden in a failed job. */
export function assertFetchable(server: IncomingServer, now = Date.now()): void {
  if (server.archived_at !== null) throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) is archived.`);
  if (server.state !== 'confirmed') throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) is a draft: run Test & Confirm first.`);
  if (server.fetch_lease_until !== null && server.fetch_lease_until > now) {
    throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) is being fetched by another worker (lease until ${new Date(server.fetch_lease_until).toISOString()}); try again after that.`);
  }
}
