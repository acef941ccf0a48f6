// Fetches every confirmed, active server on its own interval. A tick looks for due servers (interval passed,
// no lease held) and fetches a few side by side; the per-server lease keeps several worker processes from
// fetching one server twice, so every process may run this. Started and stopped by main.ts only.
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
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly fetcher: IncomingFetcher,
    private readonly servers: Pick<FetchState, 'due'>,
    private readonly log: Logger,
    private readonly options: SchedulerOptions = defaultSchedulerOptions,
  ) {}

  start(): void {
    if (this.timer) return;
    const tick = () => {
      this.running ??= this.runOnce()
        .then(() => undefined)
        .catch((err: unknown) => this.log.error({ err, op: 'incoming.schedule' }, 'incoming fetch round failed'))
        .finally(() => {
          this.running = undefined;
        });
    };
    tick();
    this.timer = setInterval(tick, this.options.tickMs);
  }

  /** One round: fetches the servers due now; resolves to how many were fetched (failures included). */
  async runOnce(): Promise<number> {
    const due = await this.servers.due();
    let next = 0;
    const worker = async () => {
      while (next < due.length && !this.abort.signal.aborted) {
        const server = due[next++]!;
        try {
          await this.fetcher.fetchServer(server.id, { signal: this.abort.signal });
        } catch (err) {
          // Recorded on the server (last_error, error_since) by the fetcher; a lease race is not a failure.
          if (!isAppError(err) || err.code !== 'JUNIPER_ERR_CONFLICT') this.log.debug({ err, server: server.id }, 'scheduled fetch failed');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, due.length) }, worker));
    return due.length;
  }

  /** Stops scheduling; a fetch in progress stops after its current message, keeping and marking what it stored. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.running;
  }
}
