// `juniper serve`'s background workers in a thread of their own (workers-thread.ts), the default: the API and
// the UI answer on the main thread while sending, fetching and parsing run on the second core, as
// `serve --no-workers` beside a `juniper worker` would, but in one process to start, stop and supervise.
// The thread shares nothing but the database; this side forwards wake-ups, stop and metrics requests.
import { Worker } from 'node:worker_threads';
import type { App } from '../app.js';
import type { FromWorkersThread, MetricsJson, ToWorkersThread, WorkersThreadData } from './thread-messages.js';

export interface ThreadCounters {
  metrics: MetricsJson;
  tokenRefreshes: Record<string, number>;
}

export interface ThreadWorkers {
  /** The thread's dispatcher's owner name (lease_owner, sent_by, the heartbeat). */
  owner: string;
  /** The thread's counters for this process's GET /metrics; none once it has ended or when it does not answer. */
  counters(): Promise<ThreadCounters | undefined>;
  /** Resolves with the reason when the thread ends without being asked to (never after stop()). */
  readonly died: Promise<Error>;
  /** Finishes and records the sends under way (as a worker does on SIGTERM), then ends the thread. */
  stop(): Promise<void>;
}

/** How long a metrics scrape waits for the thread: a busy thread answers in milliseconds, a stuck one never. */
const COUNTERS_TIMEOUT_MS = 2000;
/** How long a stopped thread may take to flush its output and end before it is terminated. */
const EXIT_GRACE_MS = 5000;

/**
 * From dist/ the built .js. From source (the benchmarks and the tests run under tsx) the .ts beside this file,
 * through tsx's own import: Node 20 does not apply the main thread's loader to a worker's entry.
 */
function threadEntry(): [URL | string, { eval?: true }] {
  if (!import.meta.url.endsWith('.ts')) return [new URL('./workers-thread.js', import.meta.url), {}];
  const entry = new URL('./workers-thread.ts', import.meta.url).href;
  return [`import('tsx/esm/api').then(({ tsImport }) => tsImport(${JSON.stringify(entry)}, ${JSON.stringify(import.meta.url)}))`, { eval: true }];
}

export async function startThreadWorkers(app: App): Promise<ThreadWorkers> {
  const data: WorkersThreadData = { config: app.config };
  // Subscribed before the thread exists: mail queued while it starts (HTTP already listens) is owed a wake-up,
  // sent once it has started, instead of waiting for its first poll.
  let started = false;
  let wakeOwed = false;
  let ended = false;
  const unsubscribe = app.services.outbox.onEnqueued(() => {
    if (wakeOwed || ended) return;
    wakeOwed = true;
    if (started) setImmediate(sendWake);
  });
  const sendWake = () => {
    wakeOwed = false;
    if (!ended) send({ type: 'wake' });
  };
  const [entry, how] = threadEntry();
  const worker = new Worker(entry, { ...how, workerData: data });
  const send = (m: ToWorkersThread) => worker.postMessage(m);
  const pending = new Map<number, (c: ThreadCounters | undefined) => void>();
  let nextId = 1;
  let lastCounters: ThreadCounters | undefined;
  let stopRequested = false;
  let lastError: Error | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));
  let resolveExited!: () => void;
  const exited = new Promise<void>((resolve) => (resolveExited = resolve));
  let resolveDied!: (e: Error) => void;
  const died = new Promise<Error>((resolve) => (resolveDied = resolve));

  const starting = new Promise<string>((resolve, reject) => {
    worker.on('message', (m: FromWorkersThread) => {
      if (m.type === 'started') resolve(m.owner);
      else if (m.type === 'failed') reject(new Error(`The background workers could not start: ${m.message}`));
      else if (m.type === 'stopped') resolveStopped();
      else if (m.type === 'metrics') {
        pending.get(m.id)?.({ metrics: m.metrics, tokenRefreshes: m.tokenRefreshes });
        pending.delete(m.id);
      }
    });
    worker.on('error', (e) => {
      lastError = e;
      reject(e);
    });
    worker.on('exit', (code) => {
      ended = true;
      resolveExited();
      for (const answer of pending.values()) answer(undefined);
      pending.clear();
      resolveStopped();
      reject(lastError ?? new Error(`The background workers ended while starting (exit code ${code}).`));
      if (!stopRequested) resolveDied(lastError ?? new Error(`the workers thread ended (exit code ${code})`));
    });
  });
  const owner = await starting.catch(async (e: unknown) => {
    unsubscribe();
    await worker.terminate();
    throw e;
  });
  // From now on mail made due here (the API, the UI, a reconnect) is claimed at once, as in one thread: one
  // message per burst of enqueues, not one each.
  started = true;
  if (wakeOwed) sendWake();

  return {
    owner,
    died,
    counters() {
      // A thread too busy to answer in time (or ended) gives its last answer: counters that dropped to the main
      // thread's alone for one scrape would read as a reset to Prometheus and show as a false spike in rate().
      if (ended) return Promise.resolve(lastCounters);
      const id = nextId++;
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          resolve(lastCounters);
        }, COUNTERS_TIMEOUT_MS);
        pending.set(id, (c) => {
          clearTimeout(timer);
          if (c) lastCounters = c;
          resolve(lastCounters);
        });
        send({ type: 'metrics', id });
      });
    },
    async stop() {
      stopRequested = true;
      unsubscribe();
      if (!ended) send({ type: 'stop' });
      await stopped;
      // The thread ends by itself once it closed its port; terminating it at once could drop its last log lines,
      // still on their way to this thread's stdout.
      if (!ended) await Promise.race([exited, new Promise((r) => setTimeout(r, EXIT_GRACE_MS).unref())]);
      await worker.terminate();
    },
  };
}
