// What `juniper serve`'s main thread and its workers thread say to each other (thread-workers.ts and
// workers-thread.ts): the structured-clone messages of one MessagePort, nothing else is shared.
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';

/** What Registry.getMetricsAsJSON gives: plain data, so it crosses the port (prom-client does not export the type). */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

export interface WorkersThreadData {
  config: Config;
}

export type ToWorkersThread =
  /** Mail became due in the main thread (the API, the UI, a reconnect): claim it now, not at the next poll. */
  | { type: 'wake' }
  /** Finish the sends and fetches under way, record them, close, then say 'stopped'. */
  | { type: 'stop' }
  /** This thread's counters, for the main thread's GET /metrics. */
  | { type: 'metrics'; id: number };

export type FromWorkersThread =
  | { type: 'started'; owner: string }
  | { type: 'stopped' }
  | { type: 'metrics'; id: number; metrics: MetricsJson; tokenRefreshes: Record<string, number> }
  /** A start that failed (the database, the vault): the main thread reports it and exits. */
  | { type: 'failed'; message: string };
