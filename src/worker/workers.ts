// The background workers of one process, built from the app (started and stopped by main.ts only).
import type { App } from '../app.js';
import { Dispatcher, defaultDispatcherOptions, type DispatcherOptions } from '../outgoing/dispatcher.js';
import { TransportPool } from '../outgoing/transport-pool.js';
import { createSmtpTransport } from '../outgoing/smtp-transport.js';
import type { TokenProvider } from '../oauth/token-provider.js';
import { FetchScheduler } from '../incoming/scheduler.js';
import { housekeepingJobs, JobRunner } from './housekeeping.js';
import { WorkerHeartbeat } from '../jobs/worker-heartbeat.js';
import { webhookWorker } from '../webhooks/webhook-worker.js';
import { retentionJob } from '../retention/retention.js';

export interface Workers {
  dispatcher: Dispatcher;
  fetchScheduler: FetchScheduler;
  start(): void;
  stop(): Promise<void>;
}

/** The dispatcher's transports: SMTP pools, and Graph at the endpoint Settings name. `tokens` replaces the app's (tests). */
export function transportPool(app: App, tokens: TokenProvider = app.services.tokens): TransportPool {
  const { services } = app;
  return new TransportPool((s) => services.outgoingServers.password(s), tokens, services.outgoingServers.hostGuard, createSmtpTransport, { endpoint: () => services.settings.graphEndpoint() });
}

export function createWorkers(app: App, options: Partial<DispatcherOptions> = {}): Workers {
  const { services } = app;
  const dispatcherOptions = { ...defaultDispatcherOptions, leaseMs: app.config.send.leaseMs, batchSize: app.config.send.batchSize, pollMs: app.config.send.pollMs, ...options };
  const dispatcher = new Dispatcher(
    {
      queue: services.queue,
      servers: services.outgoingServers,
      parameters: services.parameters,
      transports: transportPool(app),
      log: app.logger.child({ worker: 'dispatcher' }),
    },
    dispatcherOptions,
  );
  const jobs = new JobRunner([...housekeepingJobs(app), retentionJob({ db: app.database.db, parameters: services.parameters, log: app.logger })], app.logger);
  const fetchScheduler = new FetchScheduler(services.incoming.fetcher(), services.fetchState, app.logger.child({ worker: 'fetcher' }));
  const heartbeat = new WorkerHeartbeat(app.database.db, dispatcher.owner, Date.now, (err) => app.logger.warn({ err, op: 'worker.heartbeat' }, 'could not write the worker heartbeat'));
  const webhooks = webhookWorker(app);
  let unsubscribe: (() => void) | undefined;
  let stopListening: (() => Promise<void>) | undefined;
  return {
    dispatcher,
    fetchScheduler,
    start() {
      unsubscribe = services.outbox.onEnqueued(() => dispatcher.nudge());
      // Mail made due by another process (`serve`'s API, another worker, the CLI): PostgreSQL tells us at once.
      stopListening = services.wake.listen(() => dispatcher.nudge(), { pollMs: dispatcherOptions.pollMs });
      dispatcher.start();
      jobs.start();
      fetchScheduler.start();
      heartbeat.start();
      webhooks.start();
    },
    async stop() {
      unsubscribe?.();
      // Side by side: a listener still connecting to an unreachable database must not hold up recording the
      // sends under way (a stop that takes too long ends in a SIGKILL, and unrecorded sends go again).
      await Promise.all([stopListening?.(), dispatcher.stop(), jobs.stop(), fetchScheduler.stop()]);
      await webhooks.stop();
      await heartbeat.stop();
    },
  };
}
