// An inbound message as Juniper stores it, from mailparser's reading of it (or parse-simple.ts's, which gives
// the same for the everyday shapes, faster): addresses as display strings, the
// Message-IDs threading needs, attachments, and the facts bounce handling needs (the delivery-status fields
// and the Message-IDs of the original message a report carries). A message mailparser cannot read becomes
// a parse error for quarantine, never an exception that stops a batch.
import { Readable } from 'node:stream';
import type { AddressObject } from 'mailparser';
import { formatMailbox } from '../lib/address.js';
import { HtmlText } from './html-text.js';
import { readSimple } from './parse-simple.js';
import { readMail, type StreamedMail } from './parse-stream.js';

export interface ParsedAttachment {
  filename: string;
  contentType: string;
  contentId: string | null;
  content: Buffer;
}

export interface DeliveryStatusRecipient {
  recipient: string;
  action: string;
  status: string;
  diagnostic: string;
}

export interface DeliveryStatus {
  /** Original-Message-ID or X-Original-Message-ID, when the reporting MTA gave one. */
  originalMessageId: string | null;
  recipients: DeliveryStatusRecipient[];
}

export interface ParsedMessage {
  messageId: string | null;
  inReplyTo: string | null;
  references: string[];
  from: string | null;
  to: string[];
  cc: string[];
  /** Bare addresses of To, Cc, X-Original-To and Delivered-To, in that order, for alias routing. */
  recipientAddresses: string[];
  subject: string;
  date: number | null;
  text: string | null;
  html: string | null;
  attachments: ParsedAttachment[];
  autoSubmitted: string | null;
  /** Set for multipart/report; report-type=delivery-status. */
  deliveryStatus: DeliveryStatus | null;
  /** X-Failed-Recipients (Exim and others name the refused addresses there). */
  failedRecipients: string[];
  /** Message-IDs of embedded messages or header blocks (message/rfc822, text/rfc822-headers): a bounce's original. */
  embeddedMessageIds: string[];
}

/**
 * A failure may carry `headers`: its header section's own reading, made where it was safe (ParsePool, for a
 * message that overran its parse budget or crashed a worker). Quarantine then shows those fields instead of
 * parsing the header section again on the calling thread, where nothing could stop it.
 */
export type ParseOutcome = { ok: true; message: ParsedMessage } | { ok: false; error: string; headers?: ParseOutcome };

// eslint-disable-next-line no-control-regex -- what no stored header value may carry
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;
const oneLine = (v: string) => v.replace(CONTROL, '').replace(/\s+/g, ' ').trim();

const addressList = (value: AddressObject | AddressObject[] | undefined): { formatted: string[]; bare: string[] } => {
  const entries = (Array.isArray(value) ? value : value ? [value] : []).flatMap((a) => a.value);
  // Groups (undisclosed-recipients:;) carry their members in `group`.
  const flat = entries.flatMap((e) => (e.group ? e.group : [e]));
  const withAddress = flat.filter((e) => !!e.address);
  return {
    formatted: withAddress.map((e) => formatMailbox({ name: oneLine(e.name), address: e.address! })),
    bare: withAddress.map((e) => e.address!.toLowerCase()),
  };
};

const headerText = (mail: StreamedMail, name: string): string | null => {
  const v = mail.headers.get(name);
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return oneLine(v);
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(', ');
  if (typeof v === 'object' && 'text' in v && typeof v.text === 'string') return oneLine(v.text);
  if (typeof v === 'object' && 'value' in v && typeof v.value === 'string') return oneLine(v.value);
  return null;
};

const addressesIn = (value: string | null): string[] =>
  (value ?? '')
    .split(/[,\s]+/)
    .map((a) => a.replace(/^<|>$/g, ''))
    .filter((a) => a.includes('@'));

/** Every `<id>` in a header value, in order (mailparser gives In-Reply-To as written, possibly with comments). */
export function messageIdsIn(value: string | string[] | null | undefined): string[] {
  const text = Array.isArray(value) ? value.join(' ') : (value ?? '');
  return [...text.matchAll(/<[^<>\s]+>/g)].map((m) => m[0]);
}

/** RFC 3464 fields: unfolded, grouped (per-message first, then one group per recipient), names lower-cased. */
export function parseDeliveryStatus(body: string): DeliveryStatus {
  const groups: Map<string, string>[] = [];
  let current: Map<string, string> | undefined;
  let last: string | undefined;
  for (const line of body.replace(/\r\n?/g, '\n').split('\n')) {
    if (line.trim() === '') {
      current = undefined;
      last = undefined;
      continue;
    }
    if (/^[ \t]/.test(line) && current && last) {
      current.set(last, `${current.get(last)} ${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (!current) groups.push((current = new Map<string, string>()));
    last = line.slice(0, colon).trim().toLowerCase();
    current.set(last, line.slice(colon + 1).trim());
  }
  const afterType = (v: string | undefined) => (v ?? '').replace(/^[a-z0-9-]+;\s*/i, '').trim();
  const originalId = groups.map((g) => g.get('original-message-id') ?? g.get('x-original-message-id')).find((v) => !!v);
  return {
    originalMessageId: originalId ? (messageIdsIn(originalId)[0] ?? null) : null,
    recipients: groups
      .filter((g) => g.has('final-recipient') || g.has('original-recipient'))
      .map((g) => ({
        recipient: afterType(g.get('final-recipient') ?? g.get('original-recipient')),
        action: (g.get('action') ?? '').toLowerCase(),
        status: g.get('status') ?? '',
        diagnostic: afterType(g.get('diagnostic-code')),
      })),
  };
}

export const PARSE_OPTIONS = {
  // Reports keep their machine-readable parts as attachments (bounce handling reads them), embedded
  // messages stay whole (.eml attachments) instead of being merged into the text.
  keepDeliveryStatus: true,
  ignoreEmbedded: true,
  keepCidLinks: true,
  // Juniper shows the text and the HTML as sent: no text made into HTML, no image links rewritten. HTML is
  // still made into text when a message has no text part, because the API's `text` is what integrations read,
  // but by html-text.ts (no word wrap, a size budget), not by mailparser: its html-to-text call is quadratic
  // on long words, and one hostile message stalled a server's fetching for minutes.
  skipTextToHtml: true,
  skipHtmlToText: true,
  skipImageLinks: true,
  // Attachments are hashed once, with SHA-256, by the blob store: mailparser's MD5 of each would be a second pass.
  checksumAlgo: false,
} as const;

/**
 * Larger messages reach mailparser in slices of this size, as from a socket. Given one Buffer, its splitter
 * works through the whole body in one go and everything it makes of it (lines, base64 text, decoded pieces)
 * is still on the heap at the end: a 25 MB message cost 3.6 times its size, in slices 1.8 times.
 */
export const PARSE_SLICE_BYTES = 64 * 1024;

function* slices(raw: Buffer): Generator<Buffer> {
  for (let at = 0; at < raw.length; at += PARSE_SLICE_BYTES) yield raw.subarray(at, at + PARSE_SLICE_BYTES);
}

export const parse = (raw: Buffer): Promise<StreamedMail> => {
  const html = new HtmlText();
  return readMail(Readable.from(slices(raw)), raw.length, PARSE_OPTIONS, (part) => html.convert(part));
};

/** Only the headers matter (an embedded message's Message-ID): its HTML is not made into text at all. */
const parseForHeaders = (raw: Buffer): Promise<StreamedMail> => readMail(Readable.from(slices(raw)), raw.length, PARSE_OPTIONS, () => '');

// The decoded forms mailparser gives these header fields (see its Headers type).
const addresses = (mail: StreamedMail, name: string) => mail.headers.get(name) as AddressObject | AddressObject[] | undefined;
const plain = (mail: StreamedMail, name: string) => mail.headers.get(name) as string | undefined;

async function embeddedMessageId(content: Buffer): Promise<string | null> {
  try {
    return plain(await parseForHeaders(content), 'message-id') ?? null;
  } catch {
    return null;
  }
}

/**
 * The stored fields of a message. The everyday shapes are read by parse-simple.ts (postal-mime with
 * mailparser's header, charset and text rules: the same fields, in about a third of the time); the rest by
 * mailparser.
 */
export async function parseMessage(raw: Buffer): Promise<ParseOutcome> {
  return (await parseMessageSimply(raw)) ?? parseMessageByMailparser(raw);
}

/** parse-simple.ts alone: undefined for a message it leaves to mailparser. */
export async function parseMessageSimply(raw: Buffer): Promise<ParseOutcome | undefined> {
  let mail: StreamedMail | undefined;
  try {
    mail = await readSimple(raw);
  } catch {
    // Whatever trips the fast reader is mailparser's to read or to refuse.
    return undefined;
  }
  return mail ? describe(mail) : undefined;
}

/** mailparser alone, for every message (the reference parse-simple.test.ts compares with). */
export async function parseMessageByMailparser(raw: Buffer): Promise<ParseOutcome> {
  let mail: StreamedMail;
  try {
    mail = await parse(raw);
  } catch (e) {
    return { ok: false, error: `mailparser: ${(e as Error).message}` };
  }
  return describe(mail);
}

async function describe(mail: StreamedMail): Promise<ParseOutcome> {
  // mailparser reads anything as a body; a "message" without a single header field is not mail.
  if (mail.headerKeys.length === 0 || mail.headerKeys.every((key) => !/^[!-9;-~]+$/.test(key))) {
    return { ok: false, error: 'no header section: the data does not start with header fields such as From: or Subject:' };
  }
  const to = addressList(addresses(mail, 'to'));
  const cc = addressList(addresses(mail, 'cc'));
  const from = addresses(mail, 'from') as AddressObject | undefined;
  const messageId = plain(mail, 'message-id');
  const subject = plain(mail, 'subject');
  const sent = mail.headers.get('date') as Date | undefined;
  const envelopeTo = ['x-original-to', 'delivered-to'].flatMap((h) => addressesIn(headerText(mail, h)));
  const contentType = mail.headers.get('content-type') as { value?: string; params?: Record<string, string> } | undefined;
  const isDsn = contentType?.value === 'multipart/report' && contentType.params?.['report-type']?.toLowerCase() === 'delivery-status';
  const statusPart = mail.attachments.find((a) => a.contentType === 'message/delivery-status' || a.contentType === 'message/global-delivery-status');
  const embedded = mail.attachments.filter((a) => ['message/rfc822', 'text/rfc822-headers', 'message/global', 'message/global-headers'].includes(a.contentType));
  const embeddedMessageIds: string[] = [];
  for (const a of embedded) {
    const id = await embeddedMessageId(a.content);
    if (id) embeddedMessageIds.push(id);
  }
  const date = sent && !Number.isNaN(sent.getTime()) ? sent.getTime() : null;
  return {
    ok: true,
    message: {
      messageId: messageId ? oneLine(messageId) : null,
      inReplyTo: messageIdsIn(plain(mail, 'in-reply-to'))[0] ?? null,
      references: messageIdsIn(mail.headers.get('references') as string | string[] | undefined),
      from: from ? oneLine(from.text) : null,
      to: to.formatted,
      cc: cc.formatted,
      recipientAddresses: [...to.bare, ...cc.bare, ...envelopeTo.map((a) => a.toLowerCase())],
      subject: oneLine(subject ?? ''),
      date,
      // PostgreSQL text cannot hold NUL; one such body must not block the server's fetching for good.
      text: mail.text ? stripNul(mail.text) : null,
      html: mail.html ? stripNul(mail.html) : null,
      attachments: mail.attachments.map((a) => ({ filename: oneLine(a.filename ?? '') || defaultName(a.contentType), contentType: a.contentType, contentId: a.contentId ?? null, content: a.content })),
      autoSubmitted: headerText(mail, 'auto-submitted'),
      deliveryStatus: isDsn ? parseDeliveryStatus(statusPart ? statusPart.content.toString('utf8') : '') : null,
      failedRecipients: addressesIn(headerText(mail, 'x-failed-recipients')),
      embeddedMessageIds,
    },
  };
}

function defaultName(contentType: string): string {
  if (contentType === 'message/rfc822') return 'message.eml';
  if (contentType === 'text/rfc822-headers') return 'headers.txt';
  if (contentType.endsWith('delivery-status')) return 'delivery-status.txt';
  return 'attachment';
}

function stripNul(value: string): string {
  return value.includes('\u0000') ? value.split('\u0000').join('') : value;
}
