// Periodic clean-up that every deployment needs: expired sessions. Later issues add the outgoing
// dispatcher and the incoming fetcher next to it. Started only by main.ts.
import type { App } from '../app.js';

export interface Job {
  name: string;
  everyMs: number;
  run(): Promise<void>;
}

export function housekeepingJobs(app: App): Job[] {
  return [
    {
      name: 'purge-expired-sessions',
      everyMs: 60 * 60 * 1000,
      run: async () => {
        const n = await app.services.sessions.purgeExpired();
        if (n > 0) app.logger.info({ op: 'sessions.purge', removed: n }, 'expired sessions removed');
      },
    },
  ];
}

/** Runs each job now and then on its interval, one run at a time per job; errors are logged, never thrown. */
export class JobRunner {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly jobs: Job[],
    private readonly log: App['logger'],
  ) {}

  start(): void {
    for (const job of this.jobs) {
      let busy = false;
      const tick = () => {
        if (busy) return;
        busy = true;
        const p = job
          .run()
          .catch((err: unknown) => this.log.error({ err, job: job.name }, `background job ${job.name} failed`))
          .finally(() => {
            busy = false;
            this.running.delete(p);
          });
        this.running.add(p);
      };
      tick();
      this.timers.push(setInterval(tick, job.everyMs));
    }
  }

  /** Stops scheduling and waits for runs in progress. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    await Promise.all([...this.running]);
  }
}
