// Entry point for every mail to send (API, CLI, later UI replies and notifications): check, store whole,
// return the id, then wake the dispatcher. Nothing is sent before it is stored.
import { simpleParser, type AddressObject } from 'mailparser';
import type { Actor } from '../audit/audit-log.js';
import type { PrincipalUser } from '../http/access.js';
import { normaliseAddress } from '../lib/address.js';
import { AppError } from '../lib/errors.js';
import type { Parameters } from '../settings/parameters.js';
import { checkMail, checkRecipients, enqueueSchema, type EnqueueInput } from './enqueue-rules.js';
import { newMessageId, type OutgoingQueue } from './queue.js';
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

export class Outbox {
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly queue: OutgoingQueue,
    private readonly parameters: Parameters,
    private readonly servers: OutgoingServers,
  ) {}

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

  /** Wakes the dispatcher (e.g. after a retry). */
  wake(): void {
    this.notify();
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  async enqueue(input: EnqueueInput, sender: PrincipalUser | null, actor: Actor): Promise<{ id: number; messageId: string }> {
    const parsed = parseInput(enqueueSchema, input, 'mail');
    const { maxMessageBytes } = await this.parameters.snapshot();
    // Admins and the CLI (no sender) may set more free headers than users (header-rules.ts).
    const mail = checkMail(parsed, maxMessageBytes, !sender || sender.role === 'admin' ? 'admin' : 'user');
    assertMaySendAs(sender, mail.from);
    await this.assertMayChooseServer(sender, mail.serverId, mail.massMailing);
    const result = await this.queue.enqueue(mail, actor);
    this.notify();
    return result;
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
    const parsed = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true });
    const from = addresses(parsed.from)[0];
    if (!from) throw new AppError('JUNIPER_ERR_VALIDATION', 'The message has no usable From header.', { details: { field: 'from' } });
    assertMaySendAs(sender, from);
    await this.assertMayChooseServer(sender, overrides.serverId ?? null, overrides.massMailing ?? false);
    const to = overrides.to ? checkRecipients(overrides.to, 'to') : checkRecipients(addresses(parsed.to), 'to');
    const cc = overrides.to ? [] : checkRecipients(addresses(parsed.cc), 'cc');
    const bcc = overrides.to ? [] : checkRecipients(addresses(parsed.bcc), 'bcc');
    if (to.length + cc.length + bcc.length === 0) throw new AppError('JUNIPER_ERR_VALIDATION', 'The message has no recipients (To, Cc, Bcc) and none were given.', { details: { field: 'to' } });
    let messageId = parsed.messageId;
    let bytes = raw;
    if (messageId) await this.assertNewMessageId(messageId);
    else {
      // Every mail keeps one Message-ID across retries: give the message one now, stored with it.
      messageId = newMessageId(from);
      bytes = Buffer.concat([Buffer.from(`Message-ID: ${messageId}\r\n`), raw]);
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

/** Users other than admins send only as themselves; admins and scripts with an admin key send as anyone. */
function assertMaySendAs(sender: PrincipalUser | null, from: string): void {
  if (!sender || sender.role === 'admin') return;
  if (normaliseAddress(from) !== sender.email.toLowerCase()) {
    throw new AppError('JUNIPER_ERR_FORBIDDEN', `You may send only as your own address (${sender.email}); an admin's API key can send as others.`);
  }
}
