// What a failed send means for the mail (DESIGN §6), as a pure function like EmailEngine's delivery-error:
// retry later (the server or the network may recover), fail (the server refused this mail for good: retrying
// would only repeat the refusal), or wait (someone has to fix the server's credentials or tenant settings; the
// mail must not be lost meanwhile). Reasons are for people: what failed, the server's own words, what to do.
// Input is any thrown value; the facts read are those nodemailer puts on its errors.
import type { OutgoingAuth } from '../db/schema.js';
import { MAX_ATTEMPTS } from '../lib/backoff.js';
import { isAppError } from '../lib/errors.js';
import { explainOAuthError, oauthErrorDetails } from '../oauth/oauth-errors.js';
import { classifyGraphError, GraphRequestError } from './graph-failure.js';

export type DeliveryAction = 'retry' | 'fail' | 'wait';

export type FailureType =
  | 'smtp_temporary'
  | 'graph_temporary'
  | 'connection'
  | 'dns'
  | 'tls'
  | 'timeout'
  | 'quota'
  | 'oauth_transient'
  | 'rejected'
  | 'invalid_address'
  | 'sender_refused'
  | 'too_large'
  | 'protocol'
  | 'auth'
  | 'smtp_auth_disabled'
  | 'oauth_token'
  | 'oauth_app'
  | 'crashed'
  | 'host_not_allowed'
  | 'port_not_allowed'
  | 'internal';

export interface DeliveryDecision {
  action: DeliveryAction;
  failureType: FailureType;
  reason: string;
  responseCode?: number;
  /** When the server said how long to wait (Graph's Retry-After): the next try is not before that. */
  retryAfterMs?: number;
}

export interface ClassifyContext {
  /** How the server authenticates: decides what an authentication refusal asks of the admin. */
  auth: OutgoingAuth;
  /** Named in reasons about connecting ("nothing listens on host:port"). */
  endpoint?: { host: string; port: number };
}

/** The facts nodemailer attaches to its errors, read defensively from any thrown value. */
export interface SmtpErrorFacts {
  message: string;
  code?: string;
  /** The system error code under nodemailer's own (ECONNREFUSED under ESOCKET, ENOTFOUND under EDNS). */
  originalCode?: string;
  responseCode?: number;
  /** The server's reply line(s), e.g. "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found". */
  response?: string;
  /** The SMTP command that was answered: "MAIL FROM", "RCPT TO", "DATA", "AUTH XOAUTH2", "CONN", … */
  command?: string;
  timeoutType?: string;
}

export function smtpErrorFacts(err: unknown): SmtpErrorFacts {
  if (typeof err !== 'object' || err === null) return { message: String(err) };
  const e = err as Record<string, unknown>;
  const text = (key: string): string | undefined => (typeof e[key] === 'string' && e[key] !== '' ? e[key] : undefined);
  const facts: SmtpErrorFacts = { message: text('message') ?? Object.prototype.toString.call(err) };
  const code = text('code');
  const originalCode = text('originalCode');
  const response = text('response');
  const command = text('command');
  const timeoutType = text('timeoutType');
  if (code) facts.code = code;
  if (originalCode) facts.originalCode = originalCode;
  if (typeof e.responseCode === 'number' && e.responseCode > 0) facts.responseCode = e.responseCode;
  if (response) facts.response = response.trim();
  if (command) facts.command = command;
  if (timeoutType) facts.timeoutType = timeoutType;
  return facts;
}

/** "5.7.139" from "535 5.7.139 Authentication unsuccessful, …". */
export function enhancedStatus(response: string | undefined): string | undefined {
  return /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b/.exec(response ?? '')?.[1];
}

const where = (endpoint: ClassifyContext['endpoint']): string => (endpoint ? `${endpoint.host}:${endpoint.port}` : 'the server');
const replied = (facts: SmtpErrorFacts): string => (facts.response ? `The server answered: "${facts.response}".` : `(${facts.message})`);

const TLS_CODES = /^(ETLS|ERR_SSL_|ERR_TLS_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_(GET|VERIFY)_|CERT_|ERR_OSSL_)/;

function isTlsProblem(facts: SmtpErrorFacts): boolean {
  return (
    facts.code === 'ETLS' ||
    TLS_CODES.test(facts.originalCode ?? '') ||
    /SSL routines|certificate|TLS handshake|initiating TLS/i.test(facts.message)
  );
}

/**
 * A problem of reaching the server (DNS, TCP, TLS, timeouts), described for people; undefined when the
 * error is something else. Shared by the dispatcher's decision and Test Connection's message.
 */
export function describeConnectionProblem(
  facts: SmtpErrorFacts,
  endpoint?: ClassifyContext['endpoint'],
): { failureType: 'connection' | 'dns' | 'tls' | 'timeout'; reason: string } | undefined {
  const at = where(endpoint);
  const host = endpoint?.host ?? 'the server';
  const sys = facts.originalCode ?? '';
  if (facts.code === 'EDNS') {
    const temporary = sys === 'EAI_AGAIN' || sys === 'ETIMEOUT' || sys === 'ESERVFAIL';
    return {
      failureType: 'dns',
      reason: temporary
        ? `The name ${host} could not be looked up right now (${sys}): the DNS server did not answer. Check the network and DNS settings of this machine.`
        : `The host name ${host} does not exist (${sys || facts.message}). Check the host name for typos (for Microsoft 365: smtp.office365.com).`,
    };
  }
  if (isTlsProblem(facts)) {
    if (/SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(sys) || /self[- ]signed/i.test(facts.message)) {
      return {
        failureType: 'tls',
        reason: `The TLS certificate of ${at} is self-signed or from an unknown authority (${sys || facts.message}). For a public server this may be an interception proxy; for a private server you trust, enable "Allow self-signed" (only for private servers).`,
      };
    }
    if (sys === 'ERR_TLS_CERT_ALTNAME_INVALID' || /altname|does not match certificate/i.test(facts.message)) {
      return { failureType: 'tls', reason: `The TLS certificate of ${at} is not valid for the name ${host} (${facts.message}). Use the host name the certificate was issued for.` };
    }
    if (sys === 'CERT_HAS_EXPIRED' || /expired/i.test(facts.message)) {
      return { failureType: 'tls', reason: `The TLS certificate of ${at} has expired (${facts.message}). The server's administrator must renew it.` };
    }
    if (/WRONG_VERSION_NUMBER|wrong version number|packet length too long|unknown protocol/i.test(`${sys} ${facts.message}`)) {
      return {
        failureType: 'tls',
        reason: `${at} does not speak TLS from the first byte: SSL is selected, but this port expects STARTTLS or plain SMTP. Choose STARTTLS (port 587) or use the SSL port (465).`,
      };
    }
    if (facts.command === 'STARTTLS' || facts.code === 'ETLS') {
      return {
        failureType: 'tls',
        reason: `STARTTLS failed with ${at}: ${facts.response ? `the server answered "${facts.response}"` : facts.message}. If the port expects TLS from the start (465), choose SSL; if the server offers no encryption, choose None only on a trusted network.`,
      };
    }
    return { failureType: 'tls', reason: `The TLS connection to ${at} failed (${facts.message}). Check the security setting (STARTTLS for 587, SSL for 465).` };
  }
  if (facts.code === 'ETIMEDOUT' || sys === 'ETIMEDOUT') {
    switch (facts.timeoutType) {
      case 'GREETING_TIMEOUT':
        return {
          failureType: 'timeout',
          reason: `Connected to ${at}, but the server sent no SMTP greeting in time. If this port expects TLS from the start (465), choose SSL instead of STARTTLS.`,
        };
      case 'UPGRADE_TIMEOUT':
        return { failureType: 'timeout', reason: `The TLS handshake with ${at} did not finish in time. Check the security setting and the network.` };
      case 'SOCKET_TIMEOUT':
        return { failureType: 'timeout', reason: `${at} stopped answering in the middle of the session. It is retried later.` };
      default:
        return {
          failureType: 'timeout',
          reason: `${at} did not answer the connection in time: a firewall may drop the traffic, or the host or port is wrong (587 for STARTTLS, 465 for SSL).`,
        };
    }
  }
  if (sys === 'ECONNREFUSED') {
    return { failureType: 'connection', reason: `Nothing listens on ${at} (connection refused). Check the port (587 for STARTTLS, 465 for SSL) and that the server is running.` };
  }
  if (sys === 'EHOSTUNREACH' || sys === 'ENETUNREACH') {
    return { failureType: 'connection', reason: `${at} cannot be reached from this machine (${sys}). Check the network route and firewall.` };
  }
  if (facts.code === 'ECONNECTION' || facts.code === 'ESOCKET' || /^(ECONNRESET|EPIPE|ECONNABORTED)$/.test(sys)) {
    return {
      failureType: 'connection',
      reason: `The connection to ${at} was closed unexpectedly (${sys || facts.message})${facts.response ? `; last reply: "${facts.response}"` : ''}. It is retried later.`,
    };
  }
  return undefined;
}

/** How to allow SMTP AUTH in Microsoft 365, for every reply 535 5.7.139. */
export const SMTP_AUTH_HOWTO =
  'Enable it for the mailbox in the Microsoft 365 admin center → Users → Active users → select the mailbox → Mail → Manage email apps → tick "Authenticated SMTP", ' +
  'or in Exchange Online PowerShell: Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false ' +
  '(tenant-wide: Set-TransportConfig -SmtpClientAuthenticationDisabled $false). ' +
  'Security defaults in Microsoft Entra ID block SMTP AUTH even when it is enabled: turn them off or use Conditional Access instead. Changes can take an hour to apply.';

function authRefusal(facts: SmtpErrorFacts, context: ClassifyContext): DeliveryDecision {
  const responseCode = facts.responseCode;
  const withCode = (d: Omit<DeliveryDecision, 'responseCode'>): DeliveryDecision => (responseCode ? { ...d, responseCode } : d);
  if (enhancedStatus(facts.response) === '5.7.139') {
    if (/basic authentication is disabled/i.test(facts.response ?? '')) {
      return withCode({
        action: 'wait',
        failureType: 'smtp_auth_disabled',
        reason: `Microsoft 365 no longer accepts a password for this mailbox. ${replied(facts)} Switch the server's authentication to Outlook (OAuth2) and connect the account; mails wait until then.`,
      });
    }
    return withCode({
      action: 'wait',
      failureType: 'smtp_auth_disabled',
      reason: `Microsoft 365 refused the login because SMTP AUTH is disabled for the tenant or the mailbox, or blocked by a security policy. ${replied(facts)} Mails wait until it is allowed${context.auth === 'outlook' ? ", or set the server's Transport to Automatic or Microsoft Graph, which sends without SMTP AUTH through the same Outlook connection" : ''}. ${SMTP_AUTH_HOWTO}`,
    });
  }
  if (responseCode === 538 || /encryption required/i.test(facts.response ?? '')) {
    return withCode({
      action: 'wait',
      failureType: 'auth',
      reason: `The server allows authentication only over an encrypted connection. ${replied(facts)} Choose STARTTLS (port 587) or SSL (port 465); mails wait until the server is fixed.`,
    });
  }
  const what =
    context.auth === 'outlook'
      ? 'The server refused the OAuth2 access token of the connected Outlook account. Mails wait: reconnect the Outlook account on the server form, check that the connected account is the mailbox\'s user (or has Send As rights on it) and that "Authenticated SMTP" is enabled for the mailbox.'
      : context.auth === 'password'
        ? 'The server refused the username and password. Mails wait: check the username (usually the full email address) and the password on the server form; for Microsoft 365 prefer Outlook (OAuth2) authentication, as Microsoft is retiring passwords for SMTP.'
        : 'The server requires authentication, but this server is set to no authentication. Mails wait: choose Password or Outlook authentication and give the account.';
  return withCode({ action: 'wait', failureType: 'auth', reason: `${what} ${replied(facts)}` });
}

const isQuota = (facts: SmtpErrorFacts): boolean =>
  /SubmissionQuotaExceeded|quota exceeded|sending (quota|limit)|rate limit|thread limit|too many messages/i.test(facts.response ?? '') ||
  enhancedStatus(facts.response) === '5.4.5';

function isTokenUnavailable(err: unknown): boolean {
  return isAppError(err) && err.code === 'JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE';
}

/**
 * A token failure of the Azure app itself (the client secret wrong or expired, the app unknown, no credentials
 * set): reconnecting the account cannot help, so the reason sends the admin to Settings, where saving the
 * credentials releases these mails (failure type oauth_app, Settings' credentials hook). Null for any other cause.
 */
function appLevelTokenFailure(cause: unknown): DeliveryDecision | null {
  const fix = 'This is a problem of the Azure app, not of this server\'s account: reconnecting does not help.';
  const waits = 'Mails wait, and go out as soon as the Outlook Credentials are saved in Settings.';
  if (isAppError(cause) && cause.code === 'JUNIPER_ERR_OUTLOOK_CREDENTIALS') {
    return { action: 'wait', failureType: 'oauth_app', reason: `No Outlook access token can be made: the Outlook app's Client ID or Client Secret is not set. ${fix} Enter them in Settings → Outlook Credentials. ${waits}` };
  }
  const details = oauthErrorDetails(cause);
  if (details?.errorClass !== 'app') return null;
  const { explanation, action } = explainOAuthError(details.aadsts, details.oauthError, { description: details.description });
  const code = details.aadsts !== null ? `AADSTS${details.aadsts}` : (details.oauthError ?? `HTTP ${details.httpStatus ?? 'error'}`);
  return {
    action: 'wait',
    failureType: 'oauth_app',
    reason: `Microsoft refused the Outlook app's credentials (${code}): ${explanation} ${fix} ${action.replace(/^In Settings, /, 'In Settings → Outlook Credentials, ')} ${waits}`,
  };
}

export function classifySendError(err: unknown, context: ClassifyContext): DeliveryDecision {
  if (err instanceof GraphRequestError) return classifyGraphError(err);
  if (isAppError(err) && err.details?.graphUnsendable === true) return { action: 'fail', failureType: 'rejected', reason: err.message };
  if (isTokenUnavailable(err) && isAppError(err)) {
    if (err.details?.transient === true) return { action: 'retry', failureType: 'oauth_transient', reason: `${err.message} It is retried later.` };
    return appLevelTokenFailure(err.cause) ?? { action: 'wait', failureType: 'oauth_token', reason: `${err.message} Mails wait until the Outlook account is reconnected on the server form.` };
  }
  if (isAppError(err) && (err.code === 'JUNIPER_ERR_SEND_DEADLINE' || err.code === 'JUNIPER_ERR_SEND_CANCELLED')) {
    // The server held the attempt past its deadline (send-deadline.ts): retried like a timeout. When the whole
    // message was written the server may have delivered it, as with a lost "250": at least once, the reason says so.
    return { action: 'retry', failureType: 'timeout', reason: err.message };
  }
  if (isAppError(err) && err.code === 'JUNIPER_ERR_HOST_NOT_ALLOWED') {
    // The address policy refused the host before any connection: retrying cannot help, an admin's decision can.
    return { action: 'wait', failureType: 'host_not_allowed', reason: `${err.message} Mails wait until an admin allows the host or the server is changed.` };
  }
  if (isAppError(err) && err.code === 'JUNIPER_ERR_PORT_NOT_ALLOWED') {
    // Likewise for the port policy: no connection was made, and the mail is the user's to keep until the port is allowed or changed.
    return { action: 'wait', failureType: 'port_not_allowed', reason: `${err.message} Mails wait until an admin allows the port or the server is changed.` };
  }
  const facts = smtpErrorFacts(err);
  const code = facts.responseCode;
  const status = enhancedStatus(facts.response);
  const decision = (action: DeliveryAction, failureType: FailureType, reason: string): DeliveryDecision =>
    code ? { action, failureType, reason, responseCode: code } : { action, failureType, reason };

  if (facts.code === 'EOAUTH2') {
    return decision('wait', 'oauth_token', `No OAuth2 access token could be made (${facts.message}). Mails wait until the Outlook account is reconnected on the server form.`);
  }

  // A refused or failed STARTTLS is a TLS problem whatever the reply code: the mail was never offered.
  if (facts.command === 'STARTTLS' || facts.code === 'ETLS') {
    const tls = describeConnectionProblem({ ...facts, code: 'ETLS' }, context.endpoint);
    if (tls) return decision('retry', tls.failureType, tls.reason);
  }

  if (code && code >= 400 && code < 600) {
    const isAuthStep = facts.code === 'EAUTH' || (facts.command ?? '').startsWith('AUTH');
    if (code < 500) {
      if (code === 432 || isQuota(facts)) {
        return decision('retry', 'quota', `The server is temporarily limiting this sender. ${replied(facts)} It is retried later.`);
      }
      const what = isAuthStep ? 'Authentication failed temporarily.' : `The server deferred the mail at ${facts.command ?? 'SMTP'}.`;
      return decision('retry', 'smtp_temporary', `${what} ${replied(facts)} It is retried later.`);
    }
    if (isAuthStep) return authRefusal(facts, context);
    if (code === 530) {
      if (/STARTTLS/i.test(facts.response ?? '')) {
        return decision('wait', 'tls', `The server requires STARTTLS before accepting mail. ${replied(facts)} Choose STARTTLS as security; mails wait until the server is fixed.`);
      }
      return authRefusal(facts, context);
    }
    if (code === 503) {
      // RFC 5321's "bad sequence of commands" says the session was out of step, not that the mail is bad.
      return decision('retry', 'smtp_temporary', `The server found the SMTP session out of order. ${replied(facts)} It is retried on a new connection.`);
    }
    if (isQuota(facts)) {
      // Microsoft answers a daily sending limit with 5xx, but it lifts within 24 hours: failing would lose mail.
      return decision('retry', 'quota', `The mailbox reached its sending limit. ${replied(facts)} It is retried later; the limit resets within a day.`);
    }
    // 552 is "exceeded storage allocation": the message's size, unless 5.2.2 says the mailbox is full.
    if (status === '5.3.4' || status === '5.2.3' || (code === 552 && status !== '5.2.2')) {
      return decision('fail', 'too_large', `The message is too large for the server. ${replied(facts)} Send smaller attachments (or links to them).`);
    }
    if (facts.command === 'MAIL FROM' || status === '5.7.60' || /SendAsDenied/i.test(facts.response ?? '')) {
      return decision(
        'fail',
        'sender_refused',
        `The server refused the sender address. ${replied(facts)} Check the server's From filter and that the authenticated account may send as this address (Send As rights, or the mailbox's own address).`,
      );
    }
    if (facts.command === 'RCPT TO') {
      const badAddress = code === 553 || code === 501 || (status ?? '').startsWith('5.1.');
      return badAddress
        ? decision('fail', 'invalid_address', `The server refused the recipient address(es). ${replied(facts)} Check the addresses for typos.`)
        : decision('fail', 'rejected', `The server refused every recipient. ${replied(facts)}`);
    }
    if ((status ?? '').startsWith('5.5.') || code === 500 || code === 502 || code === 504) {
      const command = facts.command ? ` ${facts.command}` : '';
      return decision('fail', 'protocol', `The server did not accept the SMTP command${command}. ${replied(facts)}`);
    }
    return decision('fail', 'rejected', `The server refused the message. ${replied(facts)}`);
  }

  if (facts.code === 'EENVELOPE') {
    return decision('fail', 'invalid_address', `The envelope is not valid: ${facts.message}. Check the sender and recipient addresses.`);
  }
  if (facts.code === 'EMESSAGE' && /size/i.test(facts.message)) {
    return decision('fail', 'too_large', `The message is larger than the server accepts (${facts.message}). Send smaller attachments (or links to them).`);
  }
  if (facts.code === 'EMAXRECIPIENTS') {
    return decision('fail', 'rejected', `The message has too many recipients (${facts.message}).`);
  }
  if (facts.code === 'ENOAUTH' || facts.code === 'EAUTH') {
    return authRefusal(facts, context);
  }
  const connection = describeConnectionProblem(facts, context.endpoint);
  if (connection) return decision('retry', connection.failureType, connection.reason);
  if (facts.code === 'EPROTOCOL') {
    return decision('retry', 'connection', `${where(context.endpoint)} answered something that is not SMTP (${facts.message}). Check host and port; it is retried later.`);
  }
  // No SMTP facts at all: a bug or an unexpected library failure. Retrying (bounded by MAX_ATTEMPTS) keeps the mail.
  return decision('retry', 'internal', `Sending failed: ${facts.message}. It is retried later.`);
}

const crashedText = (stops: string): string =>
  `The worker sending this mail stopped without a result in ${stops} of its ${MAX_ATTEMPTS} attempts (no acceptance, no refusal): ` +
  'the mail itself may crash the sender (for example a huge or malformed attachment exhausting its memory). ' +
  "Check the worker's log and memory limit around the time of its last attempt, then retry the mail.";

/**
 * The reason of a mail failed as `crashed` (its lease expired without an outcome once it had used every
 * attempt); `stops` is how many of its attempts ended that way.
 */
export function crashedReason(stops: number): string {
  return crashedText(String(stops));
}

/** crashedReason() around the count, for the claim statement that writes it in SQL. */
export function crashedReasonParts(): [string, string] {
  const [before = '', after = ''] = crashedText('\u0000').split('\u0000');
  return [before, after];
}
