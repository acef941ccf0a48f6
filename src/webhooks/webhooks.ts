// Registered webhooks and their deliveries: admins only (the routes say so). The signing secret is made here,
// shown once in the answer to create, and kept only as vault ciphertext.
import crypto from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { DB } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { HostGuard } from '../mail-servers/host-guard.js';
import type { Vault } from '../vault/index.js';
import type { CreateWebhookInput, WebhookEvent } from './events.js';
import type { WebhookDeliveriesTable, WebhooksTable } from './tables.js';
import './tables.js';

export type Webhook = Selectable<WebhooksTable>;
export type Delivery = Selectable<WebhookDeliveriesTable>;

export const secretContext = (id: number) => `webhooks.secret:${id}`;

export function webhookView(w: Webhook) {
  return { id: w.id, url: w.url, events: JSON.parse(w.events) as WebhookEvent[], active: w.active === 1, hasSecret: true, createdAt: new Date(w.created_at).toISOString() };
}

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

export function deliveryView(d: Delivery) {
  return {
    id: d.id,
    webhookId: d.webhook_id,
    event: d.event,
    subject: d.subject,
    state: d.state,
    attempts: d.attempts,
    nextAttemptAt: d.state === 'pending' ? iso(d.next_attempt_at) : null,
    lastAttemptAt: iso(d.last_attempt_at),
    lastStatus: d.last_status,
    lastResponse: d.last_response,
    lastError: d.last_error,
    deliveredAt: iso(d.delivered_at),
    createdAt: iso(d.created_at),
    payload: JSON.parse(d.payload) as unknown,
  };
}

export class Webhooks {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly vault: Vault,
    private readonly hostGuard: HostGuard,
  ) {}

  async create(input: CreateWebhookInput, userId: number | null): Promise<{ webhook: Webhook; secret: string }> {
    await this.assertHostAllowed(input.url);
    const secret = `whsec_${crypto.randomBytes(32).toString('base64url')}`;
    const now = Date.now();
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('webhooks')
        .values({ url: input.url, events: JSON.stringify(input.events), secret_enc: 'pending', active: input.active ? 1 : 0, created_by_user_id: userId, created_at: now, updated_at: now })
        .returningAll()
        .executeTakeFirstOrThrow();
      const secret_enc = this.vault.encrypt(secret, secretContext(row.id));
      await trx.updateTable('webhooks').set({ secret_enc }).where('id', '=', row.id).execute();
      return { webhook: { ...row, secret_enc }, secret };
    });
  }

  /** The URL's host must be public or on the allow-list (mail.server.allowed_private_hosts), for everyone. */
  async assertHostAllowed(url: string): Promise<string> {
    const { hostname } = new URL(url);
    try {
      return (await this.hostGuard.check(hostname, 'webhook')).address;
    } catch (e) {
      if (e instanceof AppError) throw e;
      throw new AppError('JUNIPER_ERR_VALIDATION', `The webhook host ${hostname} could not be resolved, so it cannot be checked: ${(e as Error).message}`);
    }
  }

  async list(): Promise<Webhook[]> {
    return this.db.selectFrom('webhooks').selectAll().where('deleted_at', 'is', null).orderBy('id').execute();
  }

  async get(id: number): Promise<Webhook> {
    const row = await this.db.selectFrom('webhooks').selectAll().where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
    if (!row) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No webhook with id ${id}.`);
    return row;
  }

  secretOf(w: Webhook): string {
    return this.vault.decrypt(w.secret_enc, secretContext(w.id));
  }

  /** Kept for its deliveries' record, never delivered to again; its pending deliveries are dropped as failed. */
  async remove(id: number): Promise<Webhook> {
    const w = await this.get(id);
    const now = Date.now();
    await this.db.updateTable('webhooks').set({ deleted_at: now, active: 0, updated_at: now }).where('id', '=', id).execute();
    await this.db.updateTable('webhook_deliveries').set({ state: 'failed', last_error: 'The webhook was deleted.' }).where('webhook_id', '=', id).where('state', '=', 'pending').execute();
    return w;
  }

  async deliveries(webhookId: number, limit = 100): Promise<Delivery[]> {
    await this.get(webhookId);
    return this.db.selectFrom('webhook_deliveries').selectAll().where('webhook_id', '=', webhookId).orderBy('id', 'desc').limit(limit).execute();
  }

  /** Sends a delivery again now, whatever its state, with a fresh count of attempts. */
  async replay(webhookId: number, deliveryId: number): Promise<Delivery> {
    await this.get(webhookId);
    const row = await this.db
      .updateTable('webhook_deliveries')
      .set({ state: 'pending', attempts: 0, next_attempt_at: Date.now(), lease_owner: null, lease_until: null })
      .where('id', '=', deliveryId)
      .where('webhook_id', '=', webhookId)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No delivery ${deliveryId} of webhook ${webhookId}.`);
    return row;
  }
}
