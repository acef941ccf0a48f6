// The durable outgoing queue. A mail is stored whole (body, attachments, original bytes) before enqueue
// returns, keeps one Message-ID across retries, and moves queued → sending → sent | failed | queued (retry),
// or cancelled. Workers claim due mails with a lease: one UPDATE … RETURNING statement, with FOR UPDATE
// SKIP LOCKED on PostgreSQL, so two workers never claim the same mail and a dead worker's mails come back
// when its lease expires.
import crypto from 'node:crypto';
import { CompiledQuery, sql, type Insertable, type Kysely, type Selectable, type UpdateObject } from 'kysely';
import type { Actor } from '../audit/audit-log.js';
import type { DialectName } from '../db/database.js';
import { insertRows } from '../db/insert-rows.js';
import type { DB, MailState, OutgoingAttachmentsTable, MailAttempt, OutgoingMail, OutgoingMailsTable } from '../db/schema.js';
import { domainOf, parseMailbox } from '../lib/address.js';
import { MAX_ATTEMPTS } from '../lib/backoff.js';
import { AppError } from '../lib/errors.js';
import { sha256Of, type BlobStore } from '../mailbox/blob-store.js';
import type { CheckedMail } from './enqueue-rules.js';
import { crashedReasonParts } from './delivery-failure.js';
import type { OutgoingAttachment, OutgoingMessage } from './mail-transport.js';
import { followUpKey, headerMessageId, planFollowUp, type RefusalSplit } from './partial-delivery.js';

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
  /** The worker that sent it (`host:pid:random`, as it logs at start), when several share the database. */
  sentBy: string | null;
  /** Set when a delivery-status report (or a mail to the bounce address) named this mail; the state stays. */
  bouncedAt: string | null;
  bounceReason: string | null;
  /** Set on a follow-up: the mail whose deferred recipients (4xx at RCPT TO) this one delivers to. */
  followUpOf: number | null;
  /** A follow-up's SMTP recipients (those deferred), null when the mail goes to all of to, cc and bcc. */
  envelopeTo: string[] | null;
  createdAt: string;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const list = (json: string) => JSON.parse(json) as string[];

export function mailView(m: OutgoingMail): MailView {
  return {
    id: m.id,
    messageId: headerMessageId(m.message_id),
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
    sentBy: m.sent_by,
    bouncedAt: iso(m.bounced_at),
    bounceReason: m.bounce_reason,
    followUpOf: m.follow_up_of,
    envelopeTo: m.envelope_to ? list(m.envelope_to) : null,
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

/** How long the answer to a request with an Idempotency-Key is kept (at least): 24 hours. */
export const IDEMPOTENCY_KEEP_MS = 24 * 60 * 60 * 1000;

export interface IdempotencyRecord {
  userId: number;
  key: string;
  requestSha256: string;
}

/** failure_type of a mail that its server's rate limit put back in the queue (not a failure). */
export const PACED = 'paced';

export type OutgoingAttachmentRow = Selectable<OutgoingAttachmentsTable>;

/**
 * The columns a claim returns: what routing, building the message and recording its outcome read. Not the
 * whole row: better-sqlite3 makes each row a JavaScript object, and a 36-column one cost 15 µs against 5 for a
 * dozen columns (a third of the claim's time; scratch measurement, docs/benchmarks.md).
 */
export const CLAIMED_COLUMNS = [
  'id', 'message_id', 'from_header', 'to_addrs', 'cc_addrs', 'bcc_addrs', 'reply_to', 'subject', 'text_body', 'html_body', 'headers',
  'raw_sha256', 'forced_server_id', 'mass_mailing', 'created_by_user_id', 'state', 'attempts', 'failure_type', 'failure_reason', 'created_at', 'retried_at',
  'envelope_to',
] as const satisfies readonly (keyof OutgoingMail)[];
export type ClaimedMail = Pick<OutgoingMail, (typeof CLAIMED_COLUMNS)[number]>;
/** What building a mail's message reads of its row. */
export type MessageFields = Pick<OutgoingMail, 'id' | 'message_id' | 'from_header' | 'to_addrs' | 'cc_addrs' | 'bcc_addrs' | 'reply_to' | 'subject' | 'text_body' | 'html_body' | 'headers' | 'raw_sha256'>;

export type SentItem = SendOutcome & { id: number; response: string; rejected: { address: string; response: string }[] };

// Ids per `in (…)` list and rows per multi-row UPDATE: well below SQLite's and PostgreSQL's parameter limits.
const ID_CHUNK = 500;
const SENT_CHUNK = 200;
// Rows per multi-row INSERT of a batch enqueue (31 columns each).
export const INSERT_CHUNK = 100;

export interface SendOutcome {
  serverId: number;
  effectiveFrom: string;
  envelopeFrom: string;
}

const markSentTexts = new Map<string, string>();

/**
 * markSentMany's statement for `rows` mails: one UPDATE … FROM (VALUES …), each row changed only while `owner`
 * holds its lease. Parameters in order: now, owner, now, then per row id, server id, effective From, envelope
 * From, response, rejected recipients (JSON or null), then owner. VALUES names its columns column1…columnN on
 * both dialects; the casts give PostgreSQL their types.
 */
export function markSentSql(dialect: DialectName, rows: number): string {
  const key = `${dialect}:${rows}`;
  let text = markSentTexts.get(key);
  if (text !== undefined) return text;
  let n = 0;
  const p = () => (dialect === 'postgres' ? `$${++n}` : '?');
  const head = `update outgoing_mails set state = 'sent', server_id = v.column2, effective_from = v.column3, envelope_from = v.column4, smtp_response = v.column5, rejected_recipients = v.column6, failure_type = null, failure_reason = null, waiting_reason = null, sent_at = ${p()}, sent_by = ${p()}, lease_owner = null, lease_expires_at = null, updated_at = ${p()}`;
  const values = Array.from({ length: rows }, () => `(cast(${p()} as bigint), cast(${p()} as bigint), cast(${p()} as text), cast(${p()} as text), cast(${p()} as text), cast(${p()} as text))`).join(', ');
  text = `${head} from (values ${values}) as v where outgoing_mails.id = v.column1 and outgoing_mails.lease_owner = ${p()} and outgoing_mails.state = 'sending' returning outgoing_mails.id`;
  markSentTexts.set(key, text);
  return text;
}

/** The columns of a mail recorded sent by `owner` (markSent, and markPartlySent for the accepted recipients). */
function sentValues(owner: string, outcome: SendOutcome & { response: string; rejected: { address: string; response: string }[] }, at: number): UpdateObject<DB, 'outgoing_mails'> {
  return {
    state: 'sent',
    server_id: outcome.serverId,
    effective_from: outcome.effectiveFrom,
    envelope_from: outcome.envelopeFrom,
    smtp_response: outcome.response,
    rejected_recipients: outcome.rejected.length ? JSON.stringify(outcome.rejected) : null,
    failure_type: null,
    failure_reason: null,
    waiting_reason: null,
    sent_at: at,
    sent_by: owner,
  };
}

export class OutgoingQueue {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly dialect: DialectName,
    private readonly blobs: BlobStore,
  ) {}

  /** The id of the mail with this Message-ID, if one is queued or was sent. */
  async findByMessageId(messageId: string): Promise<number | undefined> {
    const row = await this.db.selectFrom('outgoing_mails').select('id').where('message_id', '=', messageId).executeTakeFirst();
    return row?.id;
  }

  async enqueue(mail: CheckedMail, actor: Actor, options: { raw?: Buffer; messageId?: string; idempotency?: IdempotencyRecord } = {}): Promise<{ id: number; messageId: string }> {
    const messageId = options.messageId ?? newMessageId(mail.from);
    // A mail of one row needs no transaction: its INSERT is atomic by itself (and BEGIN/COMMIT were two of the
    // three statements of the common API request).
    if (!options.raw && mail.attachments.length === 0 && !options.idempotency) {
      return { id: await this.insertMail(this.db, mail, actor, messageId, Date.now()), messageId };
    }
    return this.db.transaction().execute(async (trx) => {
      const id = await this.insertMail(trx, mail, actor, messageId, Date.now(), options.raw);
      const answer = { id, messageId };
      // In the same transaction: of two requests racing with one key, the second fails on the key's primary
      // key and its mail is rolled back, so the mail is queued once.
      if (options.idempotency) await this.keepAnswer(trx, options.idempotency, 202, answer);
      return answer;
    });
  }

  /**
   * Up to INSERT_CHUNK mails without attachments or original bytes in one multi-row INSERT: one statement,
   * atomic by itself (all rows or none), so no transaction. What the enqueue gatherer writes.
   */
  async insertMails(items: readonly { mail: CheckedMail; actor: Actor }[]): Promise<{ id: number; messageId: string }[]> {
    if (items.length === 0) return [];
    if (items.length > INSERT_CHUNK || items.some((it) => it.mail.attachments.length > 0)) throw new Error(`insertMails takes at most ${INSERT_CHUNK} mails without attachments`);
    const now = Date.now();
    const messageIds = items.map((it) => newMessageId(it.mail.from));
    const rows = await insertRows(this.db, 'outgoing_mails', items.map((it, k) => this.mailRow(it.mail, it.actor, messageIds[k]!, now, null)), ['id', 'message_id']);
    // RETURNING promises no order: match the rows back by their unique Message-IDs.
    const ids = new Map(rows.map((r) => [r.message_id, r.id]));
    return messageIds.map((messageId) => ({ id: ids.get(messageId)!, messageId }));
  }

  /**
   * Many mails in one transaction (POST /api/v1/mails/batch): all are queued, or none when a write fails.
   * Multi-row INSERTs (a round trip per 100 mails, not per mail), matched back by their unique Message-IDs.
   */
  async enqueueMany(mails: readonly CheckedMail[], actor: Actor): Promise<{ id: number; messageId: string }[]> {
    if (mails.length === 0) return [];
    return this.db.transaction().execute(async (trx) => {
      const now = Date.now();
      const messageIds = mails.map((m) => newMessageId(m.from));
      const ids = new Map<string, number>();
      for (let i = 0; i < mails.length; i += INSERT_CHUNK) {
        const rows = mails.slice(i, i + INSERT_CHUNK).map((mail, k) => this.mailRow(mail, actor, messageIds[i + k]!, now, null));
        for (const r of await insertRows(trx, 'outgoing_mails', rows, ['id', 'message_id'])) ids.set(r.message_id, r.id);
      }
      const attachments: Insertable<OutgoingAttachmentsTable>[] = [];
      // A mass mailing's PDF is written once, not once per recipient.
      const stored = new Set<string>();
      for (const [k, mail] of mails.entries()) {
        let position = 0;
        for (const a of mail.attachments) {
          let sha = sha256Of(a.content);
          if (!stored.has(sha)) stored.add((sha = await this.blobs.put(a.content, trx)));
          attachments.push({ mail_id: ids.get(messageIds[k]!)!, position: position++, filename: a.filename, content_type: a.contentType, content_id: a.contentId, blob_sha256: sha });
        }
      }
      for (let i = 0; i < attachments.length; i += INSERT_CHUNK) await trx.insertInto('outgoing_attachments').values(attachments.slice(i, i + INSERT_CHUNK)).execute();
      return messageIds.map((messageId) => ({ id: ids.get(messageId)!, messageId }));
    });
  }

  private mailRow(mail: CheckedMail, actor: Actor, messageId: string, now: number, rawSha: string | null): Insertable<OutgoingMailsTable> {
    return {
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
    };
  }

  private async insertMail(trx: Kysely<DB>, mail: CheckedMail, actor: Actor, messageId: string, now: number, raw?: Buffer): Promise<number> {
    const rawSha = raw ? await this.blobs.put(raw, trx) : null;
    const row = await trx
      .insertInto('outgoing_mails')
      .values(this.mailRow(mail, actor, messageId, now, rawSha))
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
  }

  /** The kept answer for this user's key, if it is younger than IDEMPOTENCY_KEEP_MS. */
  async keptAnswer(userId: number, key: string, now = Date.now()): Promise<{ requestSha256: string; status: number; body: unknown } | null> {
    const row = await this.db.selectFrom('idempotency_keys').selectAll().where('user_id', '=', userId).where('key', '=', key).executeTakeFirst();
    if (!row || row.created_at < now - IDEMPOTENCY_KEEP_MS) return null;
    return { requestSha256: row.request_sha256, status: row.status, body: JSON.parse(row.response) as unknown };
  }

  private async keepAnswer(trx: Kysely<DB>, rec: IdempotencyRecord, status: number, body: unknown): Promise<void> {
    const now = Date.now();
    // A key older than the keeping time is free again.
    await trx.deleteFrom('idempotency_keys').where('user_id', '=', rec.userId).where('key', '=', rec.key).where('created_at', '<', now - IDEMPOTENCY_KEEP_MS).execute();
    await trx.insertInto('idempotency_keys').values({ user_id: rec.userId, key: rec.key, request_sha256: rec.requestSha256, status, response: JSON.stringify(body), created_at: now }).execute();
  }

  /** Forgets answers older than the keeping time (housekeeping); returns how many. */
  async purgeIdempotencyKeys(now = Date.now()): Promise<number> {
    const r = await this.db.deleteFrom('idempotency_keys').where('created_at', '<', now - IDEMPOTENCY_KEEP_MS).executeTakeFirst();
    return Number(r.numDeletedRows);
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

  /**
   * Back to the queue now, with a fresh round of attempts (from failed, cancelled or a queued mail, waiting or
   * not). One conditional UPDATE: a claim that wins the race leaves it nothing to change, and the answer is
   * 409, not a half-done retry. A manual retry also restarts the maximum age of a waiting mail (retried_at).
   */
  async retry(id: number): Promise<OutgoingMail> {
    const now = Date.now();
    const row = await this.db
      .updateTable('outgoing_mails')
      .set({ state: 'queued', attempts: 0, lost_leases: 0, next_attempt_at: now, failure_type: null, failure_reason: null, waiting_reason: null, retried_at: now, updated_at: now })
      .where('id', '=', id)
      .where('state', 'in', ['failed', 'cancelled', 'queued'])
      .returningAll()
      .executeTakeFirst();
    if (row) return row;
    throw await this.refusal(id, 'retried', 'only failed, cancelled or queued mails can be retried');
  }

  /** Cancels a queued mail; one conditional UPDATE, like retry. */
  async cancel(id: number): Promise<OutgoingMail> {
    const row = await this.db
      .updateTable('outgoing_mails')
      .set({ state: 'cancelled', updated_at: Date.now() })
      .where('id', '=', id)
      .where('state', '=', 'queued')
      .returningAll()
      .executeTakeFirst();
    if (row) return row;
    throw await this.refusal(id, 'cancelled', 'only queued mails can be cancelled');
  }

  /** Why a retry or cancel changed nothing: 404 when there is no such mail, else 409 with its state. */
  private async refusal(id: number, action: 'retried' | 'cancelled', rule: string): Promise<AppError> {
    const mail = await this.db.selectFrom('outgoing_mails').select('state').where('id', '=', id).executeTakeFirst();
    if (!mail) return new AppError('JUNIPER_ERR_NOT_FOUND', `No outgoing mail with id ${id}.`);
    if (mail.state === 'sending') return new AppError('JUNIPER_ERR_CONFLICT', `Mail ${id} is being sent right now; try again when it has finished.`);
    return new AppError('JUNIPER_ERR_CONFLICT', `Mail ${id} is ${mail.state} and cannot be ${action}: ${rule}.`);
  }

  /**
   * Claims up to `limit` due mails for `owner` until now + leaseMs: queued ones whose time has come, and
   * sending ones whose lease expired (their worker stopped without recording an outcome). Each claim counts
   * as an attempt. An expired lease on a mail that already used every attempt is not claimed again: the
   * same statement fails it as `crashed` (the mail itself may be what kills its worker), so it cannot loop
   * forever. Each of its statements is atomic, so no worker sees a half-done claim; the crashed mails come back in `crashed`.
   */
  async claimBatch(owner: string, limit: number, leaseMs: number, now = Date.now(), options: { expired?: boolean } = {}): Promise<{ claimed: ClaimedMail[]; crashed: ClaimedMail[] }> {
    // Two statements, each atomic: mails whose lease expired (few: at most what dead workers held), then due
    // queued ones. One statement with `OR` read every due mail and sorted them to take the first `limit` (a
    // 10,000-mail queue made each claim read 10,000 rows); each half alone walks its index in order and stops.
    // `expired: false` skips the first (a busy loop looks for expired leases only now and then).
    const expired = options.expired === false ? [] : await this.claimWhere(owner, limit, leaseMs, now, 'expired');
    const rows = expired.length < limit ? [...expired, ...(await this.claimWhere(owner, limit - expired.length, leaseMs, now, 'queued'))] : expired;
    rows.sort((a, b) => a.id - b.id);
    return { claimed: rows.filter((r) => r.state === 'sending'), crashed: rows.filter((r) => r.state === 'failed') };
  }

  private async claimWhere(owner: string, limit: number, leaseMs: number, now: number, which: 'expired' | 'queued'): Promise<ClaimedMail[]> {
    let due = this.db
      .selectFrom('outgoing_mails')
      .select('id')
      .where((eb) => (which === 'queued' ? eb.and([eb('state', '=', 'queued'), eb('next_attempt_at', '<=', now)]) : eb.and([eb('state', '=', 'sending'), eb('lease_expires_at', '<', now)])))
      .orderBy('next_attempt_at')
      .orderBy('id')
      .limit(limit);
    if (this.dialect === 'postgres') due = due.forUpdate().skipLocked();
    // Every expression reads the row as it was before this UPDATE (SQL semantics on both dialects).
    const lost = sql<boolean>`state = 'sending'`;
    const crash = sql<boolean>`(state = 'sending' and attempts >= ${MAX_ATTEMPTS})`;
    const [before, after] = crashedReasonParts();
    return this.db
      .updateTable('outgoing_mails')
      .set({
        state: sql<MailState>`case when ${crash} then 'failed' else 'sending' end`,
        lease_owner: sql<string | null>`case when ${crash} then null else cast(${owner} as text) end`,
        lease_expires_at: sql<number | null>`case when ${crash} then null else cast(${now + leaseMs} as bigint) end`,
        attempts: sql<number>`case when ${crash} then attempts else attempts + 1 end`,
        lost_leases: sql<number>`case when ${lost} then lost_leases + 1 else lost_leases end`,
        failure_type: sql<string | null>`case when ${crash} then 'crashed' else failure_type end`,
        failure_reason: sql<string | null>`case when ${crash} then cast(${before} as text) || cast(lost_leases + 1 as text) || cast(${after} as text) else failure_reason end`,
        waiting_reason: sql<string | null>`case when ${crash} then null else waiting_reason end`,
        updated_at: now,
      })
      .where('id', 'in', due)
      .returning(CLAIMED_COLUMNS)
      .execute();
  }

  /** The mails claimed by claimBatch (those it failed as crashed are left out). */
  async claim(owner: string, limit: number, leaseMs: number, now = Date.now()): Promise<ClaimedMail[]> {
    return (await this.claimBatch(owner, limit, leaseMs, now)).claimed;
  }

  /** Mails waiting for this server to be fixed (e.g. reconnected to Outlook) become due now. */
  wakeWaiting(serverId: number): Promise<number> {
    return this.wake({ serverId });
  }

  /**
   * Mails waiting for a cause that is not one server's (an Outlook app problem, failure type oauth_app, fixed in
   * Settings) become due now, on every server; or only those that waited for `serverId` (mass mailings for their
   * dedicated server, restored). `at`: due then rather than now.
   */
  wakeWaitingFor(failureType: string, options: { serverId?: number; at?: number } = {}): Promise<number> {
    return this.wake({ failureType, ...options });
  }

  private async wake(which: { serverId?: number; failureType?: string; at?: number }): Promise<number> {
    let q = this.db
      .updateTable('outgoing_mails')
      .set({ next_attempt_at: which.at ?? Date.now(), updated_at: Date.now() })
      .where('state', '=', 'queued')
      .where('waiting_reason', 'is not', null);
    if (which.serverId !== undefined) q = q.where('server_id', '=', which.serverId);
    if (which.failureType !== undefined) q = q.where('failure_type', '=', which.failureType);
    const r = await q
      // A paced mail keeps its slot: waking it early would break the server's rate limit.
      .where((eb) => eb.or([eb('failure_type', 'is', null), eb('failure_type', '!=', PACED)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Extends the lease of mails this worker still holds (a slow server must not let another worker resend them). */
  async renewLeases(owner: string, ids: number[], leaseMs: number): Promise<void> {
    for (let i = 0; i < ids.length; i += ID_CHUNK) {
      await this.db.updateTable('outgoing_mails').set({ lease_expires_at: Date.now() + leaseMs }).where('lease_owner', '=', owner).where('state', '=', 'sending').where('id', 'in', ids.slice(i, i + ID_CHUNK)).execute();
    }
  }

  /**
   * The attachment rows of many mails in one SELECT (a claimed batch), by mail id in position order; a mail
   * without attachments has no entry, so the dispatcher does not ask again for each mail.
   */
  async attachmentsOf(mailIds: readonly number[]): Promise<Map<number, OutgoingAttachmentRow[]>> {
    const out = new Map<number, OutgoingAttachmentRow[]>();
    for (let i = 0; i < mailIds.length; i += ID_CHUNK) {
      const rows = await this.db.selectFrom('outgoing_attachments').selectAll().where('mail_id', 'in', mailIds.slice(i, i + ID_CHUNK)).orderBy('mail_id').orderBy('position').execute();
      for (const r of rows) {
        const list = out.get(r.mail_id);
        if (list) list.push(r);
        else out.set(r.mail_id, [r]);
      }
    }
    return out;
  }

  /**
   * The complete message as stored, ready for a transport. `attachments` are the mail's rows when the caller
   * read them already (attachmentsOf); blobs come through the blob store's cache, so a mass mailing reads its
   * PDF once, not once per recipient.
   */
  async message(mail: MessageFields, attachments?: readonly OutgoingAttachmentRow[]): Promise<OutgoingMessage> {
    const rows = attachments ?? (await this.db.selectFrom('outgoing_attachments').selectAll().where('mail_id', '=', mail.id).orderBy('position').execute());
    const parts: OutgoingAttachment[] = [];
    // A large attachment comes as a reader of its pieces, read as the transport writes them (BlobStore.source).
    for (const a of rows) parts.push({ filename: a.filename, contentType: a.content_type, contentId: a.content_id, content: await this.blobs.source(a.blob_sha256) });
    return {
      messageId: headerMessageId(mail.message_id),
      from: mail.from_header,
      to: list(mail.to_addrs),
      cc: list(mail.cc_addrs),
      bcc: list(mail.bcc_addrs),
      replyTo: mail.reply_to,
      subject: mail.subject,
      text: mail.text_body,
      html: mail.html_body,
      headers: mail.headers ? (JSON.parse(mail.headers) as Record<string, string>) : {},
      attachments: parts,
      raw: mail.raw_sha256 ? await this.blobs.get(mail.raw_sha256) : null,
    };
  }

  private finish(id: number, owner: string, values: UpdateObject<DB, 'outgoing_mails'>, db: Kysely<DB> = this.db) {
    // Only the lease holder records an outcome: a worker that lost its lease must not overwrite a newer one.
    return db
      .updateTable('outgoing_mails')
      .set({ ...values, lease_owner: null, lease_expires_at: null, updated_at: Date.now() })
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .where('state', '=', 'sending')
      .execute();
  }

  async markSent(id: number, owner: string, outcome: SendOutcome & { response: string; rejected: { address: string; response: string }[] }): Promise<void> {
    await this.finish(id, owner, sentValues(owner, outcome, Date.now()));
  }

  /**
   * Records many sent mails in one statement (one commit instead of one per mail). Each row still changes
   * only while this owner holds its lease, exactly as markSent. Resolves to the ids it recorded; an id
   * missing from the answer had lost its lease (another worker's outcome stands).
   */
  async markSentMany(owner: string, items: readonly SentItem[]): Promise<Set<number>> {
    const done = new Set<number>();
    const now = Date.now();
    for (let i = 0; i < items.length; i += SENT_CHUNK) {
      const chunk = items.slice(i, i + SENT_CHUNK);
      // The statement's text depends only on the dialect and the number of rows: written once per length and
      // handed to the driver with fresh parameters, so Kysely builds and compiles nothing for the statement the
      // dispatcher runs most (one per few mails sent).
      const parameters: unknown[] = [now, owner, now];
      for (const it of chunk) parameters.push(it.id, it.serverId, it.effectiveFrom, it.envelopeFrom, it.response, it.rejected.length ? JSON.stringify(it.rejected) : null);
      parameters.push(owner);
      const rows = await this.db.executeQuery<{ id: number }>(CompiledQuery.raw(markSentSql(this.dialect, chunk.length), parameters));
      for (const r of rows.rows) done.add(Number(r.id));
    }
    return done;
  }

  /**
   * Records a mail whose server accepted some recipients and deferred others (4xx at RCPT TO): sent, to the
   * accepted ones (`rejected`: the 5xx ones only), and in the same transaction a follow-up mail for the
   * deferred ones, so that no crash between the two can record them as served or lose them. The follow-up is
   * the same message (columns, attachment rows and original bytes copied, the blobs shared) with the envelope
   * narrowed to the deferred addresses and the parent's attempts carried on (all but this one when
   * `countsAttempt` is false: past the server's recipient limit); it is due at `at`, or failed at once when the
   * mail used its attempts (partial-delivery.ts planFollowUp). Nothing
   * happens when this owner no longer holds the lease (another worker's outcome stands). Resolves to the
   * follow-up's id, or undefined then.
   */
  async markPartlySent(
    mail: ClaimedMail,
    owner: string,
    outcome: SendOutcome & { response: string; refused: RefusalSplit['refused']; deferred: RefusalSplit['deferred'] },
    followUp: { at: number; serverName: string; countsAttempt: boolean },
  ): Promise<number | undefined> {
    // An attempt that delivered what the server's recipient limit let through is not one the follow-up used.
    const attempts = followUp.countsAttempt ? mail.attempts : mail.attempts - 1;
    const plan = planFollowUp(outcome.deferred, attempts, followUp.serverName);
    return this.db.transaction().execute(async (trx) => {
      const now = Date.now();
      const sent = await this.finish(mail.id, owner, sentValues(owner, { ...outcome, rejected: outcome.refused }, now), trx);
      if (Number(sent[0]?.numUpdatedRows ?? 0) !== 1) return undefined;
      const row = await trx
        .insertInto('outgoing_mails')
        .values({
          message_id: followUpKey(mail.message_id, mail.id),
          from_header: mail.from_header,
          to_addrs: mail.to_addrs,
          cc_addrs: mail.cc_addrs,
          bcc_addrs: mail.bcc_addrs,
          reply_to: mail.reply_to,
          subject: mail.subject,
          text_body: mail.text_body,
          html_body: mail.html_body,
          headers: mail.headers,
          raw_sha256: mail.raw_sha256,
          forced_server_id: mail.forced_server_id,
          mass_mailing: mail.mass_mailing,
          state: plan.state,
          attempts,
          next_attempt_at: followUp.at,
          failure_type: plan.failureType,
          failure_reason: plan.reason,
          server_id: outcome.serverId,
          effective_from: outcome.effectiveFrom,
          envelope_from: outcome.envelopeFrom,
          envelope_to: JSON.stringify(outcome.deferred.map((d) => d.address)),
          follow_up_of: mail.id,
          created_by_user_id: mail.created_by_user_id,
          // The mail's own age and manual retry: a follow-up waits no longer than the mail would have.
          created_at: mail.created_at,
          retried_at: mail.retried_at,
          updated_at: now,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      await trx
        .insertInto('outgoing_attachments')
        .columns(['mail_id', 'position', 'filename', 'content_type', 'content_id', 'blob_sha256'])
        .expression((eb) => eb.selectFrom('outgoing_attachments').select([sql<number>`cast(${row.id} as integer)`.as('mail_id'), 'position', 'filename', 'content_type', 'content_id', 'blob_sha256']).where('mail_id', '=', mail.id))
        .execute();
      await trx.insertInto('mail_attempts').values({ mail_id: row.id, at: now, outcome: plan.state === 'failed' ? 'failed' : 'retry', server_id: outcome.serverId, failure_type: plan.failureType, reason: plan.reason }).execute();
      return row.id;
    });
  }

  /**
   * Puts a claimed mail back, due at `at` (a slot reserved for it), without counting the claim as an attempt:
   * the server's rate limit paces it (a send delayed, not failed). failure_type `paced` tells the dispatcher
   * the slot is already reserved when the mail comes back.
   */
  async defer(id: number, owner: string, at: number, reason: string): Promise<void> {
    await this.finish(id, owner, { state: 'queued', next_attempt_at: at, attempts: sql<number>`attempts - 1`, failure_type: PACED, failure_reason: null, waiting_reason: reason });
  }

  /** Gives claimed mails back untouched (the round could not start them): queued again, the claim not counted. */
  async unclaim(ids: readonly number[], owner: string): Promise<void> {
    if (ids.length === 0) return;
    await this.db
      .updateTable('outgoing_mails')
      .set({ state: 'queued', attempts: sql<number>`attempts - 1`, lease_owner: null, lease_expires_at: null, updated_at: Date.now() })
      .where('id', 'in', [...ids])
      .where('lease_owner', '=', owner)
      .where('state', '=', 'sending')
      .execute();
  }

  async markFailed(id: number, owner: string, failure: { failureType: string; reason: string }, outcome?: Partial<SendOutcome>): Promise<void> {
    const result = await this.finish(id, owner, {
      state: 'failed',
      failure_type: failure.failureType,
      failure_reason: failure.reason,
      waiting_reason: null,
      server_id: outcome?.serverId ?? null,
      effective_from: outcome?.effectiveFrom ?? null,
      envelope_from: outcome?.envelopeFrom ?? null,
    });
    await this.logAttempt(result, id, 'failed', failure.failureType, failure.reason, outcome?.serverId);
  }

  /** Back to queued for a later attempt; `waiting` keeps the attempt from counting (the server, not the mail, is at fault). */
  async markRetry(
    id: number,
    owner: string,
    retry: { at: number; failureType: string; reason: string; waiting: boolean },
    outcome?: Partial<SendOutcome>,
  ): Promise<void> {
    const result = await this.finish(id, owner, {
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
    // A waiting mail's tries do not count (the server is at fault, the reason is on the mail): no history row.
    if (!retry.waiting) await this.logAttempt(result, id, 'retry', retry.failureType, retry.reason, outcome?.serverId);
  }

  /** The mail page's history: one row per attempt that did not deliver, only when this worker's outcome counted. */
  private async logAttempt(result: readonly { numUpdatedRows: bigint }[], id: number, outcome: 'retry' | 'failed', failureType: string, reason: string, serverId: number | undefined): Promise<void> {
    if (Number(result[0]?.numUpdatedRows ?? 0) !== 1) return;
    await this.db.insertInto('mail_attempts').values({ mail_id: id, at: Date.now(), outcome, server_id: serverId ?? null, failure_type: failureType, reason }).execute();
  }

  /** The follow-ups of a mail (deliveries to recipients its server deferred), oldest first. */
  async followUpsOf(id: number): Promise<Pick<OutgoingMail, 'id' | 'state' | 'envelope_to'>[]> {
    return this.db.selectFrom('outgoing_mails').select(['id', 'state', 'envelope_to']).where('follow_up_of', '=', id).orderBy('id').execute();
  }

  /** Attempts that did not deliver, oldest first. */
  async attemptsOf(id: number): Promise<MailAttempt[]> {
    return this.db.selectFrom('mail_attempts').selectAll().where('mail_id', '=', id).orderBy('id').execute();
  }
}
