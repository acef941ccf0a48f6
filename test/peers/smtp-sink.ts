// An in-process SMTP server (npm smtp-server) that keeps every accepted message, for tests of sending.
// Shaped like Microsoft 365's smtp.office365.com:587 by default: STARTTLS, then AUTH XOAUTH2 (AUTH before
// STARTTLS is refused with 538), each token checked at the identity server's /userinfo, whose email must
// equal the SMTP user and whose aud must be Exchange Online's (a Microsoft Graph token is refused like a bad
// one). `setAuthDisabled` turns SMTP AUTH off for the tenant or some mailboxes, as an Exchange admin does
// (SmtpClientAuthenticationDisabled): AUTH then gets Microsoft's 535 5.7.139. Tests script its answers (451 twice then 250, 550 for one recipient, a refused
// sender) with a behaviour, and read what arrived from `messages`.
// Two fixed delays to know: smtp-server waits 100 ms before its greeting on every connection (early-talker
// check), and nodemailer's pool waits 100 ms after retiring a connection.
import { SMTPServer } from 'smtp-server';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerOptions, SMTPServerSession } from 'smtp-server';
import { messageWaiters } from './message-waiters.js';
import { OUTLOOK_AUDIENCE } from './identity-protocol.js';
import { testCertificate } from './tls-certificate.js';

export type SinkAuth = 'xoauth2' | 'password' | 'none';
export type SinkTls = 'starttls' | 'implicit' | 'none';

/** An SMTP reply: code >= 400 refuses (e.g. `{ code: 451, message: '4.3.0 Try again later' }`), below accepts. */
export interface SinkReply {
  code: number;
  message: string;
}

export interface SinkEnvelope {
  from: string;
  to: string[];
  /** The authenticated user, null without AUTH. */
  user: string | null;
}

export interface SinkMessage extends SinkEnvelope {
  raw: Buffer;
  /** Whether the connection was TLS (STARTTLS or implicit) when the message came. */
  secure: boolean;
}

/** Decides the reply at each step; returning undefined accepts. */
export interface SinkBehaviour {
  mailFrom?: (from: string, envelope: SinkEnvelope) => SinkReply | undefined;
  rcptTo?: (to: string, envelope: SinkEnvelope) => SinkReply | undefined;
  data?: (message: SinkMessage) => SinkReply | undefined;
}

/**
 * Exchange Online's answers to AUTH when SMTP AUTH is off (Set-TransportConfig / Set-CASMailbox
 * -SmtpClientAuthenticationDisabled $true), word for word as smtp.office365.com sends them (without the
 * trailing `[server timestamp id]`), for the tenant and for one mailbox.
 */
export const SMTP_AUTH_DISABLED_FOR_TENANT: SinkReply = {
  code: 535,
  message: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.',
};
export const SMTP_AUTH_DISABLED_FOR_MAILBOX: SinkReply = {
  code: 535,
  message: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.',
};

/** SMTP AUTH off: `true` for the whole tenant, a list for those mailboxes only, `false` on. */
export type SinkAuthDisabled = boolean | readonly string[];

export interface SinkRefusal {
  stage: 'auth' | 'mail' | 'rcpt' | 'data';
  address?: string;
  code: number;
  message: string;
}

export interface SinkAuthAttempt {
  method: string;
  user: string;
  ok: boolean;
}

export interface SmtpSinkOptions {
  auth: SinkAuth;
  /** The identity server whose /userinfo checks XOAUTH2 tokens (required for auth 'xoauth2'). */
  identityUrl?: string;
  /** user -> password for auth 'password' (PLAIN and LOGIN). */
  passwords?: Record<string, string>;
  /** Default 'starttls' (as Microsoft 365 on port 587). */
  tls?: SinkTls;
  behaviour?: SinkBehaviour;
  /** Listen port on 127.0.0.1 (default 0: the OS picks one). */
  port?: number;
  /** SMTP AUTH turned off from the start (default false); see setAuthDisabled. */
  authDisabled?: SinkAuthDisabled;
  /** Advertised and enforced SIZE limit in bytes (default 36 MB, as Microsoft 365's 35 MB message limit). */
  size?: number;
  /**
   * Milliseconds added before each reply to DATA (default 0): a server slower than Juniper, so that the number
   * of connections in flight, not CPU, bounds the throughput (the scale-out benchmark uses 20).
   */
  delayMs?: number;
}

export interface SmtpSink {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Accepted messages, in order. */
  readonly messages: readonly SinkMessage[];
  /** Every refusal the behaviour made, in order (a message refused at DATA is not in messages). */
  readonly refusals: readonly SinkRefusal[];
  readonly authAttempts: readonly SinkAuthAttempt[];
  /** Resolves once at least n messages were accepted; rejects after timeoutMs (default 5000). */
  waitFor(n: number, timeoutMs?: number): Promise<SinkMessage[]>;
  /** Replaces the behaviour for the following commands. */
  setBehaviour(behaviour: SinkBehaviour): void;
  /**
   * Turns SMTP AUTH off (true: the tenant, a list: those mailboxes, case-insensitive) or on again (false) for
   * the following AUTH commands: any mechanism then gets SMTP_AUTH_DISABLED_FOR_TENANT or _FOR_MAILBOX, before
   * the token is looked at, logged in `refusals` with stage 'auth' (and in authAttempts as not ok).
   */
  setAuthDisabled(disabled: SinkAuthDisabled): void;
  /**
   * Closes every open session now, as a server's idle timeout does: clients must connect,
   * and so authenticate with a token, again. Returns how many sessions it closed.
   */
  dropConnections(): number;
  stop(): Promise<void>;
}

/**
 * A reply hook that answers the given replies in turn, then accepts: `replySequence(r451, r451)` refuses the
 * first two calls and accepts the rest.
 */
export function replySequence<A extends unknown[]>(...replies: (SinkReply | undefined)[]): (...args: A) => SinkReply | undefined {
  let next = 0;
  return () => replies[next++];
}

function smtpError(reply: SinkReply): Error & { responseCode: number } {
  return Object.assign(new Error(reply.message), { responseCode: reply.code });
}

function envelopeOf(session: SMTPServerSession): SinkEnvelope {
  const from = session.envelope.mailFrom;
  return {
    from: from ? from.address : '',
    to: session.envelope.rcptTo.map((r) => r.address),
    user: typeof session.user === 'string' ? session.user : null,
  };
}

/** Exchange Online accepts a token issued to it (aud) for the mailbox it authenticates (email). */
async function tokenBelongsTo(identityUrl: string, user: string, token: string): Promise<boolean> {
  const response = await fetch(`${identityUrl.replace(/\/$/, '')}/userinfo`, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) return false;
  const claims = (await response.json()) as { email?: unknown; aud?: unknown };
  return typeof claims.email === 'string' && claims.email.toLowerCase() === user.toLowerCase() && claims.aud === OUTLOOK_AUDIENCE;
}

export async function startSmtpSink(opts: SmtpSinkOptions): Promise<SmtpSink> {
  const tls = opts.tls ?? 'starttls';
  if (opts.auth === 'xoauth2' && !opts.identityUrl) throw new Error('startSmtpSink: auth xoauth2 needs identityUrl');
  if (opts.auth === 'password' && !opts.passwords) throw new Error('startSmtpSink: auth password needs passwords');

  let behaviour: SinkBehaviour = opts.behaviour ?? {};
  let authDisabled: SinkAuthDisabled = opts.authDisabled ?? false;
  const disabledReply = (user: string): SinkReply | undefined => {
    if (authDisabled === true) return SMTP_AUTH_DISABLED_FOR_TENANT;
    if (authDisabled === false) return undefined;
    return authDisabled.some((m) => m.toLowerCase() === user.toLowerCase()) ? SMTP_AUTH_DISABLED_FOR_MAILBOX : undefined;
  };
  const messages: SinkMessage[] = [];
  const refusals: SinkRefusal[] = [];
  const authAttempts: SinkAuthAttempt[] = [];
  const waiting = messageWaiters(messages, 'smtp sink');

  const refuse = (stage: SinkRefusal['stage'], reply: SinkReply, address?: string): Error => {
    refusals.push(address === undefined ? { stage, code: reply.code, message: reply.message } : { stage, address, code: reply.code, message: reply.message });
    return smtpError(reply);
  };

  const onAuth = (auth: SMTPServerAuthentication, _session: SMTPServerSession, callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void): void => {
    const user = auth.username ?? '';
    const disabled = disabledReply(user);
    if (disabled) {
      authAttempts.push({ method: auth.method, user, ok: false });
      callback(refuse('auth', disabled, user));
      return;
    }
    const settle = (ok: boolean): void => {
      authAttempts.push({ method: auth.method, user, ok });
      if (ok) {
        callback(null, { user });
      } else if (auth.method === 'XOAUTH2') {
        // The SASL XOAUTH2 failure: a 334 challenge carrying this JSON, then 535 after the client's empty line.
        callback(null, { data: { status: '401', schemes: 'bearer', scope: 'https://outlook.office.com/SMTP.Send' } });
      } else {
        callback(Object.assign(new Error('5.7.8 Authentication unsuccessful'), { responseCode: 535 }));
      }
    };
    if (opts.auth === 'xoauth2' && auth.method === 'XOAUTH2' && opts.identityUrl) {
      tokenBelongsTo(opts.identityUrl, user, auth.accessToken ?? '').then(settle, () => settle(false));
    } else if (opts.auth === 'password' && (auth.method === 'PLAIN' || auth.method === 'LOGIN')) {
      const expected = opts.passwords?.[user];
      settle(expected !== undefined && auth.password === expected);
    } else {
      settle(false);
    }
  };

  const serverOptions: SMTPServerOptions = {
    name: 'localhost',
    banner: 'juniper test smtp sink',
    size: opts.size ?? 36 * 1024 * 1024,
    logger: false,
    disableReverseLookup: true,
    closeTimeout: 100,
    ...(opts.auth === 'none'
      ? { authOptional: true }
      : { authMethods: opts.auth === 'xoauth2' ? ['XOAUTH2'] : ['PLAIN', 'LOGIN'], onAuth }),
    ...(tls === 'none' ? { allowInsecureAuth: true } : testCertificate()),
    ...(tls === 'implicit' ? { secure: true } : {}),
    disabledCommands: [...(opts.auth === 'none' ? ['AUTH'] : []), ...(tls === 'none' ? ['STARTTLS'] : [])],
    onMailFrom(address: SMTPServerAddress, session, callback) {
      const reply = behaviour.mailFrom?.(address.address, { ...envelopeOf(session), from: address.address });
      callback(reply && reply.code >= 400 ? refuse('mail', reply, address.address) : undefined);
    },
    onRcptTo(address: SMTPServerAddress, session, callback) {
      const reply = behaviour.rcptTo?.(address.address, envelopeOf(session));
      callback(reply && reply.code >= 400 ? refuse('rcpt', reply, address.address) : undefined);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (stream.sizeExceeded) {
          callback(smtpError({ code: 552, message: '5.3.4 Message size exceeds fixed maximum message size' }));
          return;
        }
        const message: SinkMessage = { ...envelopeOf(session), raw: Buffer.concat(chunks), secure: session.secure };
        const reply = behaviour.data?.(message);
        if (reply && reply.code >= 400) {
          callback(refuse('data', reply));
          return;
        }
        const accept = () => {
          messages.push(message);
          waiting.arrived();
          callback(null, reply?.message ?? `2.6.0 queued as ${messages.length}`);
        };
        if (opts.delayMs) setTimeout(accept, opts.delayMs);
        else accept();
      });
    },
  };
  const server = new SMTPServer(serverOptions);
  // Clients hanging up (tests stopping mid-session) are normal; anything else is worth seeing in the output.
  server.on('error', (err: Error & { code?: string }) => {
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') console.error('smtp sink error:', err);
  });

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.server.address();
  if (address === null || typeof address === 'string') throw new Error('smtp sink: no TCP address');

  return {
    host: '127.0.0.1',
    port: address.port,
    messages,
    refusals,
    authAttempts,
    waitFor: waiting.waitFor,
    setBehaviour(next) {
      behaviour = next;
    },
    setAuthDisabled(disabled) {
      authDisabled = disabled;
    },
    dropConnections() {
      // smtp-server keeps its sessions in `connections` (not in its typings); close() ends the socket.
      const sessions = [...(server as unknown as { connections: Set<{ close(): void }> }).connections];
      for (const session of sessions) session.close();
      return sessions.length;
    },
    stop() {
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
