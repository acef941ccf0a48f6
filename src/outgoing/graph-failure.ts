// What a failed Graph sendMail means for the mail, as delivery-failure.ts decides it for SMTP: retry (throttled,
// Graph or the network unwell), fail (Graph refused this message for good, with its code and words kept on the
// mail), or wait (the connection's consent or the mailbox's rights must be fixed by someone).
import type { DeliveryDecision } from './delivery-failure.js';

/** A sendMail that Graph refused, or that never got an answer; classifyGraphError() decides what it means. */
export class GraphRequestError extends Error {
  constructor(
    message: string,
    readonly facts: {
      /** HTTP status; 0 when no answer came (network, timeout) or the message was refused before sending. */
      status: number;
      /** Graph's error code (ErrorSendAsDenied, ErrorAccessDenied, …), or ours for a refusal here. */
      code?: string;
      /** Graph's own message. */
      graphMessage?: string;
      retryAfterMs?: number;
      requestId?: string;
      /** The system error code when no answer came (ECONNREFUSED, …). */
      network?: string;
      timedOut?: boolean;
      /** Set when the message is over Graph's request limit (refused before sending). */
      tooLarge?: { bytes: number };
      /** The address sent as, when it is not the connected mailbox. */
      sendAs?: string;
      mailbox: string;
      url: string;
    },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'GraphRequestError';
  }
}

/** Longest pause a Retry-After may ask for before the mail is looked at again. */
const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;
/** When Graph throttles without saying how long (Retry-After missing). */
const DEFAULT_THROTTLE_MS = 60_000;

const MB = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;

function said(e: GraphRequestError): string {
  const { status, code, graphMessage, requestId } = e.facts;
  const what = [code, graphMessage].filter(Boolean).join(': ');
  return `Microsoft Graph answered ${status}${what ? ` (${what})` : ''}${requestId ? `, request-id ${requestId}` : ''}.`;
}

export function classifyGraphError(e: GraphRequestError): DeliveryDecision {
  const { status, code = '', mailbox, sendAs } = e.facts;
  const withStatus = (d: DeliveryDecision): DeliveryDecision => (status ? { ...d, responseCode: status } : d);
  if (e.facts.tooLarge) {
    const bytes = e.facts.tooLarge.bytes;
    return {
      action: 'fail',
      failureType: 'too_large',
      reason: `The message is ${MB(bytes)} as MIME, ${MB(Math.ceil(bytes / 3) * 4)} once encoded: Microsoft Graph accepts at most 4 MB per sendMail request (about 3 MB of message), and Juniper does not upload larger ones through a draft. Send smaller attachments (or links to them), or send it through a server with transport smtp.`,
    };
  }
  if (status === 0) {
    if (e.facts.timedOut) {
      return { action: 'retry', failureType: 'timeout', reason: `${e.message} (${e.facts.url}). It is retried later; if Graph had accepted it meanwhile, it may arrive twice.` };
    }
    return { action: 'retry', failureType: 'connection', reason: `${e.message} (${e.facts.url}). Check this machine's network and the microsoft_outlook.graph_endpoint parameter; it is retried later.` };
  }
  const retryLater = (failureType: DeliveryDecision['failureType'], fallbackMs?: number): DeliveryDecision => {
    const wait = e.facts.retryAfterMs ?? fallbackMs;
    return withStatus({
      action: 'retry',
      failureType,
      reason: `${said(e)} It is retried ${wait !== undefined ? `in ${Math.round(Math.min(wait, MAX_RETRY_AFTER_MS) / 1000)} s` : 'later'}.`,
      ...(wait !== undefined ? { retryAfterMs: Math.min(wait, MAX_RETRY_AFTER_MS) } : {}),
    });
  };
  if (status === 429 || /Throttl|QuotaExceeded|ExceededMessageLimit|SubmissionQuota/i.test(code)) return retryLater('quota', DEFAULT_THROTTLE_MS);
  if (status >= 500) return retryLater('graph_temporary');
  if (status === 408) return retryLater('timeout');
  if (status === 401) {
    return withStatus({
      action: 'wait',
      failureType: 'oauth_token',
      reason: `${said(e)} Microsoft Graph refused the Outlook connection's token even after a fresh one. Mails wait: reconnect the Outlook account on the server form (the consent must include Mail.Send).`,
    });
  }
  if (status === 413 || code === 'ErrorMessageSizeExceeded') {
    return withStatus({ action: 'fail', failureType: 'too_large', reason: `${said(e)} The message is too large for the mailbox's send limit. Send smaller attachments (or links to them).` });
  }
  if (code === 'ErrorMessageSubmissionBlocked') {
    return withStatus({
      action: 'wait',
      failureType: 'auth',
      reason: `${said(e)} Exchange has blocked ${mailbox} from sending, usually after it sent what looked like spam: an admin can release it in the Microsoft Defender portal (Email & collaboration → Review → Restricted entities). Mails wait until then.`,
    });
  }
  // The codes of the account's own rights come before send-as: a consent without Mail.Send fails every mail, sent
  // as anyone, and must make them wait for a reconnect rather than fail them as refused senders.
  if (code === 'ErrorAccessDenied' || code === 'MailboxNotEnabledForRESTAPI' || (status === 403 && !sendAs && code !== 'ErrorSendAsDenied')) {
    return withStatus({
      action: 'wait',
      failureType: 'auth',
      reason: `${said(e)} Microsoft Graph does not let ${mailbox} send${sendAs ? ` as ${sendAs}` : ''}: the consent may lack Mail.Send${sendAs ? ' or Mail.Send.Shared (sending as another mailbox also needs Send As rights on it in Exchange)' : ''} (add it to the app registration's API permissions and reconnect the Outlook account), or the mailbox is not an Exchange Online mailbox with a licence. Mails wait until it is fixed.`,
    });
  }
  if (code === 'ErrorSendAsDenied' || (sendAs && (status === 403 || status === 404))) {
    return withStatus({
      action: 'fail',
      failureType: 'sender_refused',
      reason: `${said(e)} The connected mailbox ${mailbox} may not send as ${sendAs ?? 'this From address'}: in Exchange, grant ${mailbox} Send As (or Full Access) on ${sendAs ?? 'that address'} and make sure the consent includes Mail.Send.Shared (reconnect the Outlook account), or send from ${mailbox} itself.`,
    });
  }
  if (/InvalidRecipient|InvalidAddress|ErrorInvalidUser/i.test(code)) {
    return withStatus({ action: 'fail', failureType: 'invalid_address', reason: `${said(e)} Check the recipient addresses for typos.` });
  }
  return withStatus({ action: 'fail', failureType: 'rejected', reason: `${said(e)} Microsoft Graph refused the message.` });
}
