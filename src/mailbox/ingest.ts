// Stores one fetched message, on the caller's transaction (which also moves the fetch cursor, so a message
// is stored and counted as fetched together or not at all): dedupe, thread, alias mailbox, attachments,
// original bytes, and the bounce mark on the outgoing mail a delivery report names. A message that could
// not be parsed is kept whole in quarantine with the error, never dropped.
import type { Kysely } from 'kysely';
import type { DB, IncomingServer, OutgoingMail } from '../db/schema.js';
import { bounceAddress, type MailParameters } from '../settings/parameter-rules.js';
import { sha256Of, type BlobStore } from './blob-store.js';
import { bounceEvidence, mailboxAlias, threadCandidates, threadSubject } from './inbound-rules.js';
import type { ParseOutcome, ParsedMessage } from './parse.js';

export type IngestOutcome = 'stored' | 'duplicate' | 'quarantined';

export interface IngestInput {
  server: Pick<IncomingServer, 'id' | 'keep_original' | 'keep_attachments' | 'owner_user_id'>;
  uid: number | null;
  uidvalidity: number | null;
  raw: Buffer;
  parsed: ParseOutcome;
  params: Pick<MailParameters, 'catchallDomain' | 'bounceAlias' | 'defaultFrom' | 'catchallAlias'>;
}

export interface IngestResult {
  outcome: IngestOutcome;
  messageId: number;
  /** The outgoing mail this message reported as bounced. */
  bouncedMailId?: number;
}

const MAX_PARSE_ERROR = 2000;

export class Ingest {
  constructor(private readonly blobs: BlobStore) {}

  /** `trx` must be a transaction: the message, its attachments and its thread are written together. */
  async store(trx: Kysely<DB>, input: IngestInput): Promise<IngestResult> {
    const { server, raw, parsed } = input;
    const now = Date.now();
    const dedupeKey = parsed.ok && parsed.message.messageId ? parsed.message.messageId : `sha256:${sha256Of(raw)}`;
    const existing = await trx.selectFrom('messages').select('id').where('server_id', '=', server.id).where('dedupe_key', '=', dedupeKey).executeTakeFirst();
    if (existing) return { outcome: 'duplicate', messageId: existing.id };

    const base = { server_id: server.id, direction: 'in' as const, dedupe_key: dedupeKey, uid: input.uid, uidvalidity: input.uidvalidity, size: raw.length, created_at: now };
    if (!parsed.ok) {
      const row = await trx
        .insertInto('messages')
        .values({
          ...base,
          outgoing_mail_id: null,
          message_id: null,
          in_reply_to: null,
          references_ids: null,
          thread_id: null,
          mailbox: null,
          from_header: null,
          to_addrs: '[]',
          cc_addrs: '[]',
          subject: '',
          sent_at: null,
          text_body: null,
          html_body: null,
          // Kept whatever keep_original says: quarantine without the bytes would be dropping the message.
          raw_sha256: await this.blobs.put(raw, trx),
          quarantined: 1,
          parse_error: parsed.error.slice(0, MAX_PARSE_ERROR),
          bounced_mail_id: null,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      return { outcome: 'quarantined', messageId: row.id };
    }

    const m = parsed.message;
    const bounce = bounceEvidence(m, bounceAddress(input.params));
    const bounced = bounce ? await this.findOutgoing(trx, bounce.candidates, server.owner_user_id) : undefined;
    if (bounced && bounce) {
      await trx
        .updateTable('outgoing_mails')
        .set({ bounced_at: bounced.bounced_at ?? now, bounce_reason: bounce.reason, updated_at: now })
        .where('id', '=', bounced.id)
        .execute();
    }
    const threadId = await this.threadFor(trx, m, bounce?.candidates ?? [], server.owner_user_id, now);
    const row = await trx
      .insertInto('messages')
      .values({
        ...base,
        outgoing_mail_id: null,
        message_id: m.messageId,
        in_reply_to: m.inReplyTo,
        references_ids: m.references.length ? JSON.stringify(m.references) : null,
        thread_id: threadId,
        mailbox: mailboxAlias(m.recipientAddresses, input.params.catchallDomain),
        from_header: m.from,
        to_addrs: JSON.stringify(m.to),
        cc_addrs: JSON.stringify(m.cc),
        subject: m.subject,
        sent_at: m.date,
        text_body: m.text,
        html_body: m.html,
        raw_sha256: server.keep_original === 1 ? await this.blobs.put(raw, trx) : null,
        quarantined: 0,
        parse_error: null,
        is_bounce: bounce ? 1 : 0,
        bounced_mail_id: bounced?.id ?? null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    let position = 0;
    for (const a of m.attachments) {
      await trx
        .insertInto('message_attachments')
        .values({
          message_id: row.id,
          position: position++,
          filename: a.filename,
          content_type: a.contentType,
          content_id: a.contentId,
          size: a.content.length,
          blob_sha256: server.keep_attachments === 1 ? await this.blobs.put(a.content, trx) : null,
        })
        .execute();
    }
    await trx.updateTable('threads').set({ last_message_at: now }).where('id', '=', threadId).execute();
    return { outcome: 'stored', messageId: row.id, ...(bounced ? { bouncedMailId: bounced.id } : {}) };
  }

  /**
   * The first candidate Message-ID that names an outgoing mail. On a personal server only the owner's own
   * mails: a user's mailbox must not be able to mark other people's mail bounced.
   */
  private async findOutgoing(trx: Kysely<DB>, candidates: string[], ownerUserId: number | null): Promise<OutgoingMail | undefined> {
    if (candidates.length === 0) return undefined;
    let q = trx.selectFrom('outgoing_mails').selectAll().where('message_id', 'in', candidates);
    if (ownerUserId !== null) q = q.where('created_by_user_id', '=', ownerUserId);
    const rows = await q.execute();
    return candidates.map((id) => rows.find((r) => r.message_id === id)).find((r) => r !== undefined);
  }

  /** The thread of the nearest stored or sent message this one refers to, else a new thread. */
  private async threadFor(trx: Kysely<DB>, m: ParsedMessage, extra: string[], ownerUserId: number | null, now: number): Promise<number> {
    // Its own Message-ID last: a copy of a message already stored from another mailbox (or of a mail Juniper
    // sent, arriving in a mailbox it fetches) belongs to the same conversation.
    const candidates = [...new Set([...threadCandidates(m), ...extra, ...(m.messageId ? [m.messageId] : [])])];
    if (candidates.length > 0) {
      let q = trx.selectFrom('messages').select(['message_id', 'thread_id']).where('message_id', 'in', candidates).where('thread_id', 'is not', null);
      // A personal mailbox joins only threads its owner can see (their servers' messages and mails they sent):
      // a reply must not pull someone else's conversation, or its subject, into a user's view.
      if (ownerUserId !== null) {
        q = q.where((eb) =>
          eb.or([
            eb('server_id', 'in', eb.selectFrom('incoming_servers').select('id').where('owner_user_id', '=', ownerUserId)),
            eb('outgoing_mail_id', 'in', eb.selectFrom('outgoing_mails').select('id').where('created_by_user_id', '=', ownerUserId)),
          ]),
        );
      }
      const stored = await q.execute();
      const hit = candidates.map((id) => stored.find((r) => r.message_id === id)).find((r) => r !== undefined);
      if (hit?.thread_id) return hit.thread_id;
      const sent = await this.findOutgoing(trx, candidates, ownerUserId);
      if (sent) return this.threadOfSent(trx, sent, now);
    }
    return this.newThread(trx, m.subject, now);
  }

  /** A mail Juniper sent enters the messages table (direction 'out') when the first reply threads onto it. */
  private async threadOfSent(trx: Kysely<DB>, mail: OutgoingMail, now: number): Promise<number> {
    const existing = await trx.selectFrom('messages').select(['id', 'thread_id']).where('outgoing_mail_id', '=', mail.id).executeTakeFirst();
    if (existing?.thread_id) return existing.thread_id;
    const threadId = await this.newThread(trx, mail.subject, now);
    const row = await trx
      .insertInto('messages')
      .values({
        server_id: null,
        direction: 'out',
        outgoing_mail_id: mail.id,
        dedupe_key: mail.message_id,
        message_id: mail.message_id,
        in_reply_to: null,
        references_ids: null,
        thread_id: threadId,
        mailbox: null,
        from_header: mail.effective_from ?? mail.from_header,
        to_addrs: mail.to_addrs,
        cc_addrs: mail.cc_addrs,
        subject: mail.subject,
        sent_at: mail.sent_at ?? mail.created_at,
        text_body: mail.text_body,
        html_body: mail.html_body,
        raw_sha256: mail.raw_sha256,
        size: (mail.text_body?.length ?? 0) + (mail.html_body?.length ?? 0),
        quarantined: 0,
        parse_error: null,
        bounced_mail_id: null,
        uid: null,
        uidvalidity: null,
        created_at: now,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const attachments = await trx.selectFrom('outgoing_attachments').innerJoin('blobs', 'blobs.sha256', 'outgoing_attachments.blob_sha256').select(['position', 'filename', 'content_type', 'content_id', 'blob_sha256', 'blobs.size']).where('mail_id', '=', mail.id).orderBy('position').execute();
    for (const a of attachments) {
      await trx.insertInto('message_attachments').values({ message_id: row.id, position: a.position, filename: a.filename, content_type: a.content_type, content_id: a.content_id, size: a.size, blob_sha256: a.blob_sha256 }).execute();
    }
    return threadId;
  }

  private async newThread(trx: Kysely<DB>, subject: string, now: number): Promise<number> {
    const row = await trx.insertInto('threads').values({ subject: threadSubject(subject), last_message_at: now, created_at: now }).returning('id').executeTakeFirstOrThrow();
    return row.id;
  }
}
