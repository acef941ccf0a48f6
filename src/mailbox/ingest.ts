// Stores one fetched message, on the caller's transaction (which also moves the fetch cursor, so a message
// is stored and counted as fetched together or not at all): dedupe, thread, alias mailbox, attachments,
// original bytes, and the bounce mark on the outgoing mail a delivery report names. A message that could
// not be parsed, or not stored, or that is over the size cap, is kept in quarantine with the error, never dropped.
import type { Kysely } from 'kysely';
import { insertRows } from '../db/insert-rows.js';
import type { DB, IncomingServer, OutgoingMail } from '../db/schema.js';
import { bounceAddress, type MailParameters } from '../settings/parameter-rules.js';
import type { BlobStore } from './blob-store.js';
import { dedupeKeyOf, headerSection, messageIdKey, QUARANTINE_HEADER_BYTES, rawKey, storableText } from './dedupe.js';
import { bounceEvidence, mailboxAlias, threadCandidates, threadSubject } from './inbound-rules.js';
import type { ParseOutcome, ParsedMessage } from './parse.js';
import { parseMessage } from './parse-on-demand.js';

export type IngestOutcome = 'stored' | 'duplicate' | 'quarantined';

type IngestServer = Pick<IncomingServer, 'id' | 'keep_original' | 'keep_attachments' | 'owner_user_id'>;

export interface IngestInput {
  server: IngestServer;
  uid: number | null;
  uidvalidity: number | null;
  raw: Buffer;
  parsed: ParseOutcome;
  params: Pick<MailParameters, 'catchallDomain' | 'bounceAlias' | 'defaultFrom' | 'catchallAlias'>;
}

export interface QuarantineInput {
  server: IngestServer;
  uid: number | null;
  uidvalidity: number | null;
  /** The bytes kept: the whole message, or only its header section when it was too large to download. */
  raw: Buffer;
  /** Why it is in quarantine, for the person reading it: what failed and what to do. */
  error: string;
  /** The dedupe key; default: the hash of `raw`. */
  key?: string;
  /** The message's real size when `raw` is only its headers. */
  size?: number;
  /** The header section already read (a failed parse's `headers`): not parsed again here. */
  headers?: ParseOutcome;
}

export interface IngestResult {
  outcome: IngestOutcome;
  messageId: number;
  /** The outgoing mail this message reported as bounced. */
  bouncedMailId?: number;
}

const MAX_PARSE_ERROR = 2000;
/**
 * Threading looks up at most this many referenced Message-IDs (In-Reply-To and the newest References): a
 * hostile References header with 50,000 ids would otherwise exceed the bind-parameter limit of the database.
 */
const MAX_THREAD_CANDIDATES = 50;

export class Ingest {
  constructor(private readonly blobs: BlobStore) {}

  /** `trx` must be a transaction: the message, its attachments and its thread are written together. */
  async store(trx: Kysely<DB>, input: IngestInput): Promise<IngestResult> {
    return (await this.storeMany(trx, [input]))[0]!;
  }

  /**
   * Stores messages of one server on one transaction, in order, as `store` would one after the other, but with
   * the lookups (dedupe keys, thread candidates, sent mails) read once for the whole group. A failure fails the
   * group: the caller rolls back and stores its messages one by one, so only the bad one is quarantined.
   */
  async storeMany(trx: Kysely<DB>, inputs: readonly IngestInput[]): Promise<IngestResult[]> {
    if (inputs.length === 0) return [];
    const server = inputs[0]!.server;
    if (inputs.some((i) => i.server.id !== server.id)) throw new Error('storeMany: one server per group');
    const plans = inputs.map((input) => plan(input));
    const group = new Lookups();
    for (const row of await this.inChunks([...new Set(plans.flatMap((p) => p.keys))], (keys) =>
      trx.selectFrom('messages').select(['id', 'dedupe_key']).where('server_id', '=', server.id).where('dedupe_key', 'in', keys).execute(),
    )) {
      group.addId(row.dedupe_key, { id: row.id });
    }
    // Threads only for what is not already stored: a re-fetched mailbox reads nothing more than its dedupe keys.
    const fresh = plans.filter((p) => p.message && group.existing(p.keys) === undefined);
    const candidates = [...new Set(fresh.flatMap((p) => p.threadCandidates))];
    for (const row of await this.inChunks(candidates, (ids) => this.threadRows(trx, ids, server.owner_user_id).execute())) {
      if (row.message_id && row.thread_id) group.addThread(row.message_id, { id: row.thread_id });
    }
    const outgoing = [...new Set([...fresh.flatMap((p) => p.bounceCandidates), ...candidates.filter((id) => !group.threads.has(id))])];
    for (const row of await this.inChunks(outgoing, (ids) => this.outgoingRows(trx, ids, server.owner_user_id).execute())) group.sent.set(row.message_id, row);

    // First pass in order: duplicates, quarantine, bounces and each message's thread (known, or one made below);
    // then the new threads, the messages, their blobs and attachments, each in one statement for the group.
    const now = Date.now();
    const outcomes: { outcome: IngestOutcome; ref: Ref; bouncedMailId?: number }[] = [];
    const rows: { p: Plan; m: ParsedMessage; ref: Ref; thread: Ref; bounced: OutgoingMail | undefined }[] = [];
    const newThreads: { ref: Ref; subject: string }[] = [];
    for (const p of plans) {
      // The same bytes count too: after a UIDVALIDITY reset a message quarantined earlier comes again.
      const existing = group.existing(p.keys);
      if (existing) {
        outcomes.push({ outcome: 'duplicate', ref: existing });
        continue;
      }
      const m = p.message;
      if (!m) {
        const failed = p.input.parsed.ok ? undefined : p.input.parsed;
        const q = await this.insertQuarantine(trx, { ...p.input, error: failed?.error ?? '', key: p.rawKey }, now, failed?.headers);
        const ref = { id: q.messageId };
        group.addId(p.rawKey, ref);
        outcomes.push({ outcome: 'quarantined', ref });
        continue;
      }
      const bounced = p.bounce ? group.firstSent(p.bounceCandidates) : undefined;
      if (bounced && p.bounce) {
        const bouncedAt = bounced.bounced_at ?? now;
        await trx.updateTable('outgoing_mails').set({ bounced_at: bouncedAt, bounce_reason: p.bounce.reason, updated_at: now }).where('id', '=', bounced.id).execute();
        bounced.bounced_at = bouncedAt;
      }
      const thread = await this.threadFor(trx, p.threadCandidates, group, now);
      if (thread.id === undefined && !newThreads.some((t) => t.ref === thread)) newThreads.push({ ref: thread, subject: m.subject });
      const ref: Ref = { id: undefined };
      group.addId(p.dedupeKey, ref);
      if (m.messageId) group.addThread(m.messageId, thread);
      rows.push({ p, m, ref, thread, bounced });
      outcomes.push({ outcome: 'stored', ref, ...(bounced ? { bouncedMailId: bounced.id } : {}) });
    }

    const threadIds = await this.insertIds(newThreads, (chunk) =>
      insertRows(trx, 'threads', chunk.map((t) => ({ subject: threadSubject(t.subject), last_message_at: now, created_at: now })), ['id']),
    );
    newThreads.forEach((t, i) => (t.ref.id = threadIds[i]));

    const blobs = [
      ...(server.keep_original === 1 ? rows.map((r) => r.p.input.raw) : []),
      ...(server.keep_attachments === 1 ? rows.flatMap((r) => r.m.attachments.map((a) => a.content)) : []),
    ];
    const shas = new Map<Buffer, string>();
    if (blobs.length) (await this.blobs.putMany(blobs, trx)).forEach((sha, i) => shas.set(blobs[i]!, sha));
    const messageIds = await this.insertIds(
      rows,
      (chunk) =>
        insertRows(
          trx,
          'messages',
          chunk.map(({ p, m, thread, bounced }) => ({
              server_id: server.id,
              direction: 'in' as const,
              dedupe_key: p.dedupeKey,
              uid: p.input.uid,
              uidvalidity: p.input.uidvalidity,
              size: p.input.raw.length,
              created_at: now,
              outgoing_mail_id: null,
              message_id: m.messageId,
              in_reply_to: m.inReplyTo,
              references_ids: m.references.length ? JSON.stringify(m.references) : null,
              thread_id: thread.id!,
              mailbox: mailboxAlias(m.recipientAddresses, p.input.params.catchallDomain),
              from_header: m.from,
              to_addrs: JSON.stringify(m.to),
              cc_addrs: JSON.stringify(m.cc),
              subject: m.subject,
              sent_at: m.date,
              text_body: m.text,
              html_body: m.html,
              raw_sha256: server.keep_original === 1 ? shas.get(p.input.raw)! : null,
              quarantined: 0,
              parse_error: null,
              is_bounce: p.bounce ? 1 : 0,
              bounced_mail_id: bounced?.id ?? null,
            })),
          ['id'],
        ),
      100,
    );
    rows.forEach((r, i) => (r.ref.id = messageIds[i]));
    const attachments = rows.flatMap((r) =>
      r.m.attachments.map((a, position) => ({ message_id: r.ref.id!, position, filename: a.filename, content_type: a.contentType, content_id: a.contentId, size: a.content.length, blob_sha256: server.keep_attachments === 1 ? shas.get(a.content)! : null })),
    );
    await this.inChunks(attachments, (chunk) => insertRows(trx, 'message_attachments', chunk), 500);
    if (group.touched.size) {
      await trx
        .updateTable('threads')
        .set({ last_message_at: now })
        .where('id', 'in', [...group.touched])
        .execute();
    }
    return outcomes.map((o) => ({ outcome: o.outcome, messageId: o.ref.id!, ...(o.bouncedMailId !== undefined ? { bouncedMailId: o.bouncedMailId } : {}) }));
  }

  /**
   * Inserts rows in slices and returns their new ids in the order of `items`. Both databases number the rows of
   * one INSERT … VALUES in the order given (a sequence or the rowid, counting up), whatever order RETURNING
   * lists them in, so the ids sorted are the rows in order.
   */
  private async insertIds<T>(items: readonly T[], insert: (chunk: T[]) => Promise<{ id: number }[]>, size = 500): Promise<number[]> {
    const ids: number[] = [];
    for (let i = 0; i < items.length; i += size) {
      const chunk = items.slice(i, i + size);
      const returned = (await insert(chunk)).map((r) => Number(r.id)).sort((x, y) => x - y);
      if (returned.length !== chunk.length) throw new Error(`insert returned ${returned.length} ids for ${chunk.length} rows`);
      ids.push(...returned);
    }
    return ids;
  }

  /**
   * Keeps a message that could not be stored normally (or is over the size cap): its bytes (or headers) as a
   * blob, the error, and what its headers say of subject and sender, so the Inbox can show it. A second copy
   * (same key) is a duplicate. `trx` must be a transaction.
   */
  async quarantine(trx: Kysely<DB>, input: QuarantineInput): Promise<IngestResult> {
    const key = input.key ?? rawKey(input.raw);
    const shown = input.headers ?? (await parseMessage(headerSection(input.raw, QUARANTINE_HEADER_BYTES)));
    // Its Message-ID counts too: an oversize message stored whole earlier (under a higher cap) is the same message.
    const messageId = shown.ok ? shown.message.messageId : null;
    const existing = await this.existing(trx, input.server.id, [key, ...(messageId ? [messageIdKey(messageId)] : [])]);
    if (existing) return { outcome: 'duplicate', messageId: existing };
    return this.insertQuarantine(trx, { ...input, key }, Date.now(), shown);
  }

  /**
   * The last resort when even quarantine failed: a row without the original, holding the error and at most
   * 64 KB of the header section as text (NUL removed). It writes only values Juniper made, so it fails only
   * when the database itself does.
   */
  async quarantineMinimal(trx: Kysely<DB>, input: QuarantineInput): Promise<IngestResult> {
    const key = input.key ?? rawKey(input.raw);
    const existing = await this.existing(trx, input.server.id, [key]);
    if (existing) return { outcome: 'duplicate', messageId: existing };
    const headers = headerSection(input.raw, QUARANTINE_HEADER_BYTES).toString('latin1');
    const row = await trx
      .insertInto('messages')
      .values({
        ...this.quarantineBase(input, key, Date.now()),
        text_body: storableText(headers, QUARANTINE_HEADER_BYTES),
        raw_sha256: null,
        parse_error: storableText(input.error, MAX_PARSE_ERROR),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { outcome: 'quarantined', messageId: row.id };
  }

  private async insertQuarantine(trx: Kysely<DB>, input: QuarantineInput & { key: string }, now: number, headers?: ParseOutcome): Promise<IngestResult> {
    const shown = headers ?? input.headers ?? (await parseMessage(headerSection(input.raw, QUARANTINE_HEADER_BYTES)));
    const m = shown.ok ? shown.message : undefined;
    const row = await trx
      .insertInto('messages')
      .values({
        ...this.quarantineBase(input, input.key, now),
        ...(m ? { from_header: m.from, to_addrs: JSON.stringify(m.to), cc_addrs: JSON.stringify(m.cc), subject: m.subject, sent_at: m.date } : {}),
        text_body: null,
        // Kept whatever keep_original says: quarantine without the bytes would be dropping the message.
        raw_sha256: await this.blobs.put(input.raw, trx),
        parse_error: storableText(input.error, MAX_PARSE_ERROR),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { outcome: 'quarantined', messageId: row.id };
  }

  private quarantineBase(input: QuarantineInput, key: string, now: number) {
    return {
      server_id: input.server.id,
      direction: 'in' as const,
      dedupe_key: key,
      uid: input.uid,
      uidvalidity: input.uidvalidity,
      size: input.size ?? input.raw.length,
      created_at: now,
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
      html_body: null,
      quarantined: 1,
      is_bounce: 0,
      bounced_mail_id: null,
    };
  }

  private async existing(trx: Kysely<DB>, serverId: number, keys: string[]): Promise<number | undefined> {
    const row = await trx.selectFrom('messages').select('id').where('server_id', '=', serverId).where('dedupe_key', 'in', [...new Set(keys)]).orderBy('id').executeTakeFirst();
    return row?.id;
  }

  /** Messages with a thread among these Message-IDs, on a personal server only those its owner can see. */
  private threadRows(trx: Kysely<DB>, ids: string[], ownerUserId: number | null) {
    let q = trx.selectFrom('messages').select(['message_id', 'thread_id']).where('message_id', 'in', ids).where('thread_id', 'is not', null);
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
    return q;
  }

  /** Outgoing mails with these Message-IDs. On a personal server only the owner's own: a user's mailbox must not be able to mark other people's mail bounced. */
  private outgoingRows(trx: Kysely<DB>, ids: string[], ownerUserId: number | null) {
    let q = trx.selectFrom('outgoing_mails').selectAll().where('message_id', 'in', ids);
    if (ownerUserId !== null) q = q.where('created_by_user_id', '=', ownerUserId);
    return q;
  }

  /** Runs `query` on slices of `items`: hostile messages must not push a statement past the bind-parameter limit. */
  private async inChunks<T, R>(items: readonly T[], query: (chunk: T[]) => Promise<R[]>, size = 1000): Promise<R[]> {
    const out: R[] = [];
    for (let i = 0; i < items.length; i += size) out.push(...(await query(items.slice(i, i + size))));
    return out;
  }

  /** The thread of the nearest stored or sent message this one refers to, else a new one (its id set when the group writes it). */
  private async threadFor(trx: Kysely<DB>, candidates: string[], group: Lookups, now: number): Promise<Ref> {
    const hit = candidates.find((id) => group.threads.has(id));
    if (hit !== undefined) {
      const thread = group.threads.get(hit)!;
      // A thread made in this group already has this group's time.
      if (thread.id !== undefined) group.touched.add(thread.id);
      return thread;
    }
    const sent = group.firstSent(candidates);
    if (sent) {
      const thread = { id: await this.threadOfSent(trx, sent, now) };
      group.addThread(sent.message_id, thread);
      group.touched.add(thread.id);
      return thread;
    }
    return { id: undefined };
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
        dedupe_key: messageIdKey(mail.message_id),
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
    if (attachments.length) {
      await trx
        .insertInto('message_attachments')
        .values(attachments.map((a) => ({ message_id: row.id, position: a.position, filename: a.filename, content_type: a.content_type, content_id: a.content_id, size: a.size, blob_sha256: a.blob_sha256 })))
        .execute();
    }
    return threadId;
  }

  private async newThread(trx: Kysely<DB>, subject: string, now: number): Promise<number> {
    const row = await trx.insertInto('threads').values({ subject: threadSubject(subject), last_message_at: now, created_at: now }).returning('id').executeTakeFirstOrThrow();
    return row.id;
  }
}

/** What storing one message needs to look up, worked out before the group's lookups run. */
interface Plan {
  input: IngestInput;
  message: ParsedMessage | undefined;
  dedupeKey: string;
  rawKey: string;
  keys: string[];
  bounce: ReturnType<typeof bounceEvidence>;
  bounceCandidates: string[];
  /** In-Reply-To and the newest References, the bounce's evidence, then its own Message-ID. */
  threadCandidates: string[];
}

function plan(input: IngestInput): Plan {
  const m = input.parsed.ok ? input.parsed.message : undefined;
  const raw = rawKey(input.raw);
  const dedupeKey = dedupeKeyOf(m ? m.messageId : null, input.raw);
  const bounce = m ? bounceEvidence(m, bounceAddress(input.params)) : undefined;
  const extra = bounce?.candidates ?? [];
  // Its own Message-ID last: a copy of a message already stored from another mailbox (or of a mail Juniper
  // sent, arriving in a mailbox it fetches) belongs to the same conversation.
  const threadIds = m ? [...new Set([...threadCandidates(m).slice(0, MAX_THREAD_CANDIDATES), ...extra.slice(0, MAX_THREAD_CANDIDATES), ...(m.messageId ? [m.messageId] : [])])] : [];
  return { input, message: m, dedupeKey, rawKey: raw, keys: m ? [...new Set([dedupeKey, raw])] : [raw], bounce, bounceCandidates: extra.slice(0, MAX_THREAD_CANDIDATES), threadCandidates: threadIds };
}

/** A row's id, known once the group has written it. */
interface Ref {
  id: number | undefined;
}

/** The group's view of the database, kept current as its messages are planned. */
class Lookups {
  /** Dedupe key → the stored message with it (the lowest id), or one this group writes. */
  private readonly ids = new Map<string, Ref>();
  /** Message-ID → the thread of a message with it (stored before, or earlier in the group). */
  readonly threads = new Map<string, Ref>();
  /** Message-ID → the outgoing mail with it. */
  readonly sent = new Map<string, OutgoingMail>();
  /** Existing threads that got a message: their last_message_at moves once, at the end of the group. */
  readonly touched = new Set<number>();

  addId(key: string, ref: Ref): void {
    const known = this.ids.get(key);
    if (known === undefined || (ref.id !== undefined && (known.id === undefined || ref.id < known.id))) this.ids.set(key, ref);
  }

  /** The stored message with one of these keys (the lowest id), else one written earlier in this group. */
  existing(keys: readonly string[]): Ref | undefined {
    const refs = keys.map((k) => this.ids.get(k)).filter((r): r is Ref => r !== undefined);
    const stored = refs.filter((r) => r.id !== undefined).sort((x, y) => x.id! - y.id!);
    return stored[0] ?? refs[0];
  }

  addThread(messageId: string, thread: Ref): void {
    if (!this.threads.has(messageId)) this.threads.set(messageId, thread);
  }

  firstSent(candidates: readonly string[]): OutgoingMail | undefined {
    return candidates.map((id) => this.sent.get(id)).find((r) => r !== undefined);
  }
}
