// Fetches every confirmed, active server on its own interval. Up to `concurrency` fetches run side by side in
// one process, each in a slot of its own: a slot that frees takes the next due server at once, and one slow
// fetch holds back only its own slot, never the others (a round that waited for all its fetches let one
// server that answers slowly stop every other server of the process). The per-server lease keeps several
// worker processes from fetching one server twice, so every process may run this. Started and stopped by
// main.ts only.
import { isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { IncomingFetcher } from './fetcher.js';
import type { FetchState } from './fetch-state.js';

export interface SchedulerOptions {
  tickMs: number;
  /** Servers fetched side by side in one process. */
  concurrency: number;
}

export const defaultSchedulerOptions: SchedulerOptions = { tickMs: 30_000, concurrency: 3 };

export class FetchScheduler {
  private timer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  /** The fetches in progress in this process, by server id. */
  private readonly active = new Map<number, Promise<void>>();
  /** When this process last started each server: a server is started at most once a tick, however fast it fails. */
  private readonly startedAt = new Map<number, number>();
  private filling: Promise<void> | undefined;
  private refill = false;

  constructor(
    private readonly fetcher: IncomingFetcher,
    private readonly servers: Pick<FetchState, 'due'>,
    private readonly log: Logger,
    private readonly options: SchedulerOptions = defaultSchedulerOptions,
  ) {}

  start(): void {
    if (this.timer) return;
    this.fill();
    this.timer = setInterval(() => this.fill(), this.options.tickMs);
  }

  /** How many fetches are in progress in this process. */
  get inProgress(): number {
    return this.active.size;
  }

  /**
   * Fills the free slots with due servers. One look for due servers at a time; asked again meanwhile (a slot
   * freed), it looks once more after.
   */
  private fill(): void {
    if (this.filling) {
      this.refill = true;
      return;
    }
    this.filling = this.startDue()
      .catch((err: unknown) => this.log.error({ err, op: 'incoming.schedule' }, 'looking for due incoming servers failed'))
      .finally(() => {
        this.filling = undefined;
        if (this.refill && this.timer && !this.abort.signal.aborted) {
          this.refill = false;
          this.fill();
        }
      });
  }

  /** Starts due servers in the free slots (not one already being fetched here). */
  private async startDue(): Promise<void> {
    const free = this.options.concurrency - this.active.size;
    if (free <= 0 || this.abort.signal.aborted) return;
    const now = Date.now();
    // Every start goes through here, one look at a time: the slots free now are still free after the query.
    // A server whose lease ran out while this process still fetches it is due again: it stays in its slot.
    const due = (await this.servers.due()).filter((s) => !this.active.has(s.id) && now - (this.startedAt.get(s.id) ?? -Infinity) >= this.options.tickMs);
    if (this.abort.signal.aborted) return;
    for (const s of due.slice(0, free)) void this.launch(s.id);
  }

  private launch(id: number): Promise<void> {
    this.startedAt.set(id, Date.now());
    const run = this.fetcher
      .fetchServer(id, { signal: this.abort.signal })
      .then(() => undefined)
      .catch((err: unknown) => {
        // Recorded on the server (last_error, error_since) by the fetcher; a lease race is not a failure.
        if (!isAppError(err) || err.code !== 'JUNIPER_ERR_CONFLICT') this.log.debug({ err, server: id }, 'scheduled fetch failed');
      })
      .finally(() => {
        this.active.delete(id);
        // The freed slot takes the next due server now, not at the next tick.
        if (this.timer && !this.abort.signal.aborted) this.fill();
      });
    this.active.set(id, run);
    return run;
  }

  /**
   * One round, for tests and one-off runs (the timer uses the slots): fetches the servers due now, `concurrency`
   * at a time, and waits for them; resolves to how many were due (failures included).
   */
  async runOnce(): Promise<number> {
    const due = (await this.servers.due()).filter((s) => !this.active.has(s.id));
    let next = 0;
    const slot = async () => {
      while (next < due.length && !this.abort.signal.aborted) await this.launch(due[next++]!.id);
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, due.length) }, slot));
    return due.length;
  }

  /**
   * Stops scheduling and ends the fetches in progress at once (the fetcher's signal): the IMAP step each one is in
   * ends with its connection closed, whatever the server does; what arrived whole is stored (the next run marks it
   * \Seen), nothing is recorded against the server or a message, and the leases are released. So a stop waits for
   * a few database writes, not for a step's deadline (2 minutes) or a large message over a slow link.
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.filling;
    await Promise.all(this.active.values());
  }
}
