// One message builder for both transports: SMTP hands nodemailer the options, Graph needs the finished MIME
// bytes. Graph's sendMail has no envelope, it reads the recipients from the message's own To, Cc and Bcc
// headers, so the Graph copy keeps a Bcc header (Exchange strips it on delivery) where SMTP must not have one.
import { Readable } from 'node:stream';
import type { SendMailOptions, Transporter } from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import { normaliseAddress } from '../lib/address.js';
import { AppError } from '../lib/errors.js';
import { isStructuralHeader } from './header-rules.js';
import type { ByteSource, Envelope, OutgoingMessage } from './mail-transport.js';

/** nodemailer's options for one message; `withBcc` writes the Bcc header (Graph only). */
export function mailOptions(message: OutgoingMessage, envelope: Envelope, withBcc = false): SendMailOptions {
  const smtpEnvelope = { from: envelope.from, to: envelope.to };
  if (message.raw) return { envelope: smtpEnvelope, raw: message.raw };
  // Enqueueing refused these already (header-rules.ts); dropping them here too keeps a row written by an older
  // version, or by hand, from duplicating the message's own fields (a "Bcc" header would show the hidden recipients).
  const headers = Object.fromEntries(Object.entries(message.headers ?? {}).filter(([key]) => !isStructuralHeader(key)));
  return {
    envelope: smtpEnvelope,
    messageId: message.messageId,
    from: message.from,
    to: message.to,
    cc: message.cc,
    // Over SMTP Bcc is absent: its recipients are in the envelope, and the header must not exist.
    ...(withBcc && message.bcc.length ? { bcc: message.bcc } : {}),
    ...(message.replyTo ? { replyTo: message.replyTo } : {}),
    subject: message.subject,
    ...(message.text != null ? { text: message.text } : {}),
    ...(message.html != null ? { html: message.html } : {}),
    headers,
    attachments: message.attachments.map((a) => ({
      filename: a.filename,
      contentType: a.contentType,
      content: Buffer.isBuffer(a.content) ? (a.content.length > SLICE_BYTES ? slices(a.content) : a.content) : streamed(a.content),
      ...(a.contentId ? { cid: a.contentId } : {}),
    })),
  };
}

/**
 * Attachments larger than this reach nodemailer as a stream of slices of their bytes (views, no copies). Given
 * one Buffer, nodemailer base64-encodes it in one piece: a string of 1.4 times its size per mail in flight, on
 * V8's large-object heap, which only a full collection frees (the outbound memory benchmark's peak).
 * A multiple of 3, so that no base64 group straddles two slices.
 */
const SLICE_BYTES = 48 * 1024;

function* slicesOf(content: Buffer): Generator<Buffer> {
  for (let i = 0; i < content.length; i += SLICE_BYTES) yield content.subarray(i, i + SLICE_BYTES);
}

function slices(content: Buffer): Readable {
  return Readable.from(slicesOf(content), { objectMode: false });
}

/**
 * The errors of reading an attachment's pieces, by the error the transport was given instead: nodemailer takes
 * a failed content stream's error as its own (it sets its `code` to ESTREAM), and the dispatcher must classify
 * the read failure, not nodemailer's label. The connection the message was being written on is closed, so a
 * part of a message is never delivered.
 */
const readFailures = new WeakMap<object, unknown>();

/** The read failure behind a transport's error, when the message's bytes could not be read; else the error. */
export function attachmentReadFailure(err: unknown): unknown {
  return typeof err === 'object' && err !== null && readFailures.has(err) ? readFailures.get(err) : err;
}

/** A fresh stream of the source's pieces for each call (each send attempt reads them again). */
function streamed(source: ByteSource): Readable {
  return Readable.from(
    (async function* () {
      try {
        for await (const piece of source.pieces()) yield* slicesOf(piece);
      } catch (cause) {
        const wrapper = new Error('the attachment could not be read');
        readFailures.set(wrapper, cause);
        throw wrapper;
      }
    })(),
    { objectMode: false },
  );
}

// Builds without sending: the same composer, headers and encodings as the SMTP pool, so a mail sent through
// Graph is byte for byte the message SMTP would have sent, plus its Bcc header. Made with the first Graph mail:
// nodemailer is imported then, not by every process that loads this module (the CLI, through the outbox).
let composer: Promise<Transporter> | undefined;
const composerOf = () =>
  (composer ??= import('nodemailer').then(({ default: nodemailer }) => nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows', disableFileAccess: true, disableUrlAccess: true })));

/**
 * The complete message for Graph's sendMail. A raw message (.eml) goes as it is, with a Bcc header added for
 * envelope recipients its headers do not name. One whose headers name recipients the mail was not queued for
 * (an .eml queued with `--to` overrides) cannot go through Graph: Graph would deliver to the headers.
 */
export async function graphMime(message: OutgoingMessage, envelope: Envelope): Promise<Buffer> {
  if (!message.raw) {
    // A follow-up mail goes to the recipients its original's server deferred only (partial-delivery.ts), while
    // its headers name them all: through Graph, those who have it already would get it again.
    const wanted = new Set(envelope.to.map(normalised));
    const unwanted = [...message.to, ...message.cc, ...message.bcc].flatMap((entry) => addressparser(entry, { flatten: true })).flatMap((a) => (a.address ? [a.address] : [])).filter((a) => !wanted.has(normalised(a)));
    if (unwanted.length > 0) {
      throw new AppError(
        'JUNIPER_ERR_VALIDATION',
        `This mail goes to only some of the recipients its headers name (a follow-up for recipients another server deferred); Microsoft Graph sends to all of the headers' recipients, so ${unwanted.slice(0, 3).join(', ')}${unwanted.length > 3 ? ', …' : ''} would receive it twice. Send it through an SMTP server.`,
        { details: { graphUnsendable: true } },
      );
    }
    try {
      const info = await (await composerOf()).sendMail(mailOptions(message, envelope, true));
      return info.message as Buffer;
    } catch (err) {
      throw attachmentReadFailure(err);
    }
  }
  // Compared normalised (lower-cased, IDN domains in ASCII): the queue keeps recipients as mailparser decoded
  // them (xn-- domains in Unicode), the headers as they were written.
  const named = new Set([...headerRecipients(message.raw)].map(normalised));
  const wanted = new Map(envelope.to.map((a) => [normalised(a), a]));
  const unwanted = [...named].filter((a) => !wanted.has(a));
  if (unwanted.length > 0) {
    throw new AppError(
      'JUNIPER_ERR_VALIDATION',
      `This message was queued for other recipients than its To/Cc/Bcc headers name (${unwanted.slice(0, 3).join(', ')}${unwanted.length > 3 ? ', …' : ''} would receive it too): Microsoft Graph sends to the headers' recipients only. Send it through an SMTP server, or queue the .eml without recipient overrides.`,
      { details: { graphUnsendable: true } },
    );
  }
  const hidden = [...wanted].filter(([key]) => !named.has(key)).map(([key]) => key);
  return hidden.length ? Buffer.concat([Buffer.from(`Bcc: ${hidden.join(', ')}\r\n`), message.raw]) : message.raw;
}

const normalised = (address: string): string => normaliseAddress(address) ?? address.toLowerCase();

/**
 * The message without its Bcc header (folded lines included), for a raw .eml at enqueue: sent byte for byte
 * over SMTP, the header would show every recipient the hidden ones; they stay in the mail's bcc list.
 */
export function withoutBccHeader(raw: Buffer): Buffer {
  const { lines, bodyStart } = headerLines(raw);
  let dropping = false;
  const kept = lines.filter((line) => {
    if (/^[ \t]/.test(line)) return !dropping;
    // The field name as mailsplit keys it: what precedes the first colon, trimmed (a leading CR included).
    const colon = line.indexOf(':');
    dropping = colon > 0 && /^(resent-)?bcc$/i.test(line.slice(0, colon).trim());
    return !dropping;
  });
  if (kept.length === lines.length) return raw;
  return Buffer.concat([Buffer.from(kept.join(''), 'latin1'), raw.subarray(bodyStart)]);
}

/** The lower-cased addresses of a message's To, Cc and Bcc headers (groups flattened). */
export function headerRecipients(raw: Buffer): Set<string> {
  return new Set(headerAddresses(raw, /^(to|cc|bcc)$/i));
}

/** The lower-cased addresses in the header fields whose names match, in order (groups flattened). */
export function headerAddresses(raw: Buffer, fields: RegExp): string[] {
  // UTF-8: an internationalised address (RFC 6532) is UTF-8 in the header; ASCII reads the same either way.
  const text = raw.subarray(0, headerLines(raw).bodyStart).toString('utf8');
  const out: string[] = [];
  for (const line of text.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || !fields.test(line.slice(0, colon).trim())) continue;
    for (const entry of addressparser(line.slice(colon + 1), { flatten: true })) {
      if (entry.address) out.push(entry.address.toLowerCase());
    }
  }
  return out;
}

/**
 * The header block's lines, each with its own line end, and where the body starts (at the blank line), read as
 * mailparser's splitter (mailsplit) reads them: lines end at LF, and a line of nothing but CRs before its LF is
 * the blank line. A reader that differed would miss a header the parser sees.
 */
function headerLines(raw: Buffer): { lines: string[]; bodyStart: number } {
  const text = raw.toString('latin1');
  const lines: string[] = [];
  let at = 0;
  while (at < text.length) {
    const lf = text.indexOf('\n', at);
    const next = lf < 0 ? text.length : lf + 1;
    const line = text.slice(at, next);
    if (/^\r*\n$/.test(line)) return { lines, bodyStart: at };
    lines.push(line);
    at = next;
  }
  return { lines, bodyStart: text.length };
}
