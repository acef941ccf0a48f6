// Posts due deliveries: signed (events.ts), one attempt each at most every backoff step (lib/backoff.ts),
// keeping the receiver's last status and the start of its answer. Claims with a lease, so several worker
// processes never post the same delivery at once; a process killed mid-post leaves it to the lease's end.
// The URL's host is checked again at every attempt (DNS can change) and the checked address is connected to.
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { MAX_ATTEMPTS, retryDelayMs } from '../lib/backoff.js';
import type { Logger } from '../lib/logger.js';
import { processMetrics } from '../metrics/process-metrics.js';
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign, TIMESTAMP_HEADER } from './events.js';
import type { EventScanner } from './event-scanner.js';
import type { Delivery, Webhooks } from './webhooks.js';

export interface DeliveryOptions {
  pollMs: number;
  timeoutMs: number;
  leaseMs: number;
  batch: number;
}

export const defaultDeliveryOptions: DeliveryOptions = { pollMs: 2000, timeoutMs: 10_000, leaseMs: 60_000, batch: 20 };
/** How much of a receiver's answer is kept on the delivery. */
const RESPONSE_KEEP = 1024;

interface PostResult {
  status?: number;
  body?: string;
  error?: string;
}

export class WebhookWorker {
  readonly owner = `${os.hostname()}:${process.pid}:webhooks:${crypto.randomBytes(3).toString('hex')}`;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly deps: { db: Kysely<DB>; webhooks: Webhooks; scanner: EventScanner; log: Logger; now?: () => number },
    private readonly options: DeliveryOptions = defaultDeliveryOptions,
  ) {
    // A post that outlived its lease would be claimed and posted again by another process: the deadline leaves
    // half the lease for the host check and the result's update.
    if (!(options.timeoutMs > 0 && options.timeoutMs * 2 <= options.leaseMs)) {
      throw new Error(`Webhook delivery timeout ${options.timeoutMs} ms must be positive and at most half the lease (${options.leaseMs} ms), or a slow receiver gets the same delivery twice.`);
    }
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /** One scan and one batch of due deliveries; returns how many were attempted. */
  async runOnce(): Promise<number> {
    await this.deps.scanner.scan(this.now());
    const due = await this.claim();
    await Promise.all(due.map((d) => this.deliver(d)));
    return due.length;
  }

  private async claim(): Promise<Delivery[]> {
    const { db } = this.deps;
    const now = this.now();
    const ids = (
      await db
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('state', '=', 'pending')
        .where('next_attempt_at', '<=', now)
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
        .orderBy('next_attempt_at')
        .limit(this.options.batch)
        .execute()
    ).map((r) => r.id);
    if (ids.length === 0) return [];
    // Conditional on the lease being free still: another process that claimed meanwhile wins.
    return db
      .updateTable('webhook_deliveries')
      .set({ lease_owner: this.owner, lease_until: now + this.options.leaseMs })
      .where('id', 'in', ids)
      .where('state', '=', 'pending')
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .returningAll()
      .execute();
  }

  private async deliver(d: Delivery): Promise<void> {
    const { db, webhooks, log } = this.deps;
    const hook = await webhooks.get(d.webhook_id).catch(() => undefined);
    let result: PostResult;
    if (!hook || hook.active !== 1) result = { error: 'The webhook is inactive or deleted.' };
    else {
      try {
        const address = await webhooks.assertHostAllowed(hook.url);
        const timestamp = Math.floor(this.now() / 1000);
        result = await post(hook.url, address, d.payload, {
          'content-type': 'application/json',
          'user-agent': 'Juniper-Webhooks/1',
          [EVENT_HEADER]: d.event,
          [DELIVERY_HEADER]: String(d.id),
          [TIMESTAMP_HEADER]: String(timestamp),
          [SIGNATURE_HEADER]: sign(webhooks.secretOf(hook), timestamp, d.payload),
        }, this.options.timeoutMs);
      } catch (e) {
        result = { error: e instanceof Error ? e.message : String(e) };
      }
    }
    const now = this.now();
    const attempts = d.attempts + 1;
    const ok = result.status !== undefined && result.status >= 200 && result.status < 300;
    const gaveUp = !ok && (attempts >= MAX_ATTEMPTS || !hook || hook.active !== 1);
    const outcome = ok ? 'delivered' : gaveUp ? 'failed' : 'retry';
    await db
      .updateTable('webhook_deliveries')
      .set({
        state: ok ? 'delivered' : gaveUp ? 'failed' : 'pending',
        attempts,
        next_attempt_at: ok || gaveUp ? d.next_attempt_at : now + retryDelayMs(attempts),
        lease_owner: null,
        lease_until: null,
        last_status: result.status ?? null,
        last_response: result.body?.slice(0, RESPONSE_KEEP) ?? null,
        last_error: ok ? null : (result.error ?? `The receiver answered HTTP ${result.status}.`),
        last_attempt_at: now,
        delivered_at: ok ? now : null,
      })
      .where('id', '=', d.id)
      .where('lease_owner', '=', this.owner)
      .execute();
    processMetrics()?.webhookDeliveries.inc({ event: d.event, outcome });
    if (!ok) log.warn({ op: 'webhook.deliver', delivery: d.id, webhook: d.webhook_id, status: result.status, outcome }, `webhook delivery ${d.id} ${outcome === 'failed' ? 'failed for good' : 'will be retried'}: ${result.error ?? `HTTP ${result.status}`}`);
  }

  start(): void {
    if (this.timer) return;
    const tick = () => {
      if (this.running) return;
      this.running = this.runOnce()
        .then(() => undefined)
        .catch((err: unknown) => this.deps.log.error({ err, op: 'webhook.round' }, 'webhook round failed'))
        .finally(() => (this.running = undefined));
    };
    tick();
    this.timer = setInterval(tick, this.options.pollMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}

/**
 * One POST to the checked address (the URL's name stays the Host header and the TLS server name). The whole
 * exchange has a deadline: http's own `timeout` is only an idle timeout, so a receiver trickling a byte now and
 * then would hold the post (and the worker's round) past the lease, and another process would post it again.
 * Reading stops at the kept KB: the rest of the answer is never stored, so it is not waited for either.
 */
function post(url: string, address: string, body: string, headers: Record<string, string>, timeoutMs: number): Promise<PostResult> {
  const u = new URL(url);
  const client = u.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    let settled = false;
    const done = (result: PostResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(result);
    };
    let status: number | undefined;
    let text = '';
    const req = client.request(
      {
        method: 'POST',
        host: address,
        port: u.port || (u.protocol === 'https:' ? 443 : 80),
        path: `${u.pathname}${u.search}`,
        headers: { ...headers, host: u.host, 'content-length': String(Buffer.byteLength(body)) },
        ...(net.isIP(u.hostname) ? {} : { servername: u.hostname }),
        timeout: timeoutMs,
      },
      (res) => {
        status = res.statusCode;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
          if (text.length >= RESPONSE_KEEP) {
            done({ status, body: text.slice(0, RESPONSE_KEEP) });
            res.destroy();
          }
        });
        res.on('end', () => done({ status, body: text }));
        res.on('error', (e) => done({ status, error: e.message }));
      },
    );
    // The status is the receiver's answer: once it came, a body still trickling at the deadline is cut, not
    // a failure (its start is kept as usual).
    const deadline = setTimeout(() => {
      done(status === undefined ? { error: `${u.host} did not answer within ${timeoutMs / 1000} s; the post was abandoned and will be retried.` } : { status, body: text.slice(0, RESPONSE_KEEP) });
      req.destroy();
    }, timeoutMs);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', (e) => done({ error: `Could not reach ${u.host}: ${e.message}` }));
    req.end(body);
  });
}
