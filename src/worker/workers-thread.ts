// The thread in which `juniper serve` runs its background workers (thread-workers.ts starts it): an app of
// its own on the same database and data directory, so sending, fetching and parsing take the second core
// while the main thread answers the web UI and the API. It starts nothing else (no HTTP, no metrics port)
// and obeys the main thread: signals are the process's, so a stop arrives as a message.
import { parentPort, workerData } from 'node:worker_threads';
import { createApp, type App } from '../app.js';
import { createLogger } from '../lib/logger.js';
import { loadProcessMetrics } from '../metrics/process-metrics.js';
import type { FromWorkersThread, ToWorkersThread, WorkersThreadData } from './thread-messages.js';
import { createWorkers, type Workers } from './workers.js';

if (!parentPort) throw new Error('workers-thread.js runs only as the workers thread of juniper serve');
const port = parentPort;
const { config } = workerData as WorkersThreadData;
const say = (m: FromWorkersThread) => port.postMessage(m);

let app: App | undefined;
let workers: Workers | undefined;
let stopping: Promise<void> | undefined;

// Through this thread's process.stdout, which Node forwards to the main thread's: whole lines, in order, never
// torn by two threads writing one pipe at once.
const logger = createLogger(config.logLevel, process.stdout).child({ thread: 'workers' });

port.on('message', (m: ToWorkersThread) => {
  if (m.type === 'wake') workers?.dispatcher.nudge();
  else if (m.type === 'stop') void stop();
  else if (m.type === 'metrics') {
    void loadProcessMetrics()
      .then(({ processRegistry }) => processRegistry.getMetricsAsJSON())
      .then((metrics) => say({ type: 'metrics', id: m.id, metrics, tokenRefreshes: { ...(app?.services.tokens.counts ?? {}) } }))
      // No answer: the scrape gives this thread's last counters after its timeout (thread-workers.ts).
      .catch((err: unknown) => logger.error({ err, op: 'metrics.thread' }, 'the workers thread could not read its metrics'));
  }
});

function stop(): Promise<void> {
  stopping ??= (async () => {
    await workers?.stop();
    await app?.close();
    say({ type: 'stopped' });
    port.close();
  })();
  return stopping;
}

try {
  // The main thread migrated and checked the vault key against the stored secrets moments ago (creating the key
  // on a fresh install): not again here, so that a database gone away meanwhile is what it is for any worker, a
  // round that fails and is tried again, not a thread that cannot start.
  app = await createApp(config, { logger, migrate: false });
  workers = createWorkers(app);
  workers.start();
  say({ type: 'started', owner: workers.dispatcher.owner });
} catch (e) {
  say({ type: 'failed', message: e instanceof Error ? e.message : String(e) });
  await app?.close().catch(() => {});
  port.close();
}
