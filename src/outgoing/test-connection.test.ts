// Test Connection against the real SMTP sink: every step of the session, each failure with its human message,
// and the promise that matters most — the sink never receives a message, not even an empty one.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SMTPServer } from 'smtp-server';
import { freePort } from '../../test/peers/free-port.js';
import { startIdentityServer } from '../../test/peers/identity-server.js';
import type { IdentityServer } from '../../test/peers/identity-server.js';
import { startSmtpSink } from '../../test/peers/smtp-sink.js';
import type { SmtpSink } from '../../test/peers/smtp-sink.js';
import type { AccessTokenSource, SmtpCredentials, SmtpEndpoint } from './mail-transport.js';
import { testSmtpConnection } from './test-connection.js';

const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const PASSWORD = 'correct horse battery staple';
const probe = { from: ALICE, to: ALICE };
const password: SmtpCredentials = { kind: 'password', user: ALICE, pass: PASSWORD };

function endpoint(port: number, overrides: Partial<SmtpEndpoint> = {}): SmtpEndpoint {
  return { serverId: 1, name: 'test sink', host: '127.0.0.1', port, security: 'starttls', allowSelfSigned: true, ...overrides };
}

/** Refuses a token as Microsoft 365 does: "535 5.7.3 Authentication unsuccessful" at once, no 334 challenge. */
async function startBare535Server(idp: IdentityServer): Promise<{ port: number; stop(): Promise<void> }> {
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    authMethods: ['XOAUTH2'],
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    onAuth(auth, _session, callback) {
      const check = idp.checkToken(auth.accessToken);
      if (check.ok && check.claims.email === auth.username) callback(null, { user: auth.username });
      else callback(Object.assign(new Error('5.7.3 Authentication unsuccessful'), { responseCode: 535 }));
    },
    onData(stream, _session, callback) {
      stream.resume();
      stream.on('end', () => callback(new Error('Test Connection must never send a message')));
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return { port: address.port, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('testSmtpConnection', () => {
  let idp: IdentityServer;
  let passwordSink: SmtpSink;
  let oauthSink: SmtpSink;
  let implicitSink: SmtpSink;
  let bare535: Awaited<ReturnType<typeof startBare535Server>>;
  before(async () => {
    idp = await startIdentityServer();
    [passwordSink, oauthSink, implicitSink, bare535] = await Promise.all([
      startSmtpSink({ auth: 'password', passwords: { [ALICE]: PASSWORD } }),
      startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url }),
      startSmtpSink({ auth: 'password', passwords: { [ALICE]: PASSWORD }, tls: 'implicit' }),
      startBare535Server(idp),
    ]);
  });
  afterEach(() => {
    passwordSink.setBehaviour({});
    oauthSink.setBehaviour({});
  });
  after(() => Promise.all([passwordSink.stop(), oauthSink.stop(), implicitSink.stop(), bare535.stop(), idp.stop()]));

  /** The sink had time to store anything the hang-up might have left; nothing may be there. */
  const assertNothingDelivered = async (sink: SmtpSink, before: number): Promise<void> => {
    await sleep(300);
    assert.equal(sink.messages.length, before, 'the sink received no message');
  };

  it('walks connect, STARTTLS, AUTH, MAIL FROM, RCPT TO and DATA, then hangs up at 354: nothing is delivered', async () => {
    const before = passwordSink.messages.length;
    const attempts = passwordSink.authAttempts.length;
    const result = await testSmtpConnection(endpoint(passwordSink.port), password, undefined, probe);
    assert.deepEqual([result.ok, result.stage], [true, 'done'], result.message);
    assert.match(result.message, /logged in as alice@example\.test/);
    assert.match(result.message, /Nothing was sent/);
    assert.deepEqual(passwordSink.authAttempts.slice(attempts).map((a) => [a.method, a.ok]), [['PLAIN', true]]);
    assert.deepEqual(passwordSink.refusals, []);
    await assertNothingDelivered(passwordSink, before);
  });

  it('passes with XOAUTH2, asking the token source once', async () => {
    const calls: boolean[] = [];
    const tokenSource: AccessTokenSource = async (renew) => {
      calls.push(renew);
      return { accessToken: await idp.mint(ALICE, 300), expiresAt: Date.now() + 300_000 };
    };
    const before = oauthSink.messages.length;
    const result = await testSmtpConnection(endpoint(oauthSink.port), { kind: 'oauth2', user: ALICE }, tokenSource, probe);
    assert.deepEqual([result.ok, result.stage], [true, 'done'], result.message);
    assert.deepEqual(calls, [false]);
    assert.equal(oauthSink.authAttempts.at(-1)?.method, 'XOAUTH2');
    await assertNothingDelivered(oauthSink, before);
  });

  it('shows a sender refused at MAIL FROM with the server\'s reply and a hint, and delivers nothing', async () => {
    const refusal = '5.7.60 SMTP; Client does not have permissions to send as this sender';
    passwordSink.setBehaviour({ mailFrom: () => ({ code: 550, message: refusal }) });
    const before = passwordSink.messages.length;
    const result = await testSmtpConnection(endpoint(passwordSink.port), password, undefined, probe);
    assert.deepEqual([result.ok, result.stage, result.serverReply], [false, 'mail', `550 ${refusal}`]);
    assert.match(result.message, /refused the sender alice@example\.test at MAIL FROM/);
    assert.ok(result.message.includes(refusal), result.message);
    assert.match(result.message, /From filter/);
    assert.match(result.message, /Send As/);
    await assertNothingDelivered(passwordSink, before);
  });

  it('shows a recipient refused at RCPT TO', async () => {
    passwordSink.setBehaviour({ rcptTo: () => ({ code: 550, message: '5.7.54 SMTP; Unable to relay recipient in non-accepted domain' }) });
    const result = await testSmtpConnection(endpoint(passwordSink.port), password, undefined, { from: ALICE, to: BOB });
    assert.deepEqual([result.ok, result.stage], [false, 'rcpt']);
    assert.match(result.message, /refused the recipient bob@example\.test at RCPT TO: "550 5\.7\.54 SMTP; Unable to relay/);
  });

  it('does not blame the sender when the server wants a login first (530 at MAIL FROM)', async () => {
    passwordSink.setBehaviour({ mailFrom: () => ({ code: 530, message: '5.7.57 Client not authenticated to send mail.' }) });
    const result = await testSmtpConnection(endpoint(passwordSink.port), { kind: 'none' }, undefined, probe);
    assert.deepEqual([result.ok, result.stage], [false, 'auth']);
    assert.match(result.message, /requires authentication.*Choose Password or Outlook authentication/);
  });

  it('says nothing listens on a closed port and which ports to try', async () => {
    const port = await freePort();
    const result = await testSmtpConnection(endpoint(port), password, undefined, probe);
    assert.deepEqual([result.ok, result.stage], [false, 'connect']);
    assert.match(result.message, new RegExp(`Nothing listens on 127\\.0\\.0\\.1:${port}`));
    assert.match(result.message, /587 for STARTTLS, 465 for SSL/);
  });

  it('says the host name does not exist', async () => {
    const result = await testSmtpConnection(endpoint(587, { host: 'smtp.does-not-exist.invalid' }), password, undefined, probe);
    assert.deepEqual([result.ok, result.stage], [false, 'connect']);
    assert.match(result.message, /smtp\.does-not-exist\.invalid does not exist/);
  });

  it('shows a refused password with the server\'s reply and never the password', async () => {
    const result = await testSmtpConnection(endpoint(passwordSink.port), { ...password, pass: 'wrong password' }, undefined, probe);
    assert.deepEqual([result.ok, result.stage, result.serverReply], [false, 'auth', '535 5.7.8 Authentication unsuccessful']);
    assert.match(result.message, /Authentication refused for alice@example\.test: "535 5\.7\.8 Authentication unsuccessful"/);
    assert.doesNotMatch(JSON.stringify(result), /wrong password/);
  });

  it('shows a refused token after one renewal, without the token', async () => {
    const calls: boolean[] = [];
    const tokens: string[] = [];
    const tokenSource: AccessTokenSource = async (renew) => {
      calls.push(renew);
      const token = await idp.mint(BOB, 300); // another user's token: never accepted for ALICE
      tokens.push(token);
      return { accessToken: token, expiresAt: Date.now() + 300_000 };
    };
    const result = await testSmtpConnection(endpoint(oauthSink.port), { kind: 'oauth2', user: ALICE }, tokenSource, probe);
    assert.deepEqual([result.ok, result.stage], [false, 'auth']);
    assert.match(result.message, /did not accept the OAuth2 access token/);
    assert.match(result.message, /Reconnect the Outlook account/);
    assert.deepEqual(calls, [false, true], 'the sink challenges, so nodemailer renews once itself; no second round');
    for (const token of tokens) assert.ok(!JSON.stringify(result).includes(token.split('.')[2] ?? token), 'no token in the result');
  });

  it('renews a stale token once when the server answers a bare 535 (as Microsoft 365 does), then passes', async () => {
    const calls: boolean[] = [];
    const tokenSource: AccessTokenSource = async (renew) => {
      calls.push(renew);
      return { accessToken: await idp.mint(ALICE, renew ? 300 : -60), expiresAt: Date.now() + 300_000 };
    };
    const result = await testSmtpConnection(endpoint(bare535.port, { security: 'none' }), { kind: 'oauth2', user: ALICE }, tokenSource, probe);
    assert.deepEqual([result.ok, result.stage], [true, 'done'], result.message);
    assert.deepEqual(calls, [false, true]);
  });

  it('says what to do when the token source has no token', async () => {
    const tokenSource: AccessTokenSource = () => Promise.reject(Object.assign(new Error('invalid_grant: AADSTS700082 The refresh token has expired'), { transient: false }));
    const result = await testSmtpConnection(endpoint(oauthSink.port), { kind: 'oauth2', user: ALICE }, tokenSource, probe);
    assert.deepEqual([result.ok, result.stage], [false, 'auth']);
    assert.match(result.message, /^No OAuth2 access token could be obtained: invalid_grant: AADSTS700082 The refresh token has expired\. Reconnect the Outlook account on this form/);
  });

  it('refuses a self-signed certificate unless allowed, saying so', async () => {
    const result = await testSmtpConnection(endpoint(passwordSink.port, { allowSelfSigned: false }), password, undefined, probe);
    assert.deepEqual([result.ok, result.stage], [false, 'tls']);
    assert.match(result.message, /self-signed/);
    assert.match(result.message, /enable "Allow self-signed" \(only for private servers\)/);
  });

  it('explains SSL selected on a STARTTLS port', async () => {
    const result = await testSmtpConnection(endpoint(passwordSink.port, { security: 'ssl' }), password, undefined, probe);
    assert.deepEqual([result.ok, result.stage], [false, 'tls']);
    assert.match(result.message, /does not speak TLS from the first byte.*Choose STARTTLS/);
  });

  it('passes with SSL on an implicit-TLS port, and explains STARTTLS selected there (no greeting)', async () => {
    const ok = await testSmtpConnection(endpoint(implicitSink.port, { security: 'ssl' }), password, undefined, probe);
    assert.deepEqual([ok.ok, ok.stage], [true, 'done'], ok.message);
    const result = await testSmtpConnection(endpoint(implicitSink.port), password, undefined, probe, { timeoutsMs: { greeting: 500 } });
    assert.deepEqual([result.ok, result.stage], [false, 'connect']);
    assert.match(result.message, /sent no SMTP greeting.*choose SSL/);
  });
});
