// MailTransport over nodemailer's SMTP pool: one pool per server, kept by the dispatcher, so mails to the same
// server share authenticated connections. XOAUTH2 tokens come from the token store through nodemailer's
// provisioning hook (DESIGN §5: give nodemailer the token; do not hand-roll SASL).
//
// How nodemailer 10.6 provisions and renews (dist/esm/xoauth2, smtp-pool/pool-resource, smtp-connection):
// - every pooled connection gets its own XOAuth2 object when it is created, which reads the
//   'oauth2_provision_cb' hook at that moment, so the hook is set before the first send; each new
//   connection asks the hook once (renew=false): the token store's cache is what spares the identity provider;
// - a server that refuses a token with a 334 challenge (Gmail, smtp-server) gets an empty line, and after its
//   535 nodemailer asks the hook again with renew=true and retries AUTH once on the same connection;
// - Microsoft 365 answers a refused token with a plain "535 5.7.3 Authentication unsuccessful", no challenge,
//   so nodemailer does not renew: send() then renews once itself and sends again on a new connection.
import nodemailer from 'nodemailer';
import type { SMTPPoolOptions, SMTPSentMessageInfo } from 'nodemailer';
import { AppError } from '../lib/errors.js';
import type { ConnectTarget } from '../mail-servers/host-guard.js';
import { enhancedStatus, smtpErrorFacts } from './delivery-failure.js';
import type { AccessTokenSource, Envelope, MailTransport, OutgoingMessage, SendResult, SmtpCredentials, SmtpEndpoint } from './mail-transport.js';
import { attachmentReadFailure, mailOptions } from './mime.js';
import { deadlineExceeded, messageBytes, sendCancelled, sendDeadlineMs, type SendDeadlineOptions, type SendStage } from './send-deadline.js';

export interface SmtpTransportOptions {
  /** Connections kept open to the server (default 2; the dispatcher passes the server's pool size, server-rules.ts poolSizeOf). */
  maxConnections?: number;
  timeoutsMs?: { connection?: number; greeting?: number; socket?: number };
  /** The EHLO name (default: this machine's name). */
  name?: string;
  /** The checked address to connect to instead of resolving the host again (host-guard.ts); TLS still verifies the host name. */
  target?: ConnectTarget;
  /** The overall deadline of one send (send-deadline.ts; tests make it small). */
  deadline?: SendDeadlineOptions;
}

export const DEFAULT_TIMEOUTS_MS = { connection: 15_000, greeting: 15_000, socket: 60_000 } as const;

/** The connection options shared by the pool and Test Connection. */
export function connectionOptions(endpoint: SmtpEndpoint, options: SmtpTransportOptions = {}): SMTPPoolOptions {
  return {
    host: options.target?.address ?? endpoint.host,
    ...(options.target?.servername ? { servername: options.target.servername } : {}),
    port: endpoint.port,
    secure: endpoint.security === 'ssl',
    requireTLS: endpoint.security === 'starttls',
    ignoreTLS: endpoint.security === 'none',
    tls: { rejectUnauthorized: !endpoint.allowSelfSigned },
    connectionTimeout: options.timeoutsMs?.connection ?? DEFAULT_TIMEOUTS_MS.connection,
    greetingTimeout: options.timeoutsMs?.greeting ?? DEFAULT_TIMEOUTS_MS.greeting,
    socketTimeout: options.timeoutsMs?.socket ?? DEFAULT_TIMEOUTS_MS.socket,
    ...(options.name ? { name: options.name } : {}),
    logger: false,
  };
}

/**
 * What send() and Test Connection report when the token source failed: JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE with
 * details.transient, so that classifySendError() retries an unreachable identity provider and lets mails wait
 * for a reconnect otherwise. The source's own error is the cause.
 */
export function tokenUnavailable(cause: unknown): AppError {
  const facts = smtpErrorFacts(cause);
  const e = typeof cause === 'object' && cause !== null ? (cause as { transient?: unknown; details?: { transient?: unknown } }) : {};
  const transient =
    e.transient === true ||
    e.details?.transient === true ||
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|UND_ERR_)/.test(facts.code ?? '') ||
    facts.message === 'fetch failed';
  return new AppError('JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE', `No OAuth2 access token could be obtained: ${facts.message.replace(/\.+$/, '')}.`, { cause, details: { transient } });
}

/** Microsoft's "SMTP AUTH is disabled" for the tenant or the mailbox: 535 5.7.139 at AUTH (not the password variant, which OAuth fixes). */
export function isSmtpAuthDisabled(err: unknown): boolean {
  const facts = smtpErrorFacts(err);
  return facts.responseCode === 535 && enhancedStatus(facts.response) === '5.7.139' && !/basic authentication is disabled/i.test(facts.response ?? '');
}

/** A 535 that a fresh token may fix: not Microsoft's "SMTP AUTH disabled" (5.7.139), which no token changes. */
export function isRefusedToken(err: unknown): boolean {
  const facts = smtpErrorFacts(err);
  return facts.code === 'EAUTH' && facts.responseCode === 535 && enhancedStatus(facts.response) !== '5.7.139';
}

function sendResult(info: SMTPSentMessageInfo): SendResult {
  // nodemailer keeps each refused RCPT TO's reply and code (smtp-connection _actionRCPT): whether the code is 4xx
  // or 5xx decides whether the recipient is tried again.
  const replies = new Map((info.rejectedErrors ?? []).map((e) => [e.recipient ?? '', e]));
  return {
    accepted: info.accepted.map(String),
    rejected: info.rejected.map((address) => {
      const e = replies.get(String(address));
      return { address: String(address), response: e ? (e.response ?? e.message) : '', ...(typeof e?.responseCode === 'number' ? { responseCode: e.responseCode } : {}) };
    }),
    response: info.response,
  };
}

export function createSmtpTransport(
  endpoint: SmtpEndpoint,
  credentials: SmtpCredentials,
  tokenSource?: AccessTokenSource,
  options: SmtpTransportOptions = {},
): MailTransport {
  if (credentials.kind === 'oauth2' && !tokenSource) {
    throw new AppError('JUNIPER_ERR_INTERNAL', `Server ${endpoint.name}: OAuth2 credentials need an access token source.`);
  }
  const auth =
    credentials.kind === 'password'
      ? { user: credentials.user, pass: credentials.pass }
      : credentials.kind === 'oauth2'
        ? { type: 'OAuth2', user: credentials.user }
        : undefined;
  const poolOptions: SMTPPoolOptions & { pool: true } = {
    ...connectionOptions(endpoint, options),
    pool: true,
    maxConnections: options.maxConnections ?? 2,
    maxMessages: Infinity,
    ...(auth ? { auth } : {}),
    // Attachments arrive as bytes; a path or URL in a message must never make the gateway read files or fetch.
    disableFileAccess: true,
    disableUrlAccess: true,
  };
  const transporter = nodemailer.createTransport(poolOptions);

  // The token source's failures, found again after nodemailer has re-labelled them (code EAUTH).
  const tokenFailures = new WeakMap<object, unknown>();
  // Renewals asked of the token source so far: by nodemailer itself (a challenging server) and in all.
  let ownRenewals = 0;
  let renewals = 0;
  // New connections that must start with a renewed token (renew=true) although nodemailer asks renew=false.
  let forcedRenewals = 0;
  if (tokenSource) {
    transporter.set('oauth2_provision_cb', (_user: string, renew: boolean, callback: (err: Error | null, accessToken?: string, expires?: number) => void) => {
      let forced = renew;
      if (renew) ownRenewals++;
      else if (forcedRenewals > 0) {
        forcedRenewals--;
        forced = true;
      }
      if (forced) renewals++;
      tokenSource(forced).then(
        (token) => callback(null, token.accessToken, token.expiresAt),
        (err: unknown) => {
          const wrapper = new Error('access token unavailable');
          tokenFailures.set(wrapper, err);
          callback(wrapper);
        },
      );
    });
  }

  // How far each send got (send-deadline.ts SendStage), found by its signal. nodemailer calls a message's process
  // functions when a connection, connected and signed in, starts the message (pool-resource send →
  // createReadStream), and the stream ends once its last byte went to the connection: with the input given back
  // unchanged, this costs no stream stage.
  const stages = new WeakMap<AbortSignal, { stage: SendStage }>();
  transporter.use('stream', (mail, done) => {
    const signal = mail.data.signal;
    const tracked = signal ? stages.get(signal) : undefined;
    if (tracked) {
      mail.message.processFunc((input) => {
        tracked.stage = 'session';
        input.once('end', () => (tracked.stage = 'written'));
        return input;
      });
    }
    done();
  });

  const surface = (err: unknown): unknown => {
    const cause = typeof err === 'object' && err !== null ? tokenFailures.get(err) : undefined;
    return cause === undefined ? attachmentReadFailure(err) : tokenUnavailable(cause);
  };

  const at = `${endpoint.host}:${endpoint.port}`;

  async function attempt(message: OutgoingMessage, envelope: Envelope, signal: AbortSignal): Promise<SendResult> {
    const before = { ownRenewals, renewals };
    try {
      return sendResult(await transporter.sendMail({ ...mailOptions(message, envelope), signal }));
    } catch (err) {
      // When nodemailer renewed during this send, a challenging server refused a fresh token: that is final.
      if (signal.aborted || !(tokenSource && isRefusedToken(err) && ownRenewals === before.ownRenewals)) throw err;
      // The pool dropped the refused connection and opens a new one for the retry. It asks for a renewed
      // token, unless another send's connection already renewed it meanwhile (concurrent sends on a token
      // that went stale all fail at once; one renewal serves them all).
      if (renewals === before.renewals) forcedRenewals++;
      return sendResult(await transporter.sendMail({ ...mailOptions(message, envelope), signal }));
    }
  }

  return {
    async send(message, envelope, sendOptions = {}) {
      const deadlineMs = sendDeadlineMs(messageBytes(message), options.deadline);
      // One controller for the deadline and the caller's signal; the listener on the caller's signal is removed
      // when the send ends, so a long-lived signal keeps nothing of the sends it watched.
      const stop = new AbortController();
      let cause: 'deadline' | 'cancelled' | undefined;
      const timer = setTimeout(() => {
        cause ??= 'deadline';
        stop.abort();
      }, deadlineMs);
      const cancel = () => {
        cause ??= 'cancelled';
        stop.abort();
      };
      if (sendOptions.signal?.aborted) cancel();
      else sendOptions.signal?.addEventListener('abort', cancel, { once: true });
      const tracked: { stage: SendStage } = { stage: 'connecting' };
      stages.set(stop.signal, tracked);
      try {
        return await attempt(message, envelope, stop.signal);
      } catch (err) {
        if (cause === 'deadline') throw deadlineExceeded(endpoint.name, at, deadlineMs, tracked.stage);
        if (cause === 'cancelled') throw sendCancelled(endpoint.name, tracked.stage);
        throw surface(err);
      } finally {
        clearTimeout(timer);
        sendOptions.signal?.removeEventListener('abort', cancel);
      }
    },
    close() {
      transporter.close();
    },
  };
}
