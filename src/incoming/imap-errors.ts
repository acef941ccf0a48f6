// What an IMAP failure means for the person looking at the server form: which step failed, the server's own
// words, and what to check. Pure: facts in (as imapflow and Node report them), a sentence out.
import { AppError } from '../lib/errors.js';

export type ImapStage = 'credentials' | 'connect' | 'tls' | 'auth' | 'folder' | 'fetch';

export interface ImapErrorFacts {
  message: string;
  code: string | undefined;
  /** The server's reply text (tagged NO/BAD response), when there was one. */
  serverReply: string | undefined;
  authenticationFailed: boolean;
  mailboxMissing: boolean;
}

export interface ImapContext {
  host: string;
  port: number;
  security: 'none' | 'starttls' | 'ssl';
  auth: 'password' | 'outlook';
  user: string;
  folder: string;
}

export function imapErrorFacts(err: unknown): ImapErrorFacts {
  const e = (err ?? {}) as { message?: unknown; code?: unknown; response?: unknown; responseText?: unknown; authenticationFailed?: unknown; mailboxMissing?: unknown };
  const text = (v: unknown) => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);
  // imapflow's `response` is the whole tagged line ("2 NO [AUTHENTICATIONFAILED] ..."): drop the tag.
  const response = text(e.response)?.replace(/^\S+\s+(?=(NO|BAD|BYE)\b)/, '');
  return {
    message: text(e.message) ?? String(err),
    code: text(e.code),
    serverReply: response ?? text(e.responseText),
    authenticationFailed: e.authenticationFailed === true,
    mailboxMissing: e.mailboxMissing === true,
  };
}

const CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
const UNREACHABLE_CODES = new Set(['CONNECT_TIMEOUT', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']);
/** imapflow's codes for a connection that was there and went away (server restart, idle kill, network cut). */
const DROPPED_CODES = new Set(['NoConnection', 'EConnectionClosed', 'ECONNRESET', 'EPIPE', 'ETIMEOUT', 'SOCKET_TIMEOUT']);

/** imapflow's parser limits (imap-reader.ts parserLimits): one response beyond them closes the connection unread. */
const PARSER_LIMIT_CODES = new Set(['LiteralTooLarge', 'ResponseTooLarge', 'LineTooLarge', 'TooManyTokens']);

export const isParserLimit = (err: unknown): boolean => PARSER_LIMIT_CODES.has(String((err as { code?: unknown } | undefined)?.code));

/** The step that failed and a message saying what to check. `attempted` is the step that was running. */
export function describeImapFailure(facts: ImapErrorFacts, attempted: ImapStage, ctx: ImapContext): { stage: ImapStage; message: string } {
  const where = `${ctx.host}:${ctx.port}`;
  const said = facts.serverReply ? `"${facts.serverReply}"` : facts.message;
  if (facts.authenticationFailed) {
    return {
      stage: 'auth',
      message:
        ctx.auth === 'outlook'
          ? `Authentication refused for ${ctx.user}: the server did not accept the OAuth2 access token (${said}). Reconnect the Outlook account, check that the connected account is ${ctx.user} or has Full Access to it, and that IMAP is enabled for the mailbox (Microsoft 365 admin center: the user's Mail settings, Email apps).`
          : `Authentication refused for ${ctx.user}: ${said}. Check the username (usually the full email address) and the password; Microsoft 365 no longer accepts passwords over IMAP, use Outlook authentication there.`,
    };
  }
  const code = facts.code ?? '';
  if (PARSER_LIMIT_CODES.has(code)) {
    // Before the folder branch: a SELECT answered with a huge response says nothing about the folder's name.
    return {
      stage: attempted,
      message: `${where} sent a response larger than Juniper accepts (${facts.message}), so the connection was closed without reading it. While fetching, the limit is the incoming size cap (system parameter mail.incoming.max_message_bytes) plus 2 MB of framing; Test & Confirm, which reads no message, accepts 2 MB. An ordinary server never answers ${attempted === 'fetch' ? 'a FETCH within the cap' : 'a login or SELECT'} like this: check that the host and port are those of the mail provider's IMAP server.`,
    };
  }
  if (CERTIFICATE_CODES.has(code)) {
    return {
      stage: 'tls',
      message: `The TLS certificate of ${ctx.host} was not accepted (${facts.message}). Check that the host name is the one on the certificate; for a private server with a self-signed certificate, allow self-signed certificates on this server.`,
    };
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/i.test(facts.message)) {
    return { stage: 'tls', message: `${where} did not answer with TLS: the port does not speak SSL/TLS from the first byte. Choose STARTTLS (usually port 143), or the SSL/TLS port (usually 993).` };
  }
  if (code === 'GREETING_TIMEOUT' && ctx.security !== 'ssl') {
    return { stage: 'tls', message: `${where} sent no IMAP greeting: the port probably expects SSL/TLS from the first byte. Choose SSL/TLS (usually port 993).` };
  }
  if (/STARTTLS/i.test(facts.message) && ctx.security === 'starttls') {
    return { stage: 'tls', message: `${where} did not offer STARTTLS (${facts.message}). Choose SSL/TLS on port 993, or ask the provider which encryption it offers.` };
  }
  if (code === 'ECONNREFUSED') {
    return { stage: 'connect', message: `Nothing accepts connections at ${where}. Check the host and the port (IMAP: 993 for SSL/TLS, 143 for STARTTLS).` };
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return { stage: 'connect', message: `The host name ${ctx.host} could not be resolved (${code}). Check its spelling, e.g. outlook.office365.com.` };
  }
  if (attempted === 'fetch' && DROPPED_CODES.has(code)) {
    return {
      stage: 'fetch',
      message: `The connection to ${where} was lost while fetching (${facts.message}). What was stored before stays stored and nothing else was marked read; the next fetch resumes where this one stopped. If it keeps happening, check the server's connection limits and the network.`,
    };
  }
  if (UNREACHABLE_CODES.has(code) || code === 'GREETING_TIMEOUT') {
    return { stage: 'connect', message: `No working connection to ${where} (${facts.message}). A firewall may block the port, or the host or port is wrong.` };
  }
  if (facts.mailboxMissing || attempted === 'folder') {
    return {
      stage: 'folder',
      message: `The folder "${ctx.folder}" could not be opened: ${said}. Folder names are case-sensitive (except INBOX), and subfolders use the server's separator, e.g. INBOX/Orders or INBOX.Orders.`,
    };
  }
  return { stage: attempted, message: `The IMAP server failed at ${attempted}: ${said}.` };
}

/** An IMAP failure as Juniper reports it: the step, the server's reply, and the message from describeImapFailure. */
export class ImapFailure extends AppError {
  readonly stage: ImapStage;
  readonly serverReply: string | undefined;

  constructor(stage: ImapStage, message: string, options: { serverReply?: string; cause?: unknown } = {}) {
    super(stage === 'auth' ? 'JUNIPER_ERR_IMAP_AUTH' : 'JUNIPER_ERR_IMAP', message, { cause: options.cause, details: { stage, serverReply: options.serverReply } });
    this.stage = stage;
    this.serverReply = options.serverReply;
  }
}

export function toImapFailure(err: unknown, attempted: ImapStage, ctx: ImapContext): ImapFailure {
  if (err instanceof ImapFailure) return err;
  const facts = imapErrorFacts(err);
  const { stage, message } = describeImapFailure(facts, attempted, ctx);
  return new ImapFailure(stage, message, { serverReply: facts.serverReply, cause: err });
}
