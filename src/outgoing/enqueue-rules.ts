// What a mail to send may contain, checked before anything is stored: recipients that parse, no line break in
// any value that becomes a header (refused, not mended: a CR/LF in a subject or an address is an injection
// attempt or a bug worth hearing about), free headers from the shared allow-list, attachments that decode, and a
// size under the configured limit.
import { z } from 'zod';
import { AppError } from '../lib/errors.js';
import { isPlainAddrSpec, parseMailbox, toHeaderLine, formatMailbox } from '../lib/address.js';
import addressparser from 'nodemailer/lib/addressparser';
import { hasLineBreak, refusedHeader, type HeaderPolicy } from './header-rules.js';

const addressList = z.array(z.string().max(998)).max(1000).default([]);

export const enqueueSchema = z
  .object({
    from: z.string().min(1).max(998),
    to: addressList,
    cc: addressList,
    bcc: addressList,
    replyTo: z.string().max(998).nullish(),
    subject: z.string().max(998).default(''),
    text: z.string().nullish(),
    html: z.string().nullish(),
    headers: z.record(z.string(), z.string().max(998)).default({}),
    attachments: z
      .array(
        z.object({
          filename: z.string().min(1).max(255),
          contentType: z.string().max(255).default('application/octet-stream'),
          contentBase64: z.string(),
          contentId: z.string().max(255).nullish(),
        }),
      )
      .max(100)
      .default([]),
    serverId: z.number().int().positive().nullish(),
    massMailing: z.boolean().default(false),
  })
  .strict();

export type EnqueueInput = z.input<typeof enqueueSchema>;

export interface CheckedMail {
  from: string;
  to: string[];
  cc: string[];
  bcc: string[];
  replyTo: string | null;
  subject: string;
  text: string | null;
  html: string | null;
  headers: Record<string, string>;
  attachments: { filename: string; contentType: string; content: Buffer; contentId: string | null }[];
  serverId: number | null;
  massMailing: boolean;
}

function invalid(message: string, field: string): AppError {
  return new AppError('JUNIPER_ERR_VALIDATION', message, { details: { field } });
}

/** Each entry may itself be a comma-separated list; every mailbox must parse. */
export function checkRecipients(values: readonly string[], field: string): string[] {
  const out: string[] = [];
  for (const value of values) {
    const line = toHeaderLine(value);
    for (const entry of isPlainAddrSpec(line) ? [{ name: '', address: line }] : addressparser(line, { flatten: true })) {
      const mailbox = parseMailbox(entry.name ? `"${entry.name.replace(/["\\]/g, '\\$&')}" <${entry.address}>` : entry.address);
      if (!mailbox) throw invalid(`${field}: ${JSON.stringify(value)} is not an email address.`, field);
      out.push(formatMailbox(mailbox));
    }
  }
  return out;
}

const BASE64 = /^[A-Za-z0-9+/\r\n]*={0,2}\s*$/;

/** Every value that becomes (part of) a header line, with the field it came from. */
function headerValues(input: z.output<typeof enqueueSchema>): [string, string][] {
  return [
    ['from', input.from],
    ...input.to.map((v): [string, string] => ['to', v]),
    ...input.cc.map((v): [string, string] => ['cc', v]),
    ...input.bcc.map((v): [string, string] => ['bcc', v]),
    ['replyTo', input.replyTo ?? ''],
    ['subject', input.subject],
    ...Object.entries(input.headers).map(([name, v]): [string, string] => [`headers.${name}`, v]),
    ...input.attachments.flatMap((a, i): [string, string][] => [
      [`attachments[${i}].filename`, a.filename],
      [`attachments[${i}].contentType`, a.contentType],
      [`attachments[${i}].contentId`, a.contentId ?? ''],
    ]),
  ];
}

/** `policy`: what free headers the sender may set ('admin' for admins and the CLI). */
export function checkMail(input: z.output<typeof enqueueSchema>, maxBytes: number, policy: HeaderPolicy = 'user'): CheckedMail {
  for (const [field, value] of headerValues(input)) {
    if (hasLineBreak(value)) {
      throw invalid(`${field} contains a line break or NUL character; header values must be one line (nothing was queued).`, field.split(/[.[]/)[0]!);
    }
  }
  const from = parseMailbox(input.from);
  if (!from) throw invalid(`from: ${JSON.stringify(input.from)} is not an email address (e.g. "Jane Doe <jane@example.com>").`, 'from');
  const replyTo = input.replyTo ? parseMailbox(input.replyTo) : undefined;
  if (input.replyTo && !replyTo) throw invalid(`replyTo: ${JSON.stringify(input.replyTo)} is not an email address.`, 'replyTo');
  const to = checkRecipients(input.to, 'to');
  const cc = checkRecipients(input.cc, 'cc');
  const bcc = checkRecipients(input.bcc, 'bcc');
  if (to.length + cc.length + bcc.length === 0) throw invalid('Give at least one recipient (to, cc or bcc).', 'to');
  if (!input.text && !input.html) throw invalid('Give a text or an html body (or both).', 'text');

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.headers)) {
    const refusal = refusedHeader(name, policy);
    if (refusal !== null) throw invalid(`headers: ${refusal}`, 'headers');
    headers[name] = toHeaderLine(value);
  }

  let size = Buffer.byteLength(input.text ?? '') + Buffer.byteLength(input.html ?? '');
  const attachments = input.attachments.map((a, i) => {
    if (!BASE64.test(a.contentBase64)) throw invalid(`attachments[${i}] (${a.filename}): contentBase64 is not base64.`, 'attachments');
    const content = Buffer.from(a.contentBase64, 'base64');
    size += content.length;
    return { filename: toHeaderLine(a.filename), contentType: toHeaderLine(a.contentType), content, contentId: a.contentId ? toHeaderLine(a.contentId) : null };
  });
  if (size > maxBytes) {
    const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
    throw new AppError('JUNIPER_ERR_TOO_LARGE', `The message is ${mb(size)}; the limit is ${mb(maxBytes)} (system parameter mail.message.max_bytes).`);
  }
  return {
    from: formatMailbox(from),
    to,
    cc,
    bcc,
    replyTo: replyTo ? formatMailbox(replyTo) : null,
    subject: toHeaderLine(input.subject),
    // PostgreSQL text cannot hold NUL, and no mail body needs one.
    text: input.text ? input.text.split('\u0000').join('') : null,
    html: input.html ? input.html.split('\u0000').join('') : null,
    headers,
    attachments,
    serverId: input.serverId ?? null,
    massMailing: input.massMailing,
  };
}
