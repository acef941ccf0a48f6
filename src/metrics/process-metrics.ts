// The counters of the work this process does (sends, fetches, webhook deliveries, retention), in one
// registry per process: a `juniper worker` counts what it sent, `juniper serve` what it sent and served.
// Prometheus sums processes; each one is scraped on its own (docs/operations.md). Gauges that describe the
// shared database (queue depth, secret expiry) are read at scrape time instead (scrape.ts).
//
// Loaded only by a process that may be scraped (createApp's `metrics`, on unless a one-shot CLI command turns it
// off): prom-client and the Node modules it brings (http, https, tls, zlib) cost every `juniper params list` about
// 30 ms of its ~400 ms start, for counters nobody could read. Until then the hooks (send-metrics.ts,
// fetch-metrics.ts) count nothing.
import type * as PromClient from 'prom-client';

function create({ Counter, Histogram, Registry, collectDefaultMetrics }: typeof PromClient) {
  const processRegistry = new Registry();
  let defaultsOn = false;
  return {
    processRegistry,
    mailsSent: new Counter({ name: 'juniper_mails_sent_total', help: 'Outgoing mails the SMTP server accepted, by outgoing server id.', labelNames: ['server_id'] as const, registers: [processRegistry] }),
    mailsFailed: new Counter({ name: 'juniper_mails_failed_total', help: 'Outgoing mails that failed for good, by outgoing server id ("none": no server could be chosen).', labelNames: ['server_id'] as const, registers: [processRegistry] }),
    mailsRetried: new Counter({
      name: 'juniper_mails_retried_total',
      help: 'Send attempts put back in the queue, by outgoing server id and why: "retry" (a transient failure, with backoff) or "wait" (waiting for a reconnect or for SMTP AUTH to be enabled).',
      labelNames: ['server_id', 'reason'] as const,
      registers: [processRegistry],
    }),
    sendDuration: new Histogram({
      name: 'juniper_send_duration_seconds',
      help: 'Time one SMTP send took (connection reuse, MAIL FROM to the end of DATA), success or failure, by outgoing server id.',
      labelNames: ['server_id'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [processRegistry],
    }),
    fetchRuns: new Counter({ name: 'juniper_fetch_runs_total', help: 'Fetch runs of an incoming server, by server id and outcome (ok, failed, stopped: ended on purpose, as by a shutdown).', labelNames: ['server_id', 'outcome'] as const, registers: [processRegistry] }),
    fetchedMessages: new Counter({
      name: 'juniper_fetched_messages_total',
      help: 'Incoming messages fetched, by server id and result (stored, duplicate, quarantined).',
      labelNames: ['server_id', 'result'] as const,
      registers: [processRegistry],
    }),
    fetchDuration: new Histogram({
      name: 'juniper_fetch_duration_seconds',
      help: 'Time one fetch run of an incoming server took (connect to close), by server id.',
      labelNames: ['server_id'] as const,
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
      registers: [processRegistry],
    }),
    webhookDeliveries: new Counter({
      name: 'juniper_webhook_deliveries_total',
      help: 'Webhook delivery attempts, by event and outcome (delivered, retry, failed).',
      labelNames: ['event', 'outcome'] as const,
      registers: [processRegistry],
    }),
    retentionDeleted: new Counter({
      name: 'juniper_retention_deleted_total',
      help: 'Rows and blobs removed by the retention job, by kind.',
      labelNames: ['kind'] as const,
      registers: [processRegistry],
    }),

    /** Node's process metrics (CPU, memory, event loop lag); turned on by the first scrape, not on load. */
    enableProcessDefaults: (): void => {
      if (defaultsOn) return;
      defaultsOn = true;
      collectDefaultMetrics({ register: processRegistry, prefix: 'juniper_' });
    },
  };
}

export type ProcessMetrics = ReturnType<typeof create>;

/**
 * prom-client, imported when first needed. Its CommonJS exports object, `default` both under Node (which names the
 * exports it can find statically) and in the bundle (esbuild's wrapper, where they are not all named).
 */
export const promClient = async (): Promise<typeof PromClient> => ((await import('prom-client')) as unknown as { default: typeof PromClient }).default;

let loaded: ProcessMetrics | undefined;
let loading: Promise<ProcessMetrics> | undefined;

/** This process's counters once loadProcessMetrics has run; undefined in a process that never loads them. */
export const processMetrics = (): ProcessMetrics | undefined => loaded;

/** Loads prom-client and makes the counters, once per process (later calls get the same ones). */
export function loadProcessMetrics(): Promise<ProcessMetrics> {
  loading ??= promClient()
    .then((prom) => (loaded = create(prom)))
    .catch((err: unknown) => {
      // Not kept: the next app made in this process tries again.
      loading = undefined;
      throw err;
    });
  return loading;
}
