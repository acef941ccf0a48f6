// The seam between the dispatcher and the SMTP library: the dispatcher speaks these types only, so nodemailer
// (smtp-transport.ts) can be replaced, or faked in a test, without touching the queue.
import type { Security } from '../db/schema.js';

export interface SmtpEndpoint {
  serverId: number;
  name: string;
  host: string;
  port: number;
  security: Security;
  /** Accept any certificate: for tests and private servers only. */
  allowSelfSigned: boolean;
}

export type SmtpCredentials = { kind: 'none' } | { kind: 'password'; user: string; pass: string } | { kind: 'oauth2'; user: string };

/**
 * Gives an OAuth2 access token for the user; renew=true after the server refused the previous one.
 * expiresAt is epoch milliseconds. A rejection carrying `transient: true` (on the error, or in an AppError's
 * details) means trying later may work (identity provider unreachable or answering 5xx); any other rejection
 * means someone must act (reconnect the account, fix the client secret), and mails wait for them.
 */
export type AccessTokenSource = (renew: boolean) => Promise<{ accessToken: string; expiresAt: number }>;

/**
 * Bytes read in pieces while the transport writes them (a large attachment), so that no buffer of the whole
 * stays in memory for the length of a send. `pieces()` reads them again from the start at each call (a send
 * tried again on a new connection).
 */
export interface ByteSource {
  readonly size: number;
  pieces(): AsyncIterable<Buffer>;
}

export interface OutgoingAttachment {
  filename: string;
  contentType: string;
  content: Buffer | ByteSource;
  /** Set for inline parts that the HTML refers to as cid:… */
  contentId?: string | null;
}

export interface OutgoingMessage {
  /** Written as the Message-ID header exactly (angle brackets added when missing), so retries keep it. */
  messageId: string;
  from: string;
  to: string[];
  cc: string[];
  /** Never written into the headers: Bcc recipients receive the mail through the envelope only. */
  bcc: string[];
  replyTo?: string | null;
  subject: string;
  text?: string | null;
  html?: string | null;
  headers?: Record<string, string>;
  attachments: OutgoingAttachment[];
  /** A complete RFC 5322 message, sent byte for byte instead of building one from the fields above. */
  raw?: Buffer | null;
}

/** The SMTP envelope: MAIL FROM and RCPT TO. `to` holds every recipient, Bcc included. */
export interface Envelope {
  from: string;
  to: string[];
}

export interface SendResult {
  accepted: string[];
  /**
   * Recipients refused at RCPT TO while others were accepted, with the server's reply (and its code) for each:
   * 5xx refused for good, 4xx deferred, to be tried again (partial-delivery.ts splitRefusals).
   */
  rejected: { address: string; response: string; responseCode?: number }[];
  /** The server's reply to the end of DATA (e.g. "250 2.0.0 OK <id> [Hostname=…]"). */
  response: string;
}

export interface SendOptions {
  /**
   * Stops the send when it aborts (the dispatcher giving a stalled server's mail back to the queue): the SMTP
   * transport then closes the connection delivering it and throws JUNIPER_ERR_SEND_CANCELLED. Graph's requests
   * end within their own timeout and do not watch it.
   */
  signal?: AbortSignal;
}

export interface MailTransport {
  /**
   * Sends one message. Throws the library's error with its SMTP facts (code, responseCode, response, command)
   * when the server refused the message or every recipient; classifySendError() turns it into a decision.
   */
  send(message: OutgoingMessage, envelope: Envelope, options?: SendOptions): Promise<SendResult>;
  /** Closes idle connections at once and busy ones after their message. */
  close(): void;
}
