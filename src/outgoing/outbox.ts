// Entry point for every mail to send (API, CLI, later UI replies and notifications): check, store whole,
// return the id, then wake the dispatcher. Nothing is sent before it is stored.
import type { AddressObject } from 'mailparser';
import type { Actor } from '../audit/audit-log.js';
import type { PrincipalUser } from '../users/principal.js';
import { normaliseAddress, parseMailbox } from '../lib/address.js';
import crypto from 'node:crypto';
import { AppError, errorBody, isAppError, type ErrorBody } from '../lib/errors.js';
import type { Parameters } from '../settings/parameters.js';
import { checkMail, checkRecipients, enqueueSchema, type CheckedMail, type EnqueueInput } from './enqueue-rules.js';
import { EnqueueGatherer } from './enqueue-gatherer.js';
import { newMessageId, type IdempotencyRecord, type OutgoingQueue } from './queue.js';
import { withoutBccHeader } from './mime.js';
import { parseInput } from '../lib/validate.js';
import { assertMayManage, type OutgoingServers } from './servers.js';

export interface RawOverrides {
  /** Envelope recipients instead of the message's To, Cc and Bcc. */
  to?: string[];
  serverId?: number | null;
  massMailing?: boolean;
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  const list = a === undefined ? [] : Array.isArray(a) ? a : [a];
  return list.flatMap((o) => o.value).flatMap((v) => (v.address ? [v.name ? `"${v.name.replace(/["\\]/g, '\\$&')}" <${v.address}>` : v.address] : []));
}

/** Longest Message-ID a raw message may bring (RFC 5322 allows a 998-character line; real ones are under 100). */
const MAX_MESSAGE_ID_LENGTH = 500;

/** Mails in one POST /api/v1/mails/batch at most. */
export const MAX_BATCH = 1000;

export type BatchItemResult =
  | { index: number; status: 202; id: number; messageId: string }
  | { index: number; status: number; error: ErrorBody };

/** An Idempotency-Key as clients send them (a UUID, usually): 1 to 255 visible ASCII characters. */
export function checkIdempotencyKey(key: string): string {
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw new AppError('JUNIPER_ERR_VALIDATION', 'The Idempotency-Key header must be 1 to 255 visible ASCII characters, such as a UUID.', { details: { field: 'Idempotency-Key' } });
  }
  return key;
}

/** What makes two requests "the same" for an Idempotency-Key: the body's JSON, keys in a stable order. */
export function requestHash(body: unknown): string {
  const stable = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(stable) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, stable((v as Record<string, unknown>)[k])])) : v;
  return crypto.createHash('sha256').update(JSON.stringify(stable(body ?? null))).digest('hex');
}

export class Outbox {
  private readonly listeners = new Set<() => void>();
  private readonly gatherer: EnqueueGatherer;

  constructor(
    private readonly queue: OutgoingQueue,
    private readonly parameters: Parameters,
    private readonly servers: OutgoingServers,
    /** Tells the dispatchers of other processes (PostgreSQL NOTIFY); called after the write committed. */
    private readonly notifyOthers: () => void = () => {},
  ) {
    this.gatherer = new EnqueueGatherer(queue, () => this.notify());
  }

  /**
   * A user other than an admin may force only a server they own (it holds someone's password or Outlook
   * token), and may not send mass mailings (they go through the admins' dedicated server).
   */
  private async assertMayChooseServer(sender: PrincipalUser | null, serverId: number | null, massMailing: boolean): Promise<void> {
    if (!sender || sender.role === 'admin') return;
    if (massMailing) throw new AppError('JUNIPER_ERR_FORBIDDEN', 'Only an admin may send mass mailings.');
    if (serverId !== null) assertMayManage(sender, await this.servers.get(serverId));
  }

  /** Called after each enqueue (the in-process dispatcher wakes up instead of waiting for its next poll). */
  onEnqueued(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Wakes the dispatchers, this process's and the others' (e.g. after a retry). */
  wake(): void {
    this.notify();
  }

  private notify(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch {
        // A listener's failure is its own: the mails are stored, and the dispatcher polls anyway.
      }
    }
    this.notifyOthers();
  }

  private async checked(input: EnqueueInput, sender: PrincipalUser | null, maxMessageBytes: number): Promise<CheckedMail> {
    const parsed = parseInput(enqueueSchema, input, 'mail');
    // Admins and the CLI (no sender) may set more free headers than users (header-rules.ts).
    const mail = checkMail(parsed, maxMessageBytes, !sender || sender.role === 'admin' ? 'admin' : 'user');
    await assertMaySendAs(sender, mail.from, mail.replyTo);
    await this.assertMayChooseServer(sender, mail.serverId, mail.massMailing);
    return mail;
  }

  /**
   * Checks and stores one mail. With `idempotencyKey` (the Idempotency-Key header) a repeated request by the
   * same user with the same body gets the first answer back and queues nothing; the same key with another
   * body is refused (422). Keys are kept 24 hours; only a queued mail's answer is kept (a refused request
   * is checked again when repeated).
   */
  async enqueue(input: EnqueueInput, sender: PrincipalUser | null, actor: Actor, idempotencyKey?: string): Promise<{ id: number; messageId: string }> {
    const idempotency = idempotencyKey !== undefined && sender ? { userId: sender.id, key: checkIdempotencyKey(idempotencyKey), requestSha256: requestHash(input) } : undefined;
    if (idempotency) {
      const kept = await this.keptAnswer(idempotency);
      if (kept) return kept;
    }
    const { maxMessageBytes } = await this.parameters.snapshot();
    const mail = await this.checked(input, sender, maxMessageBytes);
    // The common request (no attachments, no key): written together with the ones arriving meanwhile.
    if (!idempotency && mail.attachments.length === 0) return this.gatherer.enqueue(mail, actor);
    let result: { id: number; messageId: string };
    try {
      result = await this.queue.enqueue(mail, actor, idempotency ? { idempotency } : {});
    } catch (err) {
      // A concurrent request with the same key won the race: its mail is the one queued, answer with it.
      const kept = idempotency ? await this.keptAnswer(idempotency) : null;
      if (kept) return kept;
      throw err;
    }
    this.notify();
    return result;
  }

  private async keptAnswer(rec: IdempotencyRecord): Promise<{ id: number; messageId: string } | null> {
    const kept = await this.queue.keptAnswer(rec.userId, rec.key);
    if (!kept) return null;
    if (kept.requestSha256 !== rec.requestSha256) {
      throw new AppError('JUNIPER_ERR_IDEMPOTENCY_KEY_REUSED', `The Idempotency-Key ${JSON.stringify(rec.key)} was used within the last 24 hours for a different mail; send a new key with each new mail.`);
    }
    return kept.body as { id: number; messageId: string };
  }

  /**
   * Up to MAX_BATCH mails in one transaction (POST /api/v1/mails/batch). Each mail is checked on its own: a
   * refused one is answered with its error and does not stop the others; the accepted ones are stored
   * together, all or none (a failed write fails the whole request and queues nothing).
   */
  async enqueueMany(inputs: readonly EnqueueInput[], sender: PrincipalUser | null, actor: Actor): Promise<BatchItemResult[]> {
    if (inputs.length > MAX_BATCH) {
      throw new AppError('JUNIPER_ERR_VALIDATION', `A batch holds at most ${MAX_BATCH} mails; this one has ${inputs.length}: split it.`, { details: { field: 'mails' } });
    }
    const { maxMessageBytes } = await this.parameters.snapshot();
    const results: BatchItemResult[] = [];
    const accepted: { index: number; mail: CheckedMail }[] = [];
    for (const [index, input] of inputs.entries()) {
      try {
        accepted.push({ index, mail: await this.checked(input, sender, maxMessageBytes) });
      } catch (err) {
        if (!isAppError(err)) throw err;
        results[index] = { index, status: err.status, error: errorBody(err) };
      }
    }
    const stored = await this.queue.enqueueMany(accepted.map((a) => a.mail), actor);
    accepted.forEach((a, i) => (results[a.index] = { index: a.index, status: 202, ...stored[i]! }));
    if (stored.length > 0) this.notify();
    return results;
  }

  /** A complete message (.eml) sent as it is; routing decides only the server and the envelope. */
  /**
   * A raw message keeps its own Message-ID, which the queue holds once: a second copy is the same mail sent
   * twice (a script retrying), and an absurd one (RFC 5322 allows a 998-character line) no index should carry.
   */
  private async assertNewMessageId(messageId: string): Promise<void> {
    if (messageId.length > MAX_MESSAGE_ID_LENGTH || /\s/.test(messageId) || [...messageId].some((c) => c.charCodeAt(0) < 0x20)) {
      throw new AppError('JUNIPER_ERR_VALIDATION', `The message's Message-ID is longer than ${MAX_MESSAGE_ID_LENGTH} characters or contains spaces or control characters: remove the Message-ID header and Juniper gives the mail a new one.`, { details: { field: 'Message-ID' } });
    }
    const existing = await this.queue.findByMessageId(messageId);
    if (existing !== undefined) {
      throw new AppError('JUNIPER_ERR_CONFLICT', `Mail ${existing} already has the Message-ID ${messageId}: it is queued or sent once. Remove the Message-ID header to send a new copy.`);
    }
  }

  async enqueueRaw(raw: Buffer, overrides: RawOverrides, sender: PrincipalUser | null, actor: Actor): Promise<{ id: number; messageId: string }> {
    const { maxMessageBytes } = await this.parameters.snapshot();
    if (raw.length > maxMessageBytes) {
      throw new AppError('JUNIPER_ERR_TOO_LARGE', `The message is ${(raw.length / 1048576).toFixed(1)} MB; the limit is ${(maxMessageBytes / 1048576).toFixed(1)} MB (system parameter mail.message.max_bytes).`);
    }
    // mailparser loads here, with the first raw mail: a process that never takes one (a `juniper worker`) does
    // not carry it (about 5 MB of heap, 12 MB of resident size with the encodings it brings).
    const { simpleParser } = await import('mailparser');
    const parsed = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true });
    const from = addresses(parsed.from)[0];
    if (!from) throw new AppError('JUNIPER_ERR_VALIDATION', 'The message has no usable From header.', { details: { field: 'from' } });
    await assertMaySendAs(sender, from, parsed.replyTo ? addresses(parsed.replyTo) : null);
    await this.assertMayChooseServer(sender, overrides.serverId ?? null, overrides.massMailing ?? false);
    const to = overrides.to ? checkRecipients(overrides.to, 'to') : checkRecipients(addresses(parsed.to), 'to');
    const cc = overrides.to ? [] : checkRecipients(addresses(parsed.cc), 'cc');
    const bcc = overrides.to ? [] : checkRecipients(addresses(parsed.bcc), 'bcc');
    if (to.length + cc.length + bcc.length === 0) throw new AppError('JUNIPER_ERR_VALIDATION', 'The message has no recipients (To, Cc, Bcc) and none were given.', { details: { field: 'to' } });
    let messageId = parsed.messageId;
    // Its Bcc recipients are kept apart (bcc above); over SMTP the message goes byte for byte, header and all.
    let bytes = withoutBccHeader(raw);
    // Read again as the parser reads it: a Bcc the stripping missed would go to every recipient over SMTP.
    if (parsed.bcc && bytes !== raw && (await simpleParser(bytes, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true })).bcc) {
      throw new AppError('JUNIPER_ERR_VALIDATION', 'The message has a Bcc header Juniper cannot remove safely (malformed line ends around it): remove the Bcc header and give its recipients with --to.', { details: { field: 'Bcc' } });
    }
    if (messageId) await this.assertNewMessageId(messageId);
    else {
      // Every mail keeps one Message-ID across retries: give the message one now, stored with it.
      messageId = newMessageId(from);
      bytes = Buffer.concat([Buffer.from(`Message-ID: ${messageId}\r\n`), bytes]);
    }
    const result = await this.queue.enqueue(
      { from, to, cc, bcc, replyTo: null, subject: parsed.subject ?? '', text: null, html: null, headers: {}, attachments: [], serverId: overrides.serverId ?? null, massMailing: overrides.massMailing ?? false },
      actor,
      { raw: bytes, messageId },
    );
    this.notify();
    return result;
  }
}

/**
 * Users other than admins send only as themselves, and a mail of theirs names no one else as its sender: the
 * From address is theirs, a Reply-To is their own address too, and the From's display name is not an address
 * (their account's own name excepted, which Compose sends). Routing may send a user's mail as the notifications
 * address, keeping the display name, with the Reply-To as the one trace of who wrote it (routing.ts): a free
 * name and Reply-To made it "Payroll <payroll@…>" <notifications@…> answering to anyone, under the
 * organisation's trusted address. Admins and scripts with an admin key send as anyone.
 */
async function assertMaySendAs(sender: PrincipalUser | null, from: string, replyTo: string | readonly string[] | null): Promise<void> {
  if (!sender || sender.role === 'admin') return;
  const own = sender.email.toLowerCase();
  if (normaliseAddress(from) !== own) {
    throw new AppError('JUNIPER_ERR_FORBIDDEN', `You may send only as your own address (${sender.email}); an admin's API key can send as others.`, { details: { field: 'from' } });
  }
  // A raw message's Reply-To may list several addresses (or a group, whose members `addresses` drops): one, theirs.
  const replies = replyTo === null ? [] : typeof replyTo === 'string' ? [replyTo] : replyTo;
  if ((typeof replyTo !== 'string' && replyTo !== null && replies.length !== 1) || replies.some((r) => normaliseAddress(r) !== own)) {
    throw new AppError('JUNIPER_ERR_FORBIDDEN', `replyTo: you may give only your own address (${sender.email}) as Reply-To, or none; an admin's API key can set another.`, { details: { field: 'replyTo' } });
  }
  for (const [field, mailbox] of [['from', from], ...replies.map((r) => ['replyTo', r] as const)] as const) {
    const name = parseMailbox(mailbox)?.name ?? '';
    if (name !== '' && name !== sender.name && ADDRESS_LIKE.test(await decodedName(name))) {
      throw new AppError('JUNIPER_ERR_FORBIDDEN', `${field}: the display name ${JSON.stringify(name)} looks like an email address; give your name, or none, before <${sender.email}>.`, { details: { field } });
    }
  }
}

/**
 * Something@something in a display name: an address a reader would take for the sender's, also with spaces
 * around the at sign or written with its full-width or small forms (＠, ﹫), which look the same in a list.
 */
const ADDRESS_LIKE = /[^\s<>"@\uff20\ufe6b]\s*[@\uff20\ufe6b]\s*[^\s<>"@\uff20\ufe6b]/u;

/** The name as a mail client shows it: RFC 2047 encoded words decoded (libmime loads only for them). */
async function decodedName(name: string): Promise<string> {
  if (!name.includes('=?')) return name;
  const { default: libmime } = await import('libmime');
  try {
    return libmime.decodeWords(name);
  } catch {
    return name;
  }
}
