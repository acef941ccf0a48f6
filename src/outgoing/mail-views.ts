// A mail as one viewer may see it (API and pages alike). The stored reasons are written for whoever runs the
// server: they name its host and port ("Nothing listens on 10.0.0.5:25"), quote its replies (banner, queue
// ids, internal host names) and say what to change on it. That is right for an admin, and for a user on their
// own personal server, but a user whose mail went through the organisation's server learns its internals from
// them (hostile review 16). Such a viewer gets the same failure type, and a reason saying what happened, whether
// Juniper retries, and what they can do, naming only the server's name (already shown on the mail's page); the
// full text stays on the mail for admins, in the log and in webhooks (admin-only).
import type { MailAttempt, OutgoingMail, OutgoingServer } from '../db/schema.js';
import type { PrincipalUser } from '../users/principal.js';
import { enhancedStatus } from './delivery-failure.js';
import { mailView, PACED, type MailView } from './queue.js';

export type MailViewer = Pick<PrincipalUser, 'id' | 'role'>;

/** What a reason's server says about who may read it: its name, and its owner (null: shared). */
export type ReasonServer = Pick<OutgoingServer, 'id' | 'name' | 'owner_user_id'>;

/**
 * Reasons Juniper writes itself that name no host, port or reply (routing, pacing, a stalled server, a
 * crashed worker): shown as they are, since the user needs them to fix their mail (a bad From, a forced server).
 */
const OWN_WORDS = new Set<string>(['no_server', 'invalid_from', 'forced_server_unavailable', 'mass_mailing_server_unavailable', 'crashed', 'server_stalled', PACED]);

/**
 * Whether this viewer reads what the server said in full: an admin always; anyone else only about their own
 * personal server. An unknown server (none recorded, or gone) is treated as not theirs.
 */
export function seesServerDetails(viewer: MailViewer, server: ReasonServer | null | undefined): boolean {
  if (viewer.role === 'admin') return true;
  return server != null && server.owner_user_id === viewer.id;
}

const WHAT_HAPPENED: Record<string, string> = {
  connection: 'could not be reached',
  dns: 'could not be found on the network',
  tls: 'could not set up an encrypted connection',
  timeout: 'did not answer in time',
  smtp_temporary: 'deferred the mail for now',
  graph_temporary: 'was temporarily unavailable',
  quota: 'is at its sending limit for now',
  oauth_transient: 'could not sign in for now',
  internal: 'could not take the mail because of an unexpected error',
  rejected: 'refused the mail',
  invalid_address: 'refused the recipient address(es)',
  sender_refused: 'refused the sender address',
  too_large: 'refused the mail as too large',
  protocol: 'did not accept the mail',
  auth: 'cannot sign in to send mail',
  smtp_auth_disabled: 'cannot sign in to send mail',
  oauth_token: 'cannot sign in to send mail',
  oauth_app: 'cannot sign in to send mail',
  needs_reconnect: 'cannot sign in to send mail',
  host_not_allowed: 'may not be used under the mail server policy',
  port_not_allowed: 'may not be used under the mail server policy',
};

/** What the viewer can do about a mail that failed for good, by type; others: retry later or ask. */
const WHAT_TO_DO: Record<string, string> = {
  invalid_address: 'Check the addresses for typos, then send it again.',
  sender_refused: 'Send it from your own address, or ask an admin which addresses this server may send as.',
  too_large: 'Send smaller attachments (or links to them).',
  rejected: 'Ask an admin why before sending it again.',
  protocol: 'Ask an admin before sending it again.',
};

/** retrying: queued for another attempt; waiting: held until the server is fixed; failed: given up; cancelled: by its sender or an admin. */
export type ReasonOutcome = 'retrying' | 'waiting' | 'failed' | 'cancelled';

/**
 * The reason a viewer who may not see the server's details reads, for a mail (or one of its attempts) of this
 * failure type and outcome. Pure: names the server by its name and the mail by its id, nothing else of either.
 */
export function redactedReason(mailId: number, failureType: string | null, outcome: ReasonOutcome, server: ReasonServer | null | undefined): string {
  const who = server == null ? 'The mail server' : server.owner_user_id === null ? `The organisation's mail server "${server.name}"` : `The mail server "${server.name}"`;
  const type = failureType ?? '';
  const what = WHAT_HAPPENED[type] ?? 'could not send the mail';
  const next =
    outcome === 'retrying'
      ? 'Juniper tries again later by itself.'
      : outcome === 'waiting'
        ? 'The mail waits until an admin fixes the server, then goes out by itself.'
        : outcome === 'cancelled'
          ? 'The mail was cancelled: retry it to send it again.'
          : (WHAT_TO_DO[type] ?? 'Juniper gave up: retry the mail later, or ask an admin if it keeps failing.');
  return `${who} ${what}. ${next} An admin has the details (mail ${mailId}).`;
}

/**
 * A reply's code and enhanced status only ("250 2.0.0" from "250 2.0.0 Ok: queued as 4BcD1 on relay.corp"):
 * whether it was accepted and why in standard terms, without the server's own text. Null without a code.
 */
export function replyCode(reply: string | null): string | null {
  const trimmed = (reply ?? '').trim();
  const code = /^([2-5]\d\d)\b/.exec(trimmed)?.[1];
  if (code === undefined) return null;
  const status = enhancedStatus(trimmed);
  return status ? `${code} ${status}` : code;
}

/** A reason as this viewer reads it: null stays null, Juniper's own words stay, a server's are redacted. */
function reasonFor(viewer: MailViewer, reason: string | null, mailId: number, failureType: string | null, outcome: ReasonOutcome, server: ReasonServer | null | undefined): string | null {
  if (reason === null || seesServerDetails(viewer, server) || OWN_WORDS.has(failureType ?? '')) return reason;
  return redactedReason(mailId, failureType, outcome, server);
}

/**
 * The one rule for a mail's view: `sentBy` (a worker's host and process) for admins only; the reasons, the
 * server's reply and the refused recipients' replies in full for those who see the server's details, as codes
 * and redacted reasons for the others. `servers` holds at least the mail's server (archived ones included).
 */
export function mailViewFor(viewer: MailViewer, mail: OutgoingMail, servers: ReadonlyMap<number, ReasonServer>): MailView {
  const view = mailView(mail);
  if (viewer.role !== 'admin') view.sentBy = null;
  const server = mail.server_id === null ? null : servers.get(mail.server_id);
  if (seesServerDetails(viewer, server)) return view;
  // A cancelled mail keeps the reasons of its last attempt, but nothing retries it or waits for it any more.
  const cancelled = mail.state === 'cancelled';
  const failed: ReasonOutcome = cancelled ? 'cancelled' : mail.state === 'failed' ? 'failed' : 'retrying';
  return {
    ...view,
    failureReason: reasonFor(viewer, view.failureReason, mail.id, mail.failure_type, failed, server),
    waitingReason: reasonFor(viewer, view.waitingReason, mail.id, mail.failure_type, cancelled ? 'cancelled' : 'waiting', server),
    smtpResponse: replyCode(view.smtpResponse),
    rejectedRecipients: view.rejectedRecipients.map((r) => ({ address: r.address, response: replyCode(r.response) ?? 'refused' })),
  };
}

/** One attempt of the mail page's history as this viewer reads it (each attempt names its own server). */
export function attemptViewFor(viewer: MailViewer, attempt: MailAttempt, servers: ReadonlyMap<number, ReasonServer>): MailAttempt {
  const server = attempt.server_id === null ? null : servers.get(attempt.server_id);
  const outcome: ReasonOutcome = attempt.outcome === 'failed' ? 'failed' : 'retrying';
  return { ...attempt, reason: reasonFor(viewer, attempt.reason, attempt.mail_id, attempt.failure_type, outcome, server) };
}

/** The servers the given mails (or attempts) name, by id, as their views need them. */
export async function reasonServers(
  servers: { namesAndOwners(ids: readonly number[]): Promise<ReasonServer[]> },
  rows: readonly { server_id: number | null }[],
): Promise<Map<number, ReasonServer>> {
  const ids = [...new Set(rows.map((r) => r.server_id).filter((id): id is number => id !== null))];
  return new Map((await servers.namesAndOwners(ids)).map((s) => [s.id, s]));
}
