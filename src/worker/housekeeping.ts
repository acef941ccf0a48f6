// Periodic clean-up that every deployment needs: expired sessions and idempotency keys, the Outlook token
// keep-alive, the client-secret expiry warning. Each job asks the owner of its tables (sessions, queue,
// token store, settings); none queries a table itself. Started only by main.ts.
import type { App } from '../app.js';
import { isWarningDay, secretExpiryWarning } from '../oauth/secret-expiry.js';
import { isAppError } from '../lib/errors.js';

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
    {
      name: 'purge-idempotency-keys',
      everyMs: 60 * 60 * 1000,
      // Kept 24 hours (POST /api/v1/mails with Idempotency-Key); an hourly purge keeps them at most 25.
      run: async () => {
        const n = await app.services.queue.purgeIdempotencyKeys();
        if (n > 0) app.logger.info({ op: 'idempotency.purge', removed: n }, 'idempotency keys older than 24 hours removed');
      },
    },
    {
      name: 'outlook-token-keep-alive',
      everyMs: 60 * 60 * 1000,
      // Microsoft expires refresh tokens after 90 days without use; a daily refresh keeps quiet servers alive.
      run: async () => {
        for (const { kind, id } of await app.services.tokens.dueForKeepAlive()) {
          try {
            await app.services.tokens.keepAlive(kind, id);
          } catch (err) {
            // Already classified and recorded on the server by the token store; one failure must not stop the others.
            if (!isAppError(err)) throw err;
          }
        }
      },
    },
    {
      name: 'outlook-secret-expiry',
      everyMs: 24 * 60 * 60 * 1000,
      run: async () => {
        const { outlook } = await app.services.settings.get();
        const warning = secretExpiryWarning(outlook.clientSecretDaysLeft);
        if (warning && isWarningDay(outlook.clientSecretDaysLeft)) app.logger.warn({ op: 'outlook.secret_expiry', daysLeft: outlook.clientSecretDaysLeft }, warning.message);
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
