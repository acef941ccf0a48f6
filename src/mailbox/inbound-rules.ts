// Decisions about an inbound message, without I/O: which alias mailbox it was addressed to, which stored or
// sent messages it may thread onto, and whether it reports a failed delivery of a mail Juniper sent.
import { domainOf, localPartOf } from '../lib/address.js';
import type { ParsedMessage } from './parse.js';

/** `<alias>@<mail.catchall.domain>`: the first recipient at the catch-all domain (To, Cc, then envelope headers). */
export function mailboxAlias(recipientAddresses: readonly string[], catchallDomain: string | null): string | null {
  if (!catchallDomain) return null;
  const hit = recipientAddresses.find((a) => domainOf(a).toLowerCase() === catchallDomain);
  return hit ? localPartOf(hit).toLowerCase() : null;
}

/** The bounce address itself, or a VERP-style `bounce+anything@domain` variant of it. */
export function isBounceRecipient(address: string, bounceAddress: string | null): boolean {
  if (!bounceAddress) return false;
  const a = address.toLowerCase();
  const b = bounceAddress.toLowerCase();
  if (a === b) return true;
  return domainOf(a) === domainOf(b) && localPartOf(a).startsWith(`${localPartOf(b)}+`);
}

/** Message-IDs a message may thread onto, nearest first: In-Reply-To, then References from the end. */
export function threadCandidates(m: Pick<ParsedMessage, 'inReplyTo' | 'references'>): string[] {
  const ids = [m.inReplyTo, ...[...m.references].reverse()].filter((id): id is string => !!id);
  return [...new Set(ids)];
}

/** A thread's subject: without the reply and forward prefixes mail clients stack up (Re: AW: Fwd: …). */
export function threadSubject(subject: string): string {
  let s = subject.trim();
  for (let prev = ''; prev !== s; ) {
    prev = s;
    s = s.replace(/^(re|fw|fwd|aw|wg|sv|vs|tr|rif|antw|odp)(\[\d+\])?\s*:\s*/i, '').trim();
  }
  return s;
}

export interface BounceEvidence {
  /** Message-IDs that may be the original mail, most reliable first. */
  candidates: string[];
  reason: string;
}

const FAILED_STATUS = /^5\.\d{1,3}\.\d{1,3}$/;

/**
 * Whether the message reports that a mail could not be delivered, and which Message-IDs name that mail.
 * A delivery-status report counts when a recipient failed (a "delayed" or "delivered" report does not).
 * Mail to the bounce address counts unless it is an auto-reply from a person (RFC 3834 auto-responders answer
 * the envelope sender, which is the bounce address, and an out-of-office note is not a failed delivery).
 */
export function bounceEvidence(m: ParsedMessage, bounceAddress: string | null): BounceEvidence | undefined {
  const report = m.deliveryStatus;
  const toBounce = m.recipientAddresses.some((a) => isBounceRecipient(a, bounceAddress));
  let reason: string | undefined;
  if (report) {
    const failed = report.recipients.filter((r) => r.action === 'failed' || FAILED_STATUS.test(r.status));
    if (report.recipients.length > 0 && failed.length === 0) return undefined;
    reason = failed.length
      ? failed.map((r) => `${r.recipient || 'a recipient'}: ${[r.status, r.diagnostic].filter(Boolean).join(' ') || 'failed'}`).join('; ')
      : `Delivery failed (report without recipient details): ${m.subject}`;
  } else if (toBounce) {
    // Exim bounces are auto-replied too: they say what failed (X-Failed-Recipients) or come from the mailer daemon.
    const fromMailer = /\b(mailer-daemon|postmaster)@/i.test(m.from ?? '');
    if (/^auto-replied/i.test(m.autoSubmitted ?? '') && m.failedRecipients.length === 0 && !fromMailer) return undefined;
    reason = m.failedRecipients.length ? `Delivery failed for ${m.failedRecipients.join(', ')}: ${m.subject}` : `Returned to the bounce address: ${m.subject}`;
  } else {
    return undefined;
  }
  // Exim and some others quote the returned message's headers in the text instead of attaching them.
  const quoted = [...(m.text ?? '').matchAll(/^Message-ID:\s*(<[^<>\s]+>)/gim)].map((x) => x[1]!);
  const candidates = [report?.originalMessageId ?? null, ...m.embeddedMessageIds, ...threadCandidates(m), ...quoted].filter((id): id is string => !!id);
  return { candidates: [...new Set(candidates)], reason: reason.slice(0, 2000) };
}
