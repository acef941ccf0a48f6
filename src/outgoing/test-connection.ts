// Test Connection: walks a real SMTP session as far as a mail would go — connect, TLS, AUTH, MAIL FROM, RCPT TO,
// DATA — and hangs up at the server's 354, before a single byte of message, so nothing is ever delivered.
// Hanging up is the only way out of DATA without a message: the terminating "." would submit an empty one,
// and servers discard a transaction whose connection drops before it (RFC 5321 §4.1.1.4).
//
// nodemailer's SMTPConnection.send(envelope, stream) pipes the stream only in its DATA reply handler, after a
// 2xx/3xx answer (smtp-connection _actionDATA → _setEnvelope callback → message.pipe): until then the stream
// has only an 'error' listener, so the stream's first read() is the proof that DATA was answered 354.
import { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import XOAuth2 from 'nodemailer/lib/xoauth2';
import type { AppError } from '../lib/errors.js';
import { SMTP_AUTH_HOWTO, describeConnectionProblem, enhancedStatus, smtpErrorFacts } from './delivery-failure.js';
import type { SmtpErrorFacts } from './delivery-failure.js';
import type { AccessTokenSource, SmtpCredentials, SmtpEndpoint } from './mail-transport.js';
import { connectionOptions, isRefusedToken, tokenUnavailable } from './smtp-transport.js';
import type { SmtpTransportOptions } from './smtp-transport.js';

export type TestStage = 'connect' | 'tls' | 'auth' | 'mail' | 'rcpt' | 'data' | 'done';

export interface ConnectionTestOutcome {
  ok: boolean;
  /** The step that failed, or 'done'. */
  stage: TestStage;
  message: string;
  /** The server's reply that decided the outcome, when there was one. */
  serverReply?: string;
}

/** Shorter than the dispatcher's: someone is waiting in front of the form. */
export const TEST_TIMEOUTS_MS = { connection: 10_000, greeting: 10_000, socket: 20_000 } as const;

type OnError = (err: unknown) => void;

export async function testSmtpConnection(
  endpoint: SmtpEndpoint,
  credentials: SmtpCredentials,
  tokenSource: AccessTokenSource | undefined,
  probe: { from: string; to: string },
  options: SmtpTransportOptions = {},
): Promise<ConnectionTestOutcome> {
  const secrets: string[] = credentials.kind === 'password' ? [credentials.pass] : [];
  // Server replies are echoed to the admin; a server that quotes what it was sent must not leak a secret.
  const scrub = (text: string): string => secrets.filter((s) => s.length >= 4).reduce((t, s) => t.split(s).join('[redacted]'), text);
  const outcome = (ok: boolean, stage: TestStage, message: string, reply?: string): ConnectionTestOutcome =>
    reply ? { ok, stage, message: scrub(message), serverReply: scrub(reply) } : { ok, stage, message: scrub(message) };

  const connection = new SMTPConnection(connectionOptions(endpoint, { ...options, timeoutsMs: { ...TEST_TIMEOUTS_MS, ...options.timeoutsMs } }));
  // SMTPConnection reports socket, TLS and timeout failures as 'error' events, not through the callbacks.
  let onError: OnError = () => undefined;
  connection.on('error', (err: unknown) => onError(err));
  const step = <T>(run: (resolve: (value: T) => void, reject: OnError) => void): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      onError = reject;
      run(resolve, reject);
    });

  let stage: TestStage = 'connect';
  // Kept aside: nodemailer re-labels whatever the provisioning callback fails with as EAUTH.
  let tokenError: AppError | undefined;
  try {
    await step<void>((resolve, reject) => connection.connect((err) => (err ? reject(err) : resolve())));

    let authNote = '';
    if (credentials.kind !== 'none') {
      stage = 'auth';
      if (!connection.allowsAuth) {
        // The pool does the same: it logs in only where the server offers AUTH.
        authNote = ` The server did not offer authentication on this connection, so ${credentials.user}'s credentials were not used.`;
      } else if (credentials.kind === 'password') {
        await step<void>((resolve, reject) => connection.login({ user: credentials.user, pass: credentials.pass }, (err) => (err ? reject(err) : resolve())));
      } else {
        if (!tokenSource) return outcome(false, 'auth', `Server ${endpoint.name} uses Outlook authentication but has no token: connect the Outlook account first.`);
        let renewed = false;
        const login = (forceRenew: boolean): Promise<void> => {
          // A fresh XOAuth2 each time: it caches the token it got, and a retry must ask for a new one.
          const oauth2 = new XOAuth2(
            {
              user: credentials.user,
              provisionCallback: (_user, renew, callback) => {
                renewed ||= renew || forceRenew;
                tokenSource(renew || forceRenew).then(
                  (token) => {
                    secrets.push(token.accessToken);
                    callback(null, token.accessToken, token.expiresAt);
                  },
                  (err: unknown) => {
                    tokenError = tokenUnavailable(err);
                    callback(new Error('access token unavailable'));
                  },
                );
              },
            },
            false,
          );
          return step<void>((resolve, reject) => connection.login({ user: credentials.user, oauth2, method: 'XOAUTH2' }, (err) => (err ? reject(err) : resolve())));
        };
        try {
          await login(false);
        } catch (err) {
          // Microsoft refuses a stale token with a bare 535 (no challenge, so nodemailer did not renew): once more.
          if (renewed || !isRefusedToken(err)) throw err;
          await login(true);
        }
      }
    }

    stage = 'mail';
    await step<void>((resolve, reject) => {
      const message = new Readable({
        read() {
          resolve();
        },
      });
      connection.send({ from: probe.from, to: [probe.to] }, message, (err) => {
        if (err) reject(err);
        // No success path: the message never ends, so the server never answers it.
      });
    });
    const how = endpoint.security === 'ssl' ? 'SSL/TLS' : endpoint.security === 'starttls' ? 'STARTTLS' : 'no encryption';
    const who = credentials.kind === 'none' || authNote ? '' : ` logged in as ${credentials.user},`;
    return outcome(
      true,
      'done',
      `Connection test succeeded: ${endpoint.host}:${endpoint.port} (${how})${who} would accept mail from ${probe.from} to ${probe.to}. Nothing was sent.${authNote}`,
    );
  } catch (err) {
    if (tokenError) return outcome(false, 'auth', `${tokenError.message} Reconnect the Outlook account on this form, then test again.`);
    return failure(err, stage, endpoint, credentials, probe, outcome);
  } finally {
    onError = () => undefined;
    connection.close();
  }
}

function failure(
  err: unknown,
  stage: TestStage,
  endpoint: SmtpEndpoint,
  credentials: SmtpCredentials,
  probe: { from: string; to: string },
  outcome: (ok: boolean, stage: TestStage, message: string, reply?: string) => ConnectionTestOutcome,
): ConnectionTestOutcome {
  const facts = smtpErrorFacts(err);
  const reply = facts.response;
  const connection = describeConnectionProblem(facts, endpoint);
  if (connection && !(facts.responseCode && stage !== 'connect')) {
    return outcome(false, connection.failureType === 'tls' ? 'tls' : 'connect', connection.reason, reply);
  }
  const quoted = reply ? `"${reply}"` : facts.message;
  if (facts.responseCode === 530) {
    // Refused at MAIL FROM for want of STARTTLS or AUTH: a server setting, not the sender address.
    return /STARTTLS/i.test(reply ?? '')
      ? outcome(false, 'tls', `The server accepts mail only after STARTTLS: ${quoted}. Choose STARTTLS as security.`, reply)
      : outcome(
          false,
          'auth',
          `The server requires authentication before accepting mail: ${quoted}. ${credentials.kind === 'none' ? 'Choose Password or Outlook authentication.' : 'It offered no login on this connection: choose STARTTLS (many servers, Microsoft 365 among them, offer AUTH only over an encrypted connection).'}`,
          reply,
        );
  }
  const failedAt = stage === 'mail' ? commandStage(facts) : stage;
  if (facts.responseCode && facts.responseCode < 500 && failedAt !== 'auth') {
    return outcome(false, failedAt, `The server deferred the test at ${facts.command ?? failedAt}: ${quoted}. This is temporary: test again in a few minutes.`, reply);
  }
  switch (failedAt) {
    case 'auth':
      return outcome(false, 'auth', authMessage(facts, credentials), reply);
    case 'mail':
      return outcome(
        false,
        'mail',
        `The server refused the sender ${probe.from} at MAIL FROM: ${quoted}. Check the server's From filter and that the account may send as ${probe.from} (Send As rights, or the mailbox's own address).`,
        reply,
      );
    case 'rcpt':
      return outcome(false, 'rcpt', `The server refused the recipient ${probe.to} at RCPT TO: ${quoted}. The account may not be allowed to send to that address.`, reply);
    case 'data':
      return outcome(false, 'data', `The server refused to take a message (DATA): ${quoted}.`, reply);
    default:
      return outcome(false, stage, `The connection test failed at ${stage}: ${quoted}.`, reply);
  }
}

function commandStage(facts: SmtpErrorFacts): TestStage {
  if (facts.command === 'RCPT TO') return 'rcpt';
  if (facts.command === 'DATA') return 'data';
  return 'mail';
}

function authMessage(facts: SmtpErrorFacts, credentials: SmtpCredentials): string {
  const user = credentials.kind === 'none' ? '' : credentials.user;
  const quoted = facts.response ? `"${facts.response}"` : facts.message;
  if (enhancedStatus(facts.response) === '5.7.139') {
    if (/basic authentication is disabled/i.test(facts.response ?? '')) {
      return `Microsoft 365 no longer accepts a password for ${user}: ${quoted}. Switch the server's authentication to Outlook (OAuth2) and connect the account.`;
    }
    return `Microsoft 365 refused the login for ${user} because SMTP AUTH is disabled or blocked: ${quoted}. ${SMTP_AUTH_HOWTO}`;
  }
  if (facts.responseCode === 538 || /encryption required/i.test(facts.response ?? '')) {
    return `The server allows authentication only over an encrypted connection: ${quoted}. Choose STARTTLS (port 587) or SSL (port 465).`;
  }
  if (credentials.kind === 'oauth2') {
    return `Authentication refused for ${user}: the server did not accept the OAuth2 access token (${quoted}). Reconnect the Outlook account, check that the connected account is ${user} or may send as it, and that "Authenticated SMTP" is enabled for the mailbox.`;
  }
  return `Authentication refused for ${user}: ${quoted}. Check the username (usually the full email address) and the password.`;
}
