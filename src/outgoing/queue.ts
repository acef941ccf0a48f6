// The durable outgoing queue. A mail is stored whole (body, attachments, original bytes) before enqueue
// returns, keeps one Message-ID across retries, and moves queued → sending → sent | failed | queued (retry),
// or cancelled. Workers claim due mails with a lease: one UPDATE … RETURNING statement, with FOR UPDATE
// SKIP LOCKED on PostgreSQL, so two workers never claim the same mail and a dead worker's mails come back
// when its lease expires.
import crypto from 'node:crypto';
import { sql, type Kysely, type UpdateObject } from 'kysely';
import type { Actor } from '../audit/audit-log.js';
import type { DialectName } from '../db/database.js';
import type { DB, MailState, OutgoingMail } from '../db/schema.js';
import { domainOf, parseMailbox } from '../lib/address.js';
import { AppError } from '../lib/errors.js';
import type { BlobStore } from '../mailbox/blob-store.js';
import type { CheckedMail } from './enqueue-rules.js';
import type { OutgoingAttachment, OutgoingMessage } from './mail-transport.js';

export interface MailView {
  id: number;
  messageId: string;
  state: MailState;
  attempts: number;
  from: string;
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  serverId: number | null;
  effectiveFrom: string | null;
  envelopeFrom: string | null;
  failureType: string | null;
  failureReason: string | null;
  waitingReason: string | null;
  smtpResponse: string | null;
  rejectedRecipients: { address: string; response: string }[];
  nextAttemptAt: string | null;
  sentAt: string | null;
  /** Set when a delivery-status report (or a mail to the bounce address) named this mail; the state stays. */
  bouncedAt: string | null;
  bounceReason: string | null;
  createdAt: string;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const list = (json: string) => JSON.parse(json) as string[];

export function mailView(m: OutgoingMail): MailView {
  return {
    id: m.id,
    messageId: m.message_id,
    state: m.state,
    attempts: m.attempts,
    from: m.from_header,
    to: list(m.to_addrs),
    cc: list(m.cc_addrs),
    bcc: list(m.bcc_addrs),
    subject: m.subject,
    serverId: m.server_id,
    effectiveFrom: m.effective_from,
    envelopeFrom: m.envelope_from,
    failureType: m.failure_type,
    failureReason: m.failure_reason,
    waitingReason: m.waiting_reason,
    smtpResponse: m.smtp_response,
    rejectedRecipients: m.rejected_recipients ? (JSON.parse(m.rejected_recipients) as MailView['rejectedRecipients']) : [],
    nextAttemptAt: m.state === 'queued' ? iso(m.next_attempt_at) : null,
    sentAt: iso(m.sent_at),
    bouncedAt: iso(m.bounced_at),
    bounceReason: m.bounce_reason,
    createdAt: iso(m.created_at)!,
  };
}

/** `<random@domain-of-the-sender>`: stable for the mail's life, so retries and replies thread. */
export function newMessageId(from: string): string {
  const domain = domainOf(parseMailbox(from)?.address ?? '') || 'juniper.invalid';
  return `<${crypto.randomUUID()}@${domain.toLowerCase()}>`;
}

export interface MailFilter {
  state?: MailState;
  serverId?: number;
  createdByUserId?: number;
  limit?: number;
  beforeId?: number;
}

export interface SendOutcome {
  serverId: number;
  effectiveFrom: string;
  envelopeFrom: string;
}

export class OutgoingQueue {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly dialect: DialectName,
    private readonly blobs: BlobStore,
  ) {}

  async enqueue(mail: CheckedMail, actor: Actor, options: { raw?: Buffer; messageId?: string } = {}): Promise<{ id: number; messageId: string }> {
    const now = Date.now();
    const messageId = options.messageId ?? newMessageId(mail.from);
    const id = await this.db.transaction().execute(async (trx) => {
      const rawSha = options.raw ? await this.blobs.put(options.raw, trx) : null;
      const row = await trx
        .insertInto('outgoing_mails')
        .values({
          message_id: messageId,
          from_header: mail.from,
          to_addrs: JSON.stringify(mail.to),
          cc_addrs: JSON.stringify(mail.cc),
          bcc_addrs: JSON.stringify(mail.bcc),
          reply_to: mail.replyTo,
          subject: mail.subject,
          text_body: mail.text,
          html_body: mail.html,
          headers: Object.keys(mail.headers).length ? JSON.stringify(mail.headers) : null,
          raw_sha256: rawSha,
          forced_server_id: mail.serverId,
          mass_mailing: mail.massMailing ? 1 : 0,
          state: 'queued',
          attempts: 0,
          next_attempt_at: now,
          lease_owner: null,
          lease_expires_at: null,
          waiting_reason: null,
          failure_type: null,
          failure_reason: null,
          server_id: null,
          effective_from: null,
          envelope_from: null,
          smtp_response: null,
          rejected_recipients: null,
          sent_at: null,
          created_by_user_id: actor.userId,
          created_at: now,
          updated_at: now,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      let position = 0;
      for (const a of mail.attachments) {
        const sha = await this.blobs.put(a.content, trx);
        await trx
          .insertInto('outgoing_attachments')
          .values({ mail_id: row.id, position: position++, filename: a.filename, content_type: a.contentType, content_id: a.contentId, blob_sha256: sha })
          .execute();
      }
      return row.id;
    });
    return { id, messageId };
  }

  async get(id: number): Promise<OutgoingMail> {
    const row = await this.db.selectFrom('outgoing_mails').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No outgoing mail with id ${id}.`);
    return row;
  }

  async list(filter: MailFilter = {}): Promise<OutgoingMail[]> {
    let q = this.db.selectFrom('outgoing_mails').selectAll().orderBy('id', 'desc').limit(Math.min(filter.limit ?? 100, 1000));
    if (filter.state) q = q.where('state', '=', filter.state);
    if (filter.serverId !== undefined) q = q.where('server_id', '=', filter.serverId);
    if (filter.createdByUserId !== undefined) q = q.where('created_by_user_id', '=', filter.createdByUserId);
    if (filter.beforeId !== undefined) q = q.where('id', '<', filter.beforeId);
    return q.execute();
  }

  async countByState(): Promise<Record<MailState, number>> {
    const rows = await this.db
      .selectFrom('outgoing_mails')
      .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('state')
      .execute();
    const out: Record<MailState, number> = { queued: 0, sending: 0, sent: 0, failed: 0, cancelled: 0 };
    for (const r of rows) out[r.state] = Number(r.n);
    return out;
  }

  /** Back to the queue now, with a fresh round of attempts (from failed, cancelled or a waiting queued mail). */
  async retry(id: number): Promise<OutgoingMail> {
    const mail = await this.get(id);
    if (mail.state === 'sent' || mail.state === 'sending') {
      throw new AppError('JUNIPER_ERR_CONFLICT', `Mail ${id} is ${mail.state}; only failed, cancelled or queued mails can be retried.`);
    }
    return this.db
      .updateTable('outgoing_mails')
      .set({ state: 'queued', attempts: 0, next_attempt_at: Date.now(), failure_type: null, failure_reason: null, waiting_reason: null, updated_at: Date.now() })
      .where('id', '=', id)
      .where('state', 'in', ['failed', 'cancelled', 'queued'])
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  async cancel(id: number): Promise<OutgoingMail> {
    const row = await this.db
      .updateTable('outgoing_mails')
      .set({ state: 'cancelled', updated_at: Date.now() })
      .where('id', '=', id)
      .where('state', '=', 'queued')
      .returningAll()
      .executeTakeFirst();
    if (row) return row;
    const mail = await this.get(id);
    throw new AppError('JUNIPER_ERR_CONFLICT', `Mail ${id} is ${mail.state}; only queued mails can be cancelled.`);
  }

  /**
   * Claims up to `limit` due mails for `owner` until now + leaseMs: queued ones whose time has come, and
   * sending ones whose lease expired (their worker died). Each claim counts as an attempt, so a mail that
   * crashes its worker cannot loop forever.
   */
  async claim(owner: string, limit: number, leaseMs: number, now = Date.now()): Promise<OutgoingMail[]> {
    let due = this.db
      .selectFrom('outgoing_mails')
      .select('id')
      .where((eb) =>
        eb.or([
          eb.and([eb('state', '=', 'queued'), eb('next_attempt_at', '<=', now)]),
          eb.and([eb('state', '=', 'sending'), eb('lease_expires_at', '<', now)]),
        ]),
      )
      .orderBy('next_attempt_at')
      .orderBy('id')
      .limit(limit);
    if (this.dialect === 'postgres') due = due.forUpdate().skipLocked();
    const rows = await this.db
      .updateTable('outgoing_mails')
      .set({ state: 'sending', lease_owner: owner, lease_expires_at: now + leaseMs, attempts: sql<number>`attempts + 1`, updated_at: now })
      .where('id', 'in', due)
      .returningAll()
      .execute();
    return rows.sort((a, b) => a.id - b.id);
  }

  /** Mails waiting for this server to be fixed (e.g. reconnected to Outlook) become due now. */
  async wakeWaiting(serverId: number): Promise<number> {
    const r = await this.db
      .updateTable('outgoing_mails')
      .set({ next_attempt_at: Date.now(), updated_at: Date.now() })
      .where('state', '=', 'queued')
      .where('server_id', '=', serverId)
      .where('waiting_reason', 'is not', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Extends the lease of mails this worker still holds (a slow server must not let another worker resend them). */
  async renewLeases(owner: string, ids: number[], leaseMs: number): Promise<void> {
    if (ids.length === 0) return;
    await this.db.updateTable('outgoing_mails').set({ lease_expires_at: Date.now() + leaseMs }).where('lease_owner', '=', owner).where('state', '=', 'sending').where('id', 'in', ids).execute();
  }

  /** The complete message as stored, ready for a transport. */
  async message(mail: OutgoingMail): Promise<OutgoingMessage> {
    const rows = await this.db.selectFrom('outgoing_attachments').selectAll().where('mail_id', '=', mail.id).orderBy('position').execute();
    const attachments: OutgoingAttachment[] = [];
    for (const a of rows) attachments.push({ filename: a.filename, contentType: a.content_type, contentId: a.content_id, content: await this.blobs.get(a.blob_sha256) });
    return {
      messageId: mail.message_id,
      from: mail.from_header,
      to: list(mail.to_addrs),
      cc: list(mail.cc_addrs),
      bcc: list(mail.bcc_addrs),
      replyTo: mail.reply_to,
      subject: mail.subject,
      text: mail.text_body,
      html: mail.html_body,
      headers: mail.headers ? (JSON.parse(mail.headers) as Record<string, string>) : {},
      attachments,
      raw: mail.raw_sha256 ? await this.blobs.get(mail.raw_sha256) : null,
    };
  }

  private finish(id: number, owner: string, values: UpdateObject<DB, 'outgoing_mails'>) {
    // Only the lease holder records an outcome: a worker that lost its lease must not overwrite a newer one.
    return this.db
      .updateTable('outgoing_mails')
      .set({ ...values, lease_owner: null, lease_expires_at: null, updated_at: Date.now() })
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .where('state', '=', 'sending')
      .execute();
  }

  async markSent(id: number, owner: string, outcome: SendOutcome & { response: string; rejected: { address: string; response: string }[] }): Promise<void> {
    await this.finish(id, owner, {
      state: 'sent',
      server_id: outcome.serverId,
      effective_from: outcome.effectiveFrom,
      envelope_from: outcome.envelopeFrom,
      smtp_response: outcome.response,
      rejected_recipients: outcome.rejected.length ? JSON.stringify(outcome.rejected) : null,
      failure_type: null,
      failure_reason: null,
      waiting_reason: null,
      sent_at: Date.now(),
    });
  }

  async markFailed(id: number, owner: string, failure: { failureType: string; reason: string }, outcome?: Partial<SendOutcome>): Promise<void> {
    await this.finish(id, owner, {
      state: 'failed',
      failure_type: failure.failureType,
      failure_reason: failure.reason,
      waiting_reason: null,
      server_id: outcome?.serverId ?? null,
      effective_from: outcome?.effectiveFrom ?? null,
      envelope_from: outcome?.envelopeFrom ?? null,
    });
  }

  /** Back to queued for a later attempt; `waiting` keeps the attempt from counting (the server, not the mail, is at fault). */
  async markRetry(
    id: number,
    owner: string,
    retry: { at: number; failureType: string; reason: string; waiting: boolean },
    outcome?: Partial<SendOutcome>,
  ): Promise<void> {
    await this.finish(id, owner, {
      state: 'queued',
      next_attempt_at: retry.at,
      failure_type: retry.failureType,
      failure_reason: retry.waiting ? null : retry.reason,
      waiting_reason: retry.waiting ? retry.reason : null,
      ...(retry.waiting ? { attempts: sql<number>`attempts - 1` } : {}),
      server_id: outcome?.serverId ?? null,
      effective_from: outcome?.effectiveFrom ?? null,
      envelope_from: outcome?.envelopeFrom ?? null,
    });
  }
}
