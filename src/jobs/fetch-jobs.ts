// Fetch Now as a background job: the request answers at once with the job, the fetch runs on in this
// process whether or not anyone watches (closing the page does not stop it), and a second Fetch Now while
// one runs in this process gets the same job back. `juniper fetch` runs its fetches as these jobs too, so the
// jobs history, the API and the server's page show a CLI fetch like any other.
//
// Whether a job running in another process is alive is decided by the server's fetch lease, never by the job
// row: a process killed with SIGKILL leaves its row `running`, but its lease runs out (a live run renews it
// with every stored message). A job takes the server's lease under its own owner before its row is written, so
// a running row whose server's lease is not held by that owner is dead, and the next fetch records it failed
// and takes over. While the lease holds, the database cannot tell a live run from a dead one: the answer is a
// refusal (409) naming the job and when the lease ends, never a join that could be a join of a dead run.
import crypto from 'node:crypto';
import os from 'node:os';
import type { IncomingServer } from '../db/schema.js';
import { AppError, isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { countsSummary, type FetchCounts, type FetchProgress } from '../incoming/fetcher.js';
import type { FetchState } from '../incoming/fetch-state.js';
import type { IncomingMail } from '../incoming/incoming-mail.js';
import { FETCH_JOB, TOUCH_MS, type Job, type JobStore } from './job-store.js';

export { FETCH_JOB };
/** Progress is written at most this often: a fast fetch of 10,000 messages must not write 10,000 rows. */
export const PROGRESS_WRITE_MS = 500;

export type FetchOutcome = { ok: true; counts: FetchCounts } | { ok: false; error: unknown };

export const fetchTarget = (serverId: number) => `incoming_server:${serverId}`;
const serverOfTarget = (target: string) => (target.startsWith('incoming_server:') ? Number(target.slice('incoming_server:'.length)) : undefined);

/** The lease operations a job needs (FetchState's). */
export type FetchLeases = Pick<FetchState, 'get' | 'acquireLease' | 'releaseLease'>;

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * What a `running` fetch job row found in the database is, judged by its server's fetch lease alone: alive
 * only while the lease is held by the job's owner (jobs take it before their row exists). `ownedHere` is a row
 * of this very process that it no longer runs (it ended without recording its end).
 */
export function runningJobState(
  job: Pick<Job, 'owner'>,
  server: Pick<IncomingServer, 'fetch_lease_owner' | 'fetch_lease_until'>,
  now: number,
  ownedHere = false,
): { live: true; leaseUntil: number } | { live: false; error: string } {
  const until = server.fetch_lease_until;
  if (!ownedHere && server.fetch_lease_owner === job.owner && until !== null && until >= now) return { live: true, leaseUntil: until };
  const lease =
    server.fetch_lease_owner === job.owner && until !== null
      ? `its fetch lease on the server ran out at ${iso(until)}`
      : server.fetch_lease_owner !== null && until !== null && until >= now
        ? `the server's fetch lease is now held by ${server.fetch_lease_owner}`
        : `it no longer holds the server's fetch lease`;
  return {
    live: false,
    error: `Interrupted: the process running this job (${job.owner}) stopped before it finished (${lease}, and a live run renews that lease with every message it stores). Everything it stored is kept; the next fetch goes on from there.`,
  };
}

/** The refusal while another process's job holds the server's lease: its details name the job, for the CLI. */
export function runningElsewhere(server: Pick<IncomingServer, 'id' | 'name'>, job: Pick<Job, 'id' | 'owner'>, leaseUntil: number): AppError {
  return new AppError(
    'JUNIPER_ERR_CONFLICT',
    `Incoming server "${server.name}" (id ${server.id}) is already being fetched by job ${job.id} of another Juniper process (${job.owner}); ` +
      `its progress is at GET /api/v1/jobs/${job.id} and on the server's page. If that process was stopped, its fetch lease frees the server at ${iso(leaseUntil)}: fetch again then.`,
    { details: { runningJob: job.id, owner: job.owner, leaseUntil } },
  );
}

export class FetchJobs {
  /** This process's jobs' owner, and the owner of the fetch leases they hold (one server, one run here at a time). */
  readonly owner = `${os.hostname()}:${process.pid}:jobs:${crypto.randomBytes(3).toString('hex')}`;
  /** Jobs this process runs, by target: a second click joins before any database round trip. */
  private readonly active = new Map<string, Promise<Job>>();
  private readonly runs = new Map<number, Promise<FetchOutcome>>();
  private readonly stopping = new AbortController();
  private stopReason = 'Juniper was shutting down';

  constructor(
    private readonly store: JobStore,
    private readonly incoming: () => IncomingMail,
    private readonly log: Logger,
    /** The servers' fetch leases (FetchState) and how long a job takes one for (JUNIPER_FETCH_LEASE_SECONDS). */
    private readonly lease: { state: FetchLeases; ms: number },
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Starts a fetch of the server, or joins the one this process runs. Throws JUNIPER_ERR_CONFLICT when it
   * cannot start: another process's job holds the server (`details.runningJob`), another worker holds its
   * lease, it is archived or a draft. `onProgress` (the CLI's progress bar) hears every step of a fetch this
   * call starts, besides the job row's throttled progress.
   */
  async start(server: IncomingServer, userId: number | null, options: { onProgress?: (p: FetchProgress) => void } = {}): Promise<{ job: Job; joined: boolean }> {
    const target = fetchTarget(server.id);
    const mine = this.active.get(target);
    if (mine) return { job: await mine, joined: true };
    const starting = this.startNew(server, userId, target, options.onProgress);
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

  private async startNew(server: IncomingServer, userId: number | null, target: string, onProgress?: (p: FetchProgress) => void): Promise<{ job: Job; joined: boolean }> {
    const { state: leases, ms: leaseMs } = this.lease;
    // Running rows of other processes: refused while their lease holds, recorded failed (taken over) when not.
    // The lease is read after the row (a job takes its lease before it writes its row, so a row seen here has
    // its lease by now if it is alive), and the interrupt itself checks the lease again in one statement.
    for (let job = await this.store.running(target); job; job = await this.store.running(target)) {
      const ownedHere = job.owner === this.owner && !this.runs.has(job.id);
      const current = await leases.get(server.id);
      const state = runningJobState(job, current, this.now(), ownedHere);
      if (state.live) throw runningElsewhere(current, job, state.leaseUntil);
      const after = await this.interrupt(job, state.error, ownedHere);
      if (after.state === 'running') {
        // Its owner holds the lease after all (taken since the read above): alive, refused as such.
        const fresh = await leases.get(server.id);
        const again = runningJobState(job, fresh, this.now());
        if (again.live) throw runningElsewhere(fresh, job, again.leaseUntil);
      }
    }
    const current = await leases.get(server.id);
    const now = this.now();
    assertFetchable(current, now);
    // The lease first, then the row: a running row always has its lease, so a row without one is dead.
    const leased = await leases.acquireLease(server.id, this.owner, leaseMs, now);
    if (!leased) {
      // Taken since the reads above: by another process's job (named, as above, once its row is written) or a worker.
      const holder = await leases.get(server.id);
      const row = await this.store.running(target);
      const state = row && runningJobState(row, holder, this.now());
      if (row && state?.live) throw runningElsewhere(holder, row, state.leaseUntil);
      assertFetchable(holder, this.now());
      throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) was just taken by another worker; try again in a moment.`);
    }
    let job: Job;
    try {
      job = await this.store.create({ kind: FETCH_JOB, target, owner: this.owner, createdByUserId: userId });
    } catch (e) {
      await leases.releaseLease(server.id, this.owner).catch(() => undefined);
      throw e;
    }
    this.runs.set(job.id, this.run(job, { ...current, ...leased }, target, onProgress));
    return { job, joined: false };
  }

  /**
   * Records a running job judged dead as failed, unless its owner holds its server's lease at that moment
   * (one statement: never a live run recorded dead). A row of this process that it no longer runs (`ownedHere`)
   * is dead whatever the lease says: this process knows its own runs.
   */
  private async interrupt(job: Job, error: string, ownedHere: boolean): Promise<Job> {
    const serverId = serverOfTarget(job.target);
    const after = await this.store.interrupt(job, error, ownedHere || serverId === undefined ? undefined : { serverId });
    if (after.state === 'failed' && after.error === error) this.log.warn({ job: job.id, target: job.target, owner: job.owner }, `job ${job.id} recorded failed: ${error}`);
    return after;
  }

  private async run(job: Job, server: IncomingServer, target: string, listener?: (p: FetchProgress) => void): Promise<FetchOutcome> {
    let lastWrite = 0;
    let last: FetchProgress | undefined;
    let pending: Promise<void> = Promise.resolve();
    const touch = setInterval(() => void this.store.touch(job.id).catch(() => undefined), TOUCH_MS);
    touch.unref();
    try {
      // Under this job's owner: the lease taken in startNew is the one the fetch renews. The fetch keeps it
      // when it ends (`keepLease`): it is released below, after the job's end is recorded, so no poller in
      // another process sees a running row without its lease and records a finished run dead.
      const counts: FetchCounts = await this.incoming().fetchNow(
        server,
        {
          keepLease: true,
          signal: this.stopping.signal,
          onProgress: (p) => {
            last = p;
            listener?.(p);
            const now = Date.now();
            if (now - lastWrite < PROGRESS_WRITE_MS) return;
            lastWrite = now;
            pending = pending.then(() => this.store.progress(job.id, p.fetched, p.total)).catch(() => undefined);
          },
        },
        { owner: this.owner },
      );
      await pending;
      // No progress at all: stopped before the mailbox was listed (connecting, in SELECT), since every run that
      // lists it says so, even with nothing new.
      if (this.stopping.signal.aborted && (last === undefined || counts.fetched < last.total)) {
        // Stopped on purpose before the end: not a success, and not lost either.
        const error = new AppError(
          'JUNIPER_ERR_CONFLICT',
          last === undefined
            ? `Stopped before any message was fetched because ${this.stopReason}; fetch again to get them.`
            : `Stopped after ${counts.fetched} of ${last.total} messages because ${this.stopReason} (${countsSummary(counts)}). Everything fetched so far is kept; fetch again to get the other ${last.total - counts.fetched}.`,
          { details: { stopped: true, counts } },
        );
        await this.store.finish(job.id, { ok: false, error: error.message, result: counts, done: counts.fetched });
        return { ok: false, error };
      }
      await this.store.finish(job.id, { ok: true, result: counts, done: counts.fetched });
      return { ok: true, counts };
    } catch (error) {
      await pending;
      const message = error instanceof Error ? error.message : String(error);
      await this.store.finish(job.id, { ok: false, error: message }).catch((err: unknown) => this.log.error({ err, job: job.id }, 'could not record the failed job'));
      return { ok: false, error };
    } finally {
      clearInterval(touch);
      // Held until here (the fetch keeps it): released only once the job's end is in its row.
      await this.lease.state.releaseLease(server.id, this.owner).catch(() => undefined);
      this.active.delete(target);
      this.runs.delete(job.id);
    }
  }

  /**
   * The running fetch job of the server, if one is alive as far as the lease can tell (the server's page
   * shows its progress bar); dead ones found on the way are recorded failed.
   */
  async running(serverId: number): Promise<Job | undefined> {
    for (let job = await this.store.running(fetchTarget(serverId)); job; job = await this.store.running(fetchTarget(serverId))) {
      const checked = await this.checked(job);
      if (checked.state === 'running') return checked;
    }
    return undefined;
  }

  /** The job as it stands: a running fetch job of another process whose lease is gone is recorded failed first. */
  async checked(job: Job): Promise<Job> {
    if (job.kind !== FETCH_JOB || job.state !== 'running' || this.runs.has(job.id)) return job;
    // Being started here right now (its row written, its run not yet registered): alive.
    if (job.owner === this.owner && this.active.has(job.target)) return job;
    const serverId = serverOfTarget(job.target);
    if (serverId === undefined) return job;
    let server: IncomingServer;
    try {
      server = await this.lease.state.get(serverId);
    } catch (e) {
      if (!isAppError(e) || e.code !== 'JUNIPER_ERR_NOT_FOUND') throw e;
      return this.interrupt(job, `Interrupted: its incoming server (id ${serverId}) no longer exists.`, true);
    }
    const ownedHere = job.owner === this.owner;
    const state = runningJobState(job, server, this.now(), ownedHere);
    return state.live ? job : this.interrupt(job, state.error, ownedHere);
  }

  /**
   * The outcome of a job this process runs, once it has finished (`?wait=true`, the page's short wait, the
   * CLI); undefined when it runs elsewhere or is still running after timeoutMs.
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

  /**
   * Shutdown (or `juniper fetch` interrupted): running fetches stop at once, whatever their IMAP server does
   * (the messages that arrived whole are kept), and their jobs are recorded: failed with `reason` and what is left
   * when they stopped short.
   */
  async stop(reason?: string): Promise<void> {
    if (!this.stopping.signal.aborted && reason) this.stopReason = reason;
    this.stopping.abort();
    await Promise.all([...this.runs.values()]);
  }
}

/** True for the error FetchJobs.start throws when another process's job holds the server. */
export function isRunningElsewhere(err: unknown): err is AppError & { details: { runningJob: number; owner: string; leaseUntil: number } } {
  return isAppError(err) && typeof err.details?.runningJob === 'number';
}

/** True for a job's outcome error when it was stopped on purpose (shutdown, the CLI interrupted). */
export function isStopped(err: unknown): boolean {
  return isAppError(err) && err.details?.stopped === true;
}

/** The refusals a fetch would meet at once: answered to the click, not hidden in a failed job. */
export function assertFetchable(server: IncomingServer, now = Date.now()): void {
  if (server.archived_at !== null) throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) is archived.`);
  if (server.state !== 'confirmed') throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) is a draft: run Test & Confirm first.`);
  if (server.fetch_lease_until !== null && server.fetch_lease_until >= now) {
    throw new AppError('JUNIPER_ERR_CONFLICT', `Incoming server "${server.name}" (id ${server.id}) is being fetched by another worker (lease until ${new Date(server.fetch_lease_until).toISOString()}); try again after that.`);
  }
}
