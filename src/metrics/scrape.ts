// What GET /metrics (and a worker's metrics port) answers: this process's counters (process-metrics.ts)
// plus gauges read from the shared database at scrape time. Every process that serves metrics reports the
// same database gauges; aggregate them with max(), not sum() (docs/operations.md).
import type { Kysely } from 'kysely';
import type * as PromClient from 'prom-client';
import type { PrometheusContentType, Registry } from 'prom-client';
import type { DB, MailState } from '../db/schema.js';
import type { Settings } from '../settings/settings.js';
import type { TokenStore } from '../oauth/token-store.js';
import { aliveWorkers } from '../jobs/worker-heartbeat.js';
import { loadProcessMetrics, promClient } from './process-metrics.js';
import type { ThreadCounters } from '../worker/thread-workers.js';

const MAIL_STATES: readonly MailState[] = ['queued', 'sending', 'sent', 'failed', 'cancelled'];

export interface ScrapeDeps {
  db: Kysely<DB>;
  settings: Settings;
  tokenStore: TokenStore;
}

export class MetricsScraper {
  private threads: (() => Promise<ThreadCounters | undefined>)[] = [];

  constructor(private readonly deps: ScrapeDeps) {}

  /** Counters of another thread of this process (`serve`'s workers thread), summed into this process's. */
  addThread(counters: () => Promise<ThreadCounters | undefined>): void {
    this.threads.push(counters);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    // prom-client is imported here, not with the app: services.ts makes a scraper for every app, CLI commands too.
    const [prom, { processRegistry, enableProcessDefaults }] = await Promise.all([promClient(), loadProcessMetrics()]);
    const { AggregatorRegistry, Registry } = prom;
    enableProcessDefaults();
    const threads = (await Promise.all(this.threads.map((t) => t()))).filter((c) => c !== undefined);
    const scraped = new Registry();
    await this.collectDatabaseGauges(prom, scraped, threads);
    // Counters of one name summed across the threads, as Prometheus would sum processes; Node's process
    // metrics come from the main thread only (the workers thread never turns them on).
    const own = threads.length === 0 ? processRegistry : AggregatorRegistry.aggregate<PrometheusContentType>([await processRegistry.getMetricsAsJSON(), ...threads.map((t) => t.metrics)]);
    const merged = Registry.merge([own, scraped]);
    return { contentType: merged.contentType, body: await merged.metrics() };
  }

  private async collectDatabaseGauges({ Counter, Gauge }: typeof PromClient, registry: Registry, threads: readonly ThreadCounters[]): Promise<void> {
    const { db, settings, tokenStore } = this.deps;
    const queue = new Gauge({ name: 'juniper_outgoing_mails', help: 'Outgoing mails in the database, by state (queued includes mails waiting for a retry or a reconnect).', labelNames: ['state'] as const, registers: [registry] });
    const byState = await db.selectFrom('outgoing_mails').select(['state', db.fn.countAll<number>().as('n')]).groupBy('state').execute();
    for (const state of MAIL_STATES) queue.set({ state }, Number(byState.find((r) => r.state === state)?.n ?? 0));

    const quarantined = new Gauge({ name: 'juniper_incoming_messages_quarantined', help: 'Incoming messages kept in quarantine.', registers: [registry] });
    const q = await db.selectFrom('messages').select(db.fn.countAll<number>().as('n')).where('quarantined', '=', 1).executeTakeFirst();
    quarantined.set(Number(q?.n ?? 0));

    const { outlook } = await settings.get();
    // Registered only with an expiry date: an unlabelled gauge would otherwise report 0, i.e. "expired today".
    if (outlook.clientSecretDaysLeft !== null) {
      new Gauge({ name: 'juniper_outlook_client_secret_days_left', help: 'Days until the Outlook client secret expires (absent when its expiry date is not set).', registers: [registry] }).set(outlook.clientSecretDaysLeft);
    }

    // The token store counts since this process started; exposed as a counter so rate() works across restarts.
    const refreshes = new Counter({ name: 'juniper_token_refreshes_total', help: 'Outlook token refreshes by this process, by outcome (refreshed, needs_reconnect, app_problem, transient).', labelNames: ['outcome'] as const, registers: [registry] });
    for (const [outcome, n] of Object.entries(tokenStore.counts)) refreshes.inc({ outcome }, n + threads.reduce((sum, t) => sum + (t.tokenRefreshes[outcome] ?? 0), 0));

    const servers = new Gauge({ name: 'juniper_server_info', help: 'One sample per mail server, to join server_id to its name and kind.', labelNames: ['kind', 'server_id', 'name'] as const, registers: [registry] });
    for (const [kind, table] of [['outgoing', 'outgoing_servers'], ['incoming', 'incoming_servers']] as const) {
      for (const s of await db.selectFrom(table).select(['id', 'name']).where('archived_at', 'is', null).execute()) servers.set({ kind, server_id: String(s.id), name: s.name }, 1);
    }

    const workers = new Gauge({ name: 'juniper_workers_alive', help: 'Worker processes whose heartbeat is fresh (see /readyz).', registers: [registry] });
    workers.set((await aliveWorkers(db)).length);
  }
}
