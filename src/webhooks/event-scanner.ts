// Turns what happened into delivery rows by reading the state the rest of Juniper already stores (a mail
// sent, failed or bounced, a message stored, a server waiting for a reconnect), instead of hooks in the
// dispatcher and fetcher: an event cannot be lost between its commit and a hook, and a webhook registered
// later does not get the past (only what happened from its creation on). The unique (webhook, event,
// subject) key makes a second scan, or a second worker process, queue nothing twice.
import crypto from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { headerMessageId } from '../outgoing/partial-delivery.js';
import { connectionsNeedingReconnect } from '../oauth/connections.js';
import type { WebhookEvent } from './events.js';
import type { Webhook } from './webhooks.js';
import { DAY_MS, RETENTION_KEYS, retentionDays } from '../retention/retention.js';
import type { Parameters } from '../settings/parameters.js';

/** Each scan queues at most this many deliveries per webhook and event; the next scan takes the rest. */
const SCAN_LIMIT = 200;

interface Found {
  subject: string;
  data: Record<string, unknown>;
}

const iso = (t: number | null | undefined) => (t === null || t === undefined ? null : new Date(t).toISOString());
const list = (json: string) => JSON.parse(json) as string[];

export class EventScanner {
  /** `parameters`: where the delivery retention is read; without it, events are looked for back to each webhook's creation. */
  constructor(
    private readonly db: Kysely<DB>,
    private readonly parameters?: Pick<Parameters, 'value'>,
  ) {}

  /** Queues the deliveries of every active webhook; returns how many were queued. */
  async scan(now = Date.now()): Promise<number> {
    const hooks = await this.db.selectFrom('webhooks').selectAll().where('active', '=', 1).where('deleted_at', 'is', null).execute();
    let queued = 0;
    // Retention prunes finished deliveries older than its window; looking further back would find their
    // events again, with no row left to say they were delivered.
    const days = this.parameters ? retentionDays(await this.parameters.value(RETENTION_KEYS.webhookDeliveries)) : undefined;
    const window = days === undefined ? 0 : now - days * DAY_MS;
    for (const hook of hooks) {
      for (const event of JSON.parse(hook.events) as WebhookEvent[]) {
        const found = await this.find(hook, event, Math.max(hook.created_at, window));
        if (found.length === 0) continue;
        const rows = found.map((f) => ({
          webhook_id: hook.id,
          event,
          subject: f.subject,
          payload: JSON.stringify({ event, webhookId: hook.id, subject: f.subject, occurredAt: new Date(now).toISOString(), data: f.data }),
          state: 'pending' as const,
          next_attempt_at: now,
          created_at: now,
        }));
        const result = await this.db.insertInto('webhook_deliveries').values(rows).onConflict((oc) => oc.columns(['webhook_id', 'event', 'subject']).doNothing()).executeTakeFirst();
        queued += Number(result.numInsertedOrUpdatedRows ?? 0);
      }
    }
    return queued;
  }

  private notDelivered(hook: Webhook, event: WebhookEvent, subject: ReturnType<typeof sql<string>>) {
    return sql<boolean>`not exists (select 1 from webhook_deliveries d where d.webhook_id = ${hook.id} and d.event = ${event} and d.subject = ${subject})`;
  }

  private async find(hook: Webhook, event: WebhookEvent, since: number): Promise<Found[]> {
    const { db } = this;
    const mailSubject = sql<string>`'mail:' || cast(outgoing_mails.id as text)`;
    // A retried mail can fail again: each round of attempts (a manual retry sets retried_at) is its own
    // failure. The first round keeps the plain key, so deliveries queued before this key existed still count.
    const failedSubject = sql<string>`'mail:' || cast(outgoing_mails.id as text) || coalesce(':' || cast(outgoing_mails.retried_at as text), '')`;
    const mails = () => db.selectFrom('outgoing_mails').select(['id', 'message_id', 'from_header', 'to_addrs', 'subject', 'server_id', 'smtp_response', 'sent_at', 'failure_type', 'failure_reason', 'bounced_at', 'bounce_reason', 'updated_at', 'retried_at', 'envelope_to', 'follow_up_of']).orderBy('id').limit(SCAN_LIMIT);
    const mailData = (m: Awaited<ReturnType<ReturnType<typeof mails>['execute']>>[number]) => ({
      id: m.id, messageId: headerMessageId(m.message_id), from: m.from_header, to: list(m.to_addrs), subject: m.subject, serverId: m.server_id,
      // A follow-up (recipients its original's server deferred): its event is about those recipients only.
      ...(m.envelope_to ? { followUpOf: m.follow_up_of, envelopeTo: list(m.envelope_to) } : {}),
    });
    switch (event) {
      case 'mail.sent':
        return (await mails().where('state', '=', 'sent').where('sent_at', '>=', since).where(this.notDelivered(hook, event, mailSubject)).execute()).map((m) => ({
          subject: `mail:${m.id}`,
          data: { ...mailData(m), smtpResponse: m.smtp_response, sentAt: iso(m.sent_at) },
        }));
      case 'mail.failed':
        return (await mails().where('state', '=', 'failed').where('updated_at', '>=', since).where(this.notDelivered(hook, event, failedSubject)).execute()).map((m) => ({
          subject: m.retried_at === null ? `mail:${m.id}` : `mail:${m.id}:${m.retried_at}`,
          data: { ...mailData(m), failureType: m.failure_type, reason: m.failure_reason, failedAt: iso(m.updated_at) },
        }));
      case 'mail.bounced':
        return (await mails().where('bounced_at', '>=', since).where(this.notDelivered(hook, event, mailSubject)).execute()).map((m) => ({
          subject: `mail:${m.id}`,
          data: { ...mailData(m), bounceReason: m.bounce_reason, bouncedAt: iso(m.bounced_at) },
        }));
      case 'message.received': {
        const subject = sql<string>`'message:' || cast(messages.id as text)`;
        const rows = await db
          .selectFrom('messages')
          .select(['id', 'server_id', 'message_id', 'from_header', 'to_addrs', 'subject', 'quarantined', 'is_bounce', 'created_at'])
          .where('created_at', '>=', since)
          .where(this.notDelivered(hook, event, subject))
          .orderBy('id')
          .limit(SCAN_LIMIT)
          .execute();
        return rows.map((m) => ({
          subject: `message:${m.id}`,
          data: { id: m.id, serverId: m.server_id, messageId: m.message_id, from: m.from_header, to: list(m.to_addrs), subject: m.subject, quarantined: m.quarantined === 1, bounce: m.is_bounce === 1, receivedAt: iso(m.created_at) },
        }));
      }
      case 'server.needs_reconnect': {
        const found: Found[] = [];
        for (const kind of ['outgoing', 'incoming'] as const) {
          for (const s of await connectionsNeedingReconnect(db, kind)) {
            // Per refresh token: after a reconnect (a new token) the next refusal is a new event.
            const subject = `${kind}_server:${s.id}:${crypto.createHash('sha256').update(s.refresh_token_enc ?? '').digest('hex').slice(0, 16)}`;
            found.push({ subject, data: { kind, id: s.id, name: s.name, errorCode: s.error_code, message: s.error_message } });
          }
        }
        return found;
      }
    }
  }
}
