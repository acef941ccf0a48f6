// A transaction the server accepted for some recipients and refused for others at RCPT TO. A 5xx refusal is
// final for that recipient (rejected_recipients, as before); a 4xx one is a deferral ("452 4.5.3 Too many
// recipients" from Postfix past smtpd_recipient_limit, greylisting): the recipient did not get the mail and must
// get it later. The mail is then recorded sent to the accepted recipients, and the deferred ones go into a
// follow-up mail of their own (same message, same Message-ID, envelope = the deferred addresses), queued with
// the usual backoff in the same transaction (queue.ts markPartlySent). Decisions only; no I/O here.
import { MAX_ATTEMPTS } from '../lib/backoff.js';

export interface RecipientRefusal {
  address: string;
  /** The server's reply to RCPT TO, e.g. "452 4.5.3 Too many recipients". */
  response: string;
  /** The reply's code, when the transport read one (nodemailer's rejectedErrors carry responseCode). */
  responseCode?: number;
}

/** The refusals of one transaction, split into those to try again (4xx) and those that are final (5xx). */
export interface RefusalSplit {
  deferred: { address: string; response: string }[];
  refused: { address: string; response: string }[];
}

/** The reply code of a refusal: the transport's, else the reply's first three digits. */
export function replyCodeOf(r: RecipientRefusal): number | undefined {
  if (r.responseCode !== undefined && r.responseCode >= 200 && r.responseCode < 600) return r.responseCode;
  const m = /^\s*([2-5]\d\d)\b/.exec(r.response);
  return m ? Number(m[1]) : undefined;
}

/**
 * 4xx is deferred, everything else refused. A refusal without any code (no transport of ours gives one) stays
 * refused, as before: retrying on a guess could deliver twice where the server had in fact said 5xx.
 */
export function splitRefusals(rejected: readonly RecipientRefusal[]): RefusalSplit {
  const split: RefusalSplit = { deferred: [], refused: [] };
  for (const r of rejected) {
    const code = replyCodeOf(r);
    (code !== undefined && code >= 400 && code < 500 ? split.deferred : split.refused).push({ address: r.address, response: r.response });
  }
  return split;
}

/**
 * The value of outgoing_mails.message_id for a follow-up: the column is unique (SQLite cannot drop that
 * constraint without rebuilding the table), so a follow-up's is the Message-ID followed by a space and the
 * mail it follows. No Message-ID the queue holds contains a space (enqueue refuses one, newMessageId makes
 * none), so the header part is always what comes before the first space, and a Message-ID lookup
 * (findByMessageId, bounce matching) finds the original only.
 */
export function followUpKey(storedMessageId: string, parentId: number): string {
  return `${headerMessageId(storedMessageId)} follow-up-of:${parentId}`;
}

/** The Message-ID header a row's message_id stands for (the same for a mail and its follow-ups). */
export function headerMessageId(storedMessageId: string): string {
  const space = storedMessageId.indexOf(' ');
  return space === -1 ? storedMessageId : storedMessageId.slice(0, space);
}

/**
 * Whether every deferral is the server's limit of recipients a transaction ("452 4.5.3 Too many recipients":
 * Postfix past smtpd_recipient_limit, Exchange past its own). Then the transaction delivered what it could and
 * the rest wants another transaction now, not a retry: a chain of such follow-ups must not use up the mail's
 * attempts (with a limit of 100, a mail to 3,000 recipients needs 30 transactions) nor wait their backoff.
 */
export function isRecipientLimit(deferred: RefusalSplit['deferred']): boolean {
  return deferred.length > 0 && deferred.every((d) => /^\s*452\b/.test(d.response) && (/\b4\.5\.3\b/.test(d.response) || /too many recipients/i.test(d.response)));
}

export interface FollowUpPlan {
  state: 'queued' | 'failed';
  failureType: 'smtp_temporary';
  reason: string;
}

/**
 * What becomes of the deferred recipients: queued for another attempt while the mail has attempts left (the
 * follow-up carries the parent's count on, so the retry window is the mail's, not a new one), failed with the
 * server's words once it has used them all.
 */
export function planFollowUp(deferred: RefusalSplit['deferred'], attempts: number, serverName: string): FollowUpPlan {
  const shown = deferred.slice(0, 3).map((d) => `${d.address}: ${d.response}`).join('; ');
  const more = deferred.length > 3 ? ` (and ${deferred.length - 3} more)` : '';
  const what = `Outgoing server "${serverName}" deferred ${deferred.length} recipient${deferred.length === 1 ? '' : 's'} at RCPT TO while it accepted the others: ${shown}${more}.`;
  if (attempts >= MAX_ATTEMPTS) return { state: 'failed', failureType: 'smtp_temporary', reason: `${what} Not delivered to them (gave up after ${attempts} attempts).` };
  return { state: 'queued', failureType: 'smtp_temporary', reason: `${what} They are retried later in this follow-up mail; the others have it.` };
}
