// Which free headers a mail may carry (POST /api/v1/mails `headers`), the one list enqueueing and the SMTP
// adapter share. A free header is written as given into a message that leaves under Juniper's name (and often
// its DKIM signature), so what it can claim matters:
// - nobody, admins included, sets a header the mail's own fields set (From, To, Subject …: it would contradict
//   them; a "Bcc" header would show the hidden recipients), one that shapes the MIME structure (MIME-Version,
//   Content-*), or one that belongs to the servers on the way (Received, Return-Path, DKIM-Signature, ARC-*,
//   Authentication-Results, Resent-*: a forged one makes a receiver trust what no server checked);
// - a user other than an admin sets only what describes their own mail to its readers: custom X- headers
//   (apart from those Microsoft 365 and spam filters use as their verdicts), the List-* and auto-reply
//   headers bulk mail needs, threading, importance, keywords and Organization (which any mail client lets its
//   user set);
// - an admin (or the CLI) sets any other syntactically valid header (Disposition-Notification-To, Errors-To,
//   an X-MS-Exchange-Organization-* header for a connector that expects one …).
export type HeaderPolicy = 'user' | 'admin';

// RFC 5322 field name: printable ASCII except the colon.
const HEADER_NAME = /^[!-9;-~]{1,76}$/;

const STRUCTURAL = new Set([
  'from', 'sender', 'to', 'cc', 'bcc', 'reply-to', 'subject', 'message-id', 'date',
  'mime-version', 'return-path', 'received', 'received-spf', 'delivered-to', 'envelope-to',
  'dkim-signature', 'domainkey-signature', 'authentication-results',
]);
const STRUCTURAL_PREFIXES = ['content-', 'resent-', 'arc-'];

const USER_HEADERS = new Set([
  'list-unsubscribe', 'list-unsubscribe-post', 'list-id', 'list-help', 'list-subscribe', 'list-post', 'list-owner', 'list-archive',
  'auto-submitted', 'precedence', 'importance', 'priority', 'sensitivity', 'keywords', 'comments',
  'in-reply-to', 'references', 'thread-topic', 'thread-index', 'organization',
]);
// X- headers that receiving systems read as their own verdicts or trace: Microsoft 365 (X-MS-Exchange-*,
// X-Microsoft-*, X-Forefront-*), spam and virus filters, the original-sender headers of forwarders and bounces.
const USER_FORBIDDEN_X_PREFIXES = ['x-original-', 'x-ms-', 'x-microsoft-', 'x-forefront-', 'x-spam', 'x-virus', 'x-received', 'x-google-', 'x-envelope-', 'x-authenticated', 'x-mailgun-', 'x-ses-'];

/** Never written from a free header, by anyone: the SMTP adapter drops these too, whatever the queue holds. */
export function isStructuralHeader(name: string): boolean {
  const n = name.toLowerCase();
  return STRUCTURAL.has(n) || STRUCTURAL_PREFIXES.some((p) => n.startsWith(p));
}

/** Why `name` may not be set as a free header under `policy`, or null when it may. */
export function refusedHeader(name: string, policy: HeaderPolicy): string | null {
  if (!HEADER_NAME.test(name)) return `${JSON.stringify(name)} is not a valid header name (printable ASCII without ':' or spaces, at most 76 characters).`;
  const n = name.toLowerCase();
  if (isStructuralHeader(n)) {
    return ['from', 'to', 'cc', 'bcc', 'reply-to', 'subject'].includes(n)
      ? `set ${name} with its own field, not as a free header.`
      : `${name} may not be set: it is written by Juniper or by the mail servers on the way.`;
  }
  if (policy === 'admin') return null;
  if (USER_HEADERS.has(n)) return null;
  if (n.startsWith('x-') && !USER_FORBIDDEN_X_PREFIXES.some((p) => n.startsWith(p))) return null;
  return `${name} may be set only by an admin; users may set custom X- headers, List-*, Auto-Submitted, Precedence, Importance, Priority, Keywords, Comments, In-Reply-To, References and Thread-Topic.`;
}

// eslint-disable-next-line no-control-regex -- these are exactly what a header value must not carry
const LINE_BREAK_OR_NUL = /[\r\n\u0000]/;

/** True when a value would end its header line (CR, LF) or be cut short (NUL): refused where it enters. */
export function hasLineBreak(value: string): boolean {
  return LINE_BREAK_OR_NUL.test(value);
}

/** The longest value a free header may have: RFC 5322's line limit, as enqueue-rules.ts allows a header value. */
export const MAX_HEADER_VALUE_CHARS = 998;

/**
 * A reply's References: the thread's IDs and the replied-to message's (last), trimmed to fit one header value.
 * RFC 5322 §3.6.4 lets a reply drop IDs from the middle: the replied-to message's is always kept, the thread's
 * first when it fits beside it, then as many of the latest as fit. A long thread's every ID, kept whole, made a
 * value over the limit, and the reply was refused.
 */
export function replyReferences(ids: readonly string[], max = MAX_HEADER_VALUE_CHARS): string {
  const all = ids.join(' ');
  if (all.length <= max || ids.length < 2) return all;
  const last = ids[ids.length - 1]!;
  const first = ids[0]!;
  const withFirst = first.length + 1 + last.length <= max;
  let length = withFirst ? first.length + 1 + last.length : last.length;
  const middle: string[] = [];
  for (let i = ids.length - 2; i >= 1 && length + 1 + ids[i]!.length <= max; i--) {
    middle.unshift(ids[i]!);
    length += 1 + ids[i]!.length;
  }
  return [...(withFirst ? [first] : []), ...middle, last].join(' ');
}
