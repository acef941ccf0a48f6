// The SMTP adapter against real servers on loopback: the SMTP sink (smtp-server shaped like Microsoft 365),
// a server that refuses tokens the way Microsoft 365 does (a bare 535, no challenge) and Dovecot's submission
// service. What arrives is read back from the servers, never assumed.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { startDovecot } from '../../test/peers/dovecot.js';
import type { Dovecot } from '../../test/peers/dovecot.js';
import { startIdentityServer } from '../../test/peers/identity-server.js';
import type { IdentityServer } from '../../test/peers/identity-server.js';
import { replySequence, startSmtpSink } from '../../test/peers/smtp-sink.js';
import type { SinkMessage, SmtpSink } from '../../test/peers/smtp-sink.js';
import { isAppError } from '../lib/errors.js';
import { classifySendError } from './delivery-failure.js';
import type { AccessTokenSource, ByteSource, MailTransport, OutgoingMessage, SmtpCredentials, SmtpEndpoint } from './mail-transport.js';
import { createSmtpTransport } from './smtp-transport.js';

const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const CAROL = 'carol@example.test';
const DAVE = 'dave@example.test';
const PASSWORD = 'correct horse battery staple';

function endpoint(port: number, overrides: Partial<SmtpEndpoint> = {}): SmtpEndpoint {
  return { serverId: 1, name: 'test sink', host: '127.0.0.1', port, security: 'starttls', allowSelfSigned: true, ...overrides };
}

function message(overrides: Partial<OutgoingMessage> = {}): OutgoingMessage {
  return {
    messageId: `<${Math.random().toString(36).slice(2)}@juniper.test>`,
    from: `"Alice" <${ALICE}>`,
    to: [BOB],
    cc: [],
    bcc: [],
    subject: 'Hello',
    text: 'Hello Bob.',
    attachments: [],
    ...overrides,
  };
}

/** Records each renew flag the transport asks with; tokens come from `mint`. */
function tokenLog(mint: (renew: boolean) => Promise<string>): { source: AccessTokenSource; calls: boolean[] } {
  const calls: boolean[] = [];
  return {
    calls,
    source: async (renew) => {
      calls.push(renew);
      return { accessToken: await mint(renew), expiresAt: Date.now() + 3600_000 };
    },
  };
}

/** Microsoft 365 refuses a token with "535 5.7.3 Authentication unsuccessful" straight away, no 334 challenge. */
async function startBare535Server(idp: IdentityServer): Promise<{ port: number; raws: Buffer[]; stop(): Promise<void> }> {
  const raws: Buffer[] = [];
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    authMethods: ['XOAUTH2'],
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    onAuth(auth, _session, callback) {
      const check = idp.checkToken(auth.accessToken);
      if (check.ok && check.claims.email === auth.username) callback(null, { user: auth.username });
      else callback(Object.assign(new Error('5.7.3 Authentication unsuccessful [SGXP274CA0016.SGPP274.PROD.OUTLOOK.COM]'), { responseCode: 535 }));
    },
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        raws.push(Buffer.concat(chunks));
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return { port: address.port, raws, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('smtp transport', () => {
  let idp: IdentityServer;
  let passwordSink: SmtpSink;
  let oauthSink: SmtpSink;
  let bare535: Awaited<ReturnType<typeof startBare535Server>>;
  const open: MailTransport[] = [];
  const transport = (...args: Parameters<typeof createSmtpTransport>): MailTransport => {
    const t = createSmtpTransport(...args);
    open.push(t);
    return t;
  };
  const password: SmtpCredentials = { kind: 'password', user: ALICE, pass: PASSWORD };

  before(async () => {
    idp = await startIdentityServer();
    [passwordSink, oauthSink, bare535] = await Promise.all([
      startSmtpSink({ auth: 'password', passwords: { [ALICE]: PASSWORD } }),
      startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url }),
      startBare535Server(idp),
    ]);
  });
  afterEach(() => {
    for (const t of open.splice(0)) t.close();
    passwordSink.setBehaviour({});
    oauthSink.setBehaviour({});
  });
  after(() => Promise.all([passwordSink.stop(), oauthSink.stop(), bare535.stop(), idp.stop()]));

  const newMessages = async (sink: SmtpSink, before: number, n = 1): Promise<SinkMessage[]> => (await sink.waitFor(before + n)).slice(before);

  it('delivers with a password over STARTTLS to a self-signed server when self-signed is allowed', async () => {
    const before = passwordSink.messages.length;
    const result = await transport(endpoint(passwordSink.port), password).send(message(), { from: ALICE, to: [BOB] });
    assert.deepEqual(result.accepted, [BOB]);
    assert.deepEqual(result.rejected, []);
    assert.match(result.response, /^250 /);
    const [arrived] = await newMessages(passwordSink, before);
    assert.deepEqual([arrived?.user, arrived?.secure, arrived?.from, arrived?.to], [ALICE, true, ALICE, [BOB]]);
  });

  it('refuses a self-signed certificate when self-signed is not allowed, as a retryable TLS failure', async () => {
    const before = passwordSink.messages.length;
    const err = await transport(endpoint(passwordSink.port, { allowSelfSigned: false }), password)
      .send(message(), { from: ALICE, to: [BOB] })
      .then(() => assert.fail('sent despite a self-signed certificate'), (e: unknown) => e);
    const decision = classifySendError(err, { auth: 'password', endpoint: { host: '127.0.0.1', port: passwordSink.port } });
    assert.deepEqual([decision.action, decision.failureType], ['retry', 'tls']);
    assert.match(decision.reason, /self-signed.*Allow self-signed/);
    assert.equal(passwordSink.messages.length, before);
  });

  it('keeps the SMTP facts of a refused password on the error it throws', async () => {
    const err = await transport(endpoint(passwordSink.port), { ...password, pass: 'wrong' })
      .send(message(), { from: ALICE, to: [BOB] })
      .then(() => assert.fail('sent with a wrong password'), (e: unknown) => e);
    assert.deepEqual(
      [(err as { code?: string }).code, (err as { responseCode?: number }).responseCode, (err as { command?: string }).command],
      ['EAUTH', 535, 'AUTH PLAIN'],
    );
    assert.match((err as { response?: string }).response ?? '', /^535 5\.7\.8 Authentication unsuccessful/);
    assert.equal(classifySendError(err, { auth: 'password' }).action, 'wait');
  });

  it('builds the message: Message-ID kept, From/Reply-To/Cc and custom headers as given, attachments, and Bcc only in the envelope', async () => {
    const before = passwordSink.messages.length;
    const messageId = '<q-42.1730000000000@juniper.test>';
    const pdf = Buffer.from('%PDF-1.4\n% juniper test\n');
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
    const result = await transport(endpoint(passwordSink.port), password).send(
      message({
        messageId,
        from: '"Notifications (for Alice)" <notifications@example.test>',
        to: [BOB],
        cc: [CAROL],
        bcc: [DAVE],
        replyTo: `"Alice" <${ALICE}>`,
        subject: 'Quarterly report – Q3',
        text: 'See attached.',
        html: '<p>See attached. <img src="cid:logo@juniper.test"></p>',
        // "Bcc" must not sneak in as a custom header either.
        headers: { 'X-Juniper-Mail-Id': '42', 'List-Unsubscribe': '<mailto:unsubscribe@example.test>', Bcc: DAVE },
        attachments: [
          { filename: 'report.pdf', contentType: 'application/pdf', content: pdf },
          { filename: 'logo.png', contentType: 'image/png', content: png, contentId: 'logo@juniper.test' },
        ],
      }),
      { from: 'bounce@example.test', to: [BOB, CAROL, DAVE] },
    );
    assert.deepEqual(result.accepted, [BOB, CAROL, DAVE]);
    const [arrived] = await newMessages(passwordSink, before);
    assert.ok(arrived, 'the message arrived');
    assert.deepEqual([arrived.from, arrived.to], ['bounce@example.test', [BOB, CAROL, DAVE]]);
    const raw = arrived.raw.toString('utf8');
    assert.match(raw, /^Message-ID: <q-42\.1730000000000@juniper\.test>\r$/m);
    assert.doesNotMatch(raw, /^Bcc:/im);
    assert.ok(!raw.includes(DAVE), 'the Bcc recipient appears nowhere in the message');

    const parsed = await simpleParser(arrived.raw);
    assert.equal(parsed.messageId, messageId);
    assert.equal(parsed.from?.text, '"Notifications (for Alice)" <notifications@example.test>');
    assert.equal(parsed.replyTo?.text, `"Alice" <${ALICE}>`);
    assert.deepEqual([parsed.to, parsed.cc].map((a) => (Array.isArray(a) ? a : [a]).map((x) => x?.text)), [[BOB], [CAROL]]);
    assert.equal(parsed.subject, 'Quarterly report – Q3');
    assert.equal(parsed.headers.get('x-juniper-mail-id'), '42');
    // mailparser files List-* headers under 'list'; the raw message shows the header as given.
    assert.match(raw, /^List-Unsubscribe: <mailto:unsubscribe@example\.test>\r$/m);
    const byName = new Map(parsed.attachments.map((a) => [a.filename, a]));
    assert.deepEqual(byName.get('report.pdf')?.content, pdf);
    assert.equal(byName.get('report.pdf')?.contentType, 'application/pdf');
    assert.deepEqual(byName.get('logo.png')?.content, png);
    assert.equal(byName.get('logo.png')?.cid, 'logo@juniper.test');
  });

  it('sends a large attachment intact (given to nodemailer in slices), and again from the same message', async () => {
    const before = passwordSink.messages.length;
    // Not a multiple of the slice size nor of 3, so the last slice and base64 padding are exercised.
    const big = crypto.randomBytes(300 * 1024 + 1);
    const t = transport(endpoint(passwordSink.port), password);
    const m = message({ attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', content: big }] });
    await t.send(m, { from: 'bounce@example.test', to: [BOB] });
    await t.send(m, { from: 'bounce@example.test', to: [BOB] });
    const arrived = await newMessages(passwordSink, before, 2);
    assert.equal(arrived.length, 2);
    for (const a of arrived) assert.deepEqual((await simpleParser(a.raw)).attachments[0]?.content, big);
  });

  it('sends an attachment given as pieces intact, reading them again for each send; a piece that cannot be read fails the send with its own error and delivers nothing', async () => {
    const before = passwordSink.messages.length;
    const big = crypto.randomBytes(700 * 1024 + 5);
    let reads = 0;
    // Uneven pieces (not whole base64 groups), as a source may give them.
    const source: ByteSource = {
      size: big.length,
      async *pieces() {
        reads++;
        for (let at = 0; at < big.length; at += 100_001) yield big.subarray(at, at + 100_001);
      },
    };
    const t = transport(endpoint(passwordSink.port), password);
    const m = message({ attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', content: source }] });
    await t.send(m, { from: 'bounce@example.test', to: [BOB] });
    await t.send(m, { from: 'bounce@example.test', to: [BOB] });
    assert.equal(reads, 2);
    const arrived = await newMessages(passwordSink, before, 2);
    for (const a of arrived) assert.deepEqual((await simpleParser(a.raw)).attachments[0]?.content, big);

    const boom = Object.assign(new Error('the database went away'), { code: 'JUNIPER_ERR_DATABASE' });
    const failing: ByteSource = {
      size: big.length,
      async *pieces() {
        yield big.subarray(0, 200_000);
        throw boom;
      },
    };
    await assert.rejects(t.send(message({ attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', content: failing }] }), { from: 'bounce@example.test', to: [BOB] }), (err) => err === boom && boom.code === 'JUNIPER_ERR_DATABASE');
    await t.send(message({ subject: 'after the failure' }), { from: 'bounce@example.test', to: [BOB] });
    const later = await newMessages(passwordSink, before + 2, 1);
    assert.deepEqual(later.map((a) => a.raw.toString().match(/^Subject: (.*)\r$/m)?.[1]), ['after the failure'], 'the part of the failed message was not delivered');
  });

  it('sends a raw .eml byte for byte with the given envelope', async () => {
    const before = passwordSink.messages.length;
    const eml = Buffer.from(
      [
        'From: Alice <alice@example.test>',
        'To: Bob <bob@example.test>',
        'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=',
        'Message-ID: <raw-1@example.test>',
        'Date: Tue, 01 Oct 2024 10:00:00 +0000',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: 8bit',
        '',
        'Grüße,',
        '.a line that starts with a dot',
        'Alice',
        '',
      ].join('\r\n'),
    );
    await transport(endpoint(passwordSink.port), password).send(message({ raw: eml, messageId: '<ignored@juniper.test>' }), { from: ALICE, to: [CAROL] });
    const [arrived] = await newMessages(passwordSink, before);
    assert.deepEqual(arrived?.to, [CAROL]);
    assert.deepEqual(arrived?.raw, eml);
  });

  it('reports a recipient refused with 550 and delivers to the others', async () => {
    const refusal = '5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup';
    passwordSink.setBehaviour({ rcptTo: (to) => (to === CAROL ? { code: 550, message: refusal } : undefined) });
    const before = passwordSink.messages.length;
    const result = await transport(endpoint(passwordSink.port), password).send(message({ to: [BOB, CAROL, DAVE] }), { from: ALICE, to: [BOB, CAROL, DAVE] });
    assert.deepEqual(result.accepted, [BOB, DAVE]);
    assert.deepEqual(result.rejected, [{ address: CAROL, response: `550 ${refusal}`, responseCode: 550 }], 'with the reply code, which decides whether the recipient is tried again');
    const [arrived] = await newMessages(passwordSink, before);
    assert.deepEqual(arrived?.to, [BOB, DAVE]);
  });

  it('fails a send refused with 451 at DATA as retryable, and delivers the next send of the same message', async () => {
    passwordSink.setBehaviour({ data: replySequence({ code: 451, message: '4.3.0 Temporary server error. Please try again later' }) });
    const t = transport(endpoint(passwordSink.port), password);
    const mail = message();
    const before = passwordSink.messages.length;
    const err = await t.send(mail, { from: ALICE, to: [BOB] }).then(() => assert.fail('accepted despite 451'), (e: unknown) => e);
    assert.equal((err as { responseCode?: number }).responseCode, 451);
    assert.deepEqual(classifySendError(err, { auth: 'password' }).action, 'retry');
    await t.send(mail, { from: ALICE, to: [BOB] });
    const [arrived] = await newMessages(passwordSink, before);
    assert.ok(arrived?.raw.toString('utf8').includes(`Message-ID: ${mail.messageId}`), 'the retry keeps the Message-ID');
    assert.equal(passwordSink.messages.length, before + 1);
  });

  it('sends several messages over one pooled, authenticated connection', async () => {
    const before = passwordSink.messages.length;
    const attemptsBefore = passwordSink.authAttempts.length;
    const t = transport(endpoint(passwordSink.port), password, undefined, { maxConnections: 1 });
    await Promise.all([1, 2, 3].map((n) => t.send(message({ subject: `pooled ${n}` }), { from: ALICE, to: [BOB] })));
    await newMessages(passwordSink, before, 3);
    assert.equal(passwordSink.authAttempts.length - attemptsBefore, 1);
  });

  it('sends over XOAUTH2 with the token source\'s token', async () => {
    const before = oauthSink.messages.length;
    const tokens = tokenLog(() => idp.mint(ALICE, 300));
    await transport(endpoint(oauthSink.port), { kind: 'oauth2', user: ALICE }, tokens.source).send(message(), { from: ALICE, to: [BOB] });
    const [arrived] = await newMessages(oauthSink, before);
    assert.equal(arrived?.user, ALICE);
    assert.deepEqual(tokens.calls, [false]);
    assert.equal(oauthSink.authAttempts.at(-1)?.method, 'XOAUTH2');
  });

  it('renews an expired token once (renew=true) when the server challenges it, then delivers', async () => {
    const before = oauthSink.messages.length;
    const tokens = tokenLog((renew) => idp.mint(ALICE, renew ? 300 : -60));
    await transport(endpoint(oauthSink.port), { kind: 'oauth2', user: ALICE }, tokens.source).send(message(), { from: ALICE, to: [BOB] });
    assert.deepEqual(tokens.calls, [false, true]);
    assert.equal((await newMessages(oauthSink, before))[0]?.user, ALICE);
  });

  it('renews an expired token once when the server answers a bare 535 as Microsoft 365 does, then delivers', async () => {
    const tokens = tokenLog((renew) => idp.mint(ALICE, renew ? 300 : -60));
    const before = bare535.raws.length;
    await transport(endpoint(bare535.port, { security: 'none' }), { kind: 'oauth2', user: ALICE }, tokens.source).send(message(), { from: ALICE, to: [BOB] });
    assert.deepEqual(tokens.calls, [false, true]);
    assert.equal(bare535.raws.length, before + 1);
  });

  it('gives up after one renewal when the renewed token is refused too: the mail waits with the server\'s reply', async () => {
    const tokens = tokenLog(() => idp.mint(BOB, 300)); // a token of another user: never accepted for ALICE
    const err = await transport(endpoint(bare535.port, { security: 'none' }), { kind: 'oauth2', user: ALICE }, tokens.source)
      .send(message(), { from: ALICE, to: [BOB] })
      .then(() => assert.fail('sent with a token of another user'), (e: unknown) => e);
    assert.deepEqual(tokens.calls, [false, true]);
    const decision = classifySendError(err, { auth: 'outlook' });
    assert.deepEqual([decision.action, decision.failureType, decision.responseCode], ['wait', 'auth', 535]);
    assert.match(decision.reason, /535 5\.7\.3 Authentication unsuccessful/);
  });

  it('recovers concurrent sends on a token that went stale with a bare 535: all delivered, renewed once per connection at most', async () => {
    // Shaped like the token store: renew=false gives the cached token, renew=true refreshes the cache.
    let current = await idp.mint(ALICE, -60);
    const calls: boolean[] = [];
    const source: AccessTokenSource = async (renew) => {
      calls.push(renew);
      if (renew) current = await idp.mint(ALICE, 300);
      return { accessToken: current, expiresAt: Date.now() + 300_000 };
    };
    const before = bare535.raws.length;
    const t = transport(endpoint(bare535.port, { security: 'none' }), { kind: 'oauth2', user: ALICE }, source, { maxConnections: 2 });
    await Promise.all([1, 2, 3, 4].map((n) => t.send(message({ subject: `concurrent ${n}` }), { from: ALICE, to: [BOB] })));
    assert.equal(bare535.raws.length, before + 4);
    const renewed = calls.filter(Boolean).length;
    assert.ok(renewed >= 1 && renewed <= 2, `renewals: ${JSON.stringify(calls)}`);
  });

  it('reports a failing token source as JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE with its transient flag', async () => {
    const failing = (transient: boolean): AccessTokenSource => () => Promise.reject(Object.assign(new Error(transient ? 'identity provider unreachable' : 'invalid_grant'), { transient }));
    for (const transient of [true, false]) {
      const err = await transport(endpoint(oauthSink.port), { kind: 'oauth2', user: ALICE }, failing(transient))
        .send(message(), { from: ALICE, to: [BOB] })
        .then(() => assert.fail('sent without a token'), (e: unknown) => e);
      assert.ok(isAppError(err) && err.code === 'JUNIPER_ERR_OAUTH_TOKEN_UNAVAILABLE', String(err));
      assert.equal(err.details?.transient, transient);
      assert.equal(classifySendError(err, { auth: 'outlook' }).action, transient ? 'retry' : 'wait');
    }
  });

  describe('through Dovecot submission', () => {
    let es256: IdentityServer;
    let relay: SmtpSink;
    let dovecot: Dovecot;
    before(async () => {
      // ES256 tokens (~600 characters) fit Dovecot 2.3 submission's 1 KB AUTH line; RS256 ones do not.
      es256 = await startIdentityServer({ alg: 'ES256' });
      relay = await startSmtpSink({ auth: 'none', tls: 'none' });
      dovecot = await startDovecot({ identityUrl: es256.url, users: { [BOB]: 'bob-secret' }, relayPort: relay.port });
    });
    after(async () => {
      await dovecot.stop();
      await Promise.all([relay.stop(), es256.stop()]);
    });

    it('authenticates with XOAUTH2 (STARTTLS, token from the token source) and the message is relayed', async () => {
      const tokens = tokenLog(() => es256.mint(ALICE, 300));
      const mail = message({ cc: [CAROL] });
      const result = await transport(endpoint(dovecot.submissionPort), { kind: 'oauth2', user: ALICE }, tokens.source).send(mail, { from: ALICE, to: [BOB, CAROL] });
      assert.deepEqual(result.accepted, [BOB, CAROL]);
      const [relayed] = await relay.waitFor(1);
      assert.deepEqual([relayed?.from, relayed?.to], [ALICE, [BOB, CAROL]]);
      assert.ok(relayed?.raw.toString('utf8').includes(`Message-ID: ${mail.messageId}`), 'the relayed message keeps its Message-ID');
      assert.deepEqual(tokens.calls, [false]);
    });
  });
});
