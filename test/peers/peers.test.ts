// Proves each loopback test peer behaves as the gateway's tests rely on: the identity server's OAuth rules
// (PKCE, single-use codes, rotating refresh tokens, injected failures), Dovecot's token and password logins,
// LMTP delivery and submission relay, the SMTP sink's AUTH and scripted replies, the Graph server's sendMail
// (token audience and permissions, Send As, MIME checks, scripted failures), and PostgreSQL.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import pg from 'pg';
import { postgresUrl } from '../helpers/databases.js';
import { startDovecot, type Dovecot } from './dovecot.js';
import {
  DEFAULT_SCOPE,
  GRAPH_AUDIENCE,
  microsoftError,
  OUTLOOK_AUDIENCE,
  startIdentityServer,
  TENANT_ID,
  type IdentityServer,
} from './identity-server.js';
import { GRAPH_MAX_REQUEST_BYTES, graphError, startGraphServer, type GraphServer } from './graph-server.js';
import { replySequence, startSmtpSink, type SinkReply, type SmtpSink } from './smtp-sink.js';

const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const REDIRECT_URI = 'http://127.0.0.1:9/oauth/callback';

type Json = Record<string, unknown>;

function rawMessage(subject: string, to = BOB): string {
  return [`From: ${ALICE}`, `To: ${to}`, `Subject: ${subject}`, `Message-ID: <${crypto.randomUUID()}@example.test>`, '', `Body of ${subject}.`, ''].join('\r\n');
}

function jwtClaims(token: string): Json {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Json;
}

function pkcePair(): { verifier: string; challenge: string } {
  const verifier = crypto.randomBytes(32).toString('base64url');
  return { verifier, challenge: crypto.createHash('sha256').update(verifier).digest('base64url') };
}

/** Runs GET /authorize as a browser would and returns the code from the redirect. */
async function authorize(idp: IdentityServer, params: Record<string, string>): Promise<{ code: string; state: string | null }> {
  const query = new URLSearchParams({ response_type: 'code', client_id: 'juniper-test', redirect_uri: REDIRECT_URI, state: 'st-1', ...params });
  const response = await fetch(`${idp.authorizeUrl}?${query.toString()}`, { redirect: 'manual' });
  assert.equal(response.status, 302);
  const location = new URL(response.headers.get('location') ?? '');
  assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI);
  return { code: location.searchParams.get('code') ?? '', state: location.searchParams.get('state') };
}

async function postToken(idp: IdentityServer, form: Record<string, string>): Promise<{ status: number; body: Json }> {
  const response = await fetch(idp.tokenUrl, { method: 'POST', body: new URLSearchParams({ client_id: 'juniper-test', ...form }) });
  return { status: response.status, body: (await response.json()) as Json };
}

function assertMicrosoftError(result: { status: number; body: Json }, error: string): void {
  assert.equal(result.status, 400);
  assert.equal(result.body.error, error);
  assert.match(String(result.body.error_description), /^AADSTS\d+: /);
  assert.ok(Array.isArray(result.body.error_codes) && typeof result.body.error_codes[0] === 'number');
}

// The peers are independent: their groups run side by side (tests inside a group run in order).
describe('loopback test peers', { concurrency: true }, () => {
describe('identity server', { concurrency: false }, () => {
  let idp: IdentityServer;
  before(async () => {
    idp = await startIdentityServer();
  });
  after(() => idp.stop());

  it('runs the auth-code flow with PKCE S256 and issues tokens for the login_hint user', async () => {
    const { verifier, challenge } = pkcePair();
    const { code, state } = await authorize(idp, { login_hint: BOB, code_challenge: challenge, code_challenge_method: 'S256', scope: 'openid offline_access' });
    assert.equal(state, 'st-1');
    assert.equal(idp.lastAuthorizeQuery?.login_hint, BOB);

    const result = await postToken(idp, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier });
    assert.equal(result.status, 200);
    const { access_token: accessToken, id_token: idToken, refresh_token: refreshToken } = result.body as Record<string, string>;
    for (const claims of [jwtClaims(accessToken ?? ''), jwtClaims(idToken ?? '')]) {
      assert.equal(claims.email, BOB);
      assert.equal(claims.preferred_username, BOB);
      assert.equal(claims.upn, BOB);
    }
    assert.equal(result.body.scope, 'openid offline_access');
    assert.ok((refreshToken ?? '').length > 500, 'refresh tokens are long opaque strings, as Entra ID issues them');

    const userinfo = await fetch(`${idp.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } });
    assert.equal(userinfo.status, 200);
    assert.equal(((await userinfo.json()) as Json).email, BOB);
  });

  it('refuses a code_verifier that does not match the code_challenge, and a missing one, with invalid_grant', async () => {
    const { challenge } = pkcePair();
    const wrong = await authorize(idp, { code_challenge: challenge, code_challenge_method: 'S256' });
    assertMicrosoftError(await postToken(idp, { grant_type: 'authorization_code', code: wrong.code, redirect_uri: REDIRECT_URI, code_verifier: pkcePair().verifier }), 'invalid_grant');
    const missing = await authorize(idp, { code_challenge: challenge, code_challenge_method: 'S256' });
    assertMicrosoftError(await postToken(idp, { grant_type: 'authorization_code', code: missing.code, redirect_uri: REDIRECT_URI }), 'invalid_grant');
  });

  it('accepts a code once and only with the redirect_uri of the authorization request', async () => {
    const first = await authorize(idp, {});
    assertMicrosoftError(await postToken(idp, { grant_type: 'authorization_code', code: first.code, redirect_uri: 'http://127.0.0.1:9/other' }), 'invalid_grant');
    const second = await authorize(idp, {});
    assert.equal((await postToken(idp, { grant_type: 'authorization_code', code: second.code, redirect_uri: REDIRECT_URI })).status, 200);
    const reused = await postToken(idp, { grant_type: 'authorization_code', code: second.code, redirect_uri: REDIRECT_URI });
    assertMicrosoftError(reused, 'invalid_grant');
    assert.match(String(reused.body.error_description), /^AADSTS54005:/);
  });

  it('rotates refresh tokens: a refresh returns a new one and the old one is then refused', async () => {
    const original = idp.issueRefreshToken(ALICE);
    const before = idp.tokenRequests.length;
    const refreshed = await postToken(idp, { grant_type: 'refresh_token', refresh_token: original });
    assert.equal(refreshed.status, 200);
    assert.equal(jwtClaims(String(refreshed.body.access_token)).email, ALICE);
    const rotated = String(refreshed.body.refresh_token);
    assert.notEqual(rotated, original);

    assertMicrosoftError(await postToken(idp, { grant_type: 'refresh_token', refresh_token: original }), 'invalid_grant');
    assertMicrosoftError(await postToken(idp, { grant_type: 'refresh_token', refresh_token: 'never-issued' }), 'invalid_grant');
    assert.equal((await postToken(idp, { grant_type: 'refresh_token', refresh_token: rotated })).status, 200);
    assert.deepEqual(
      idp.tokenRequests.slice(before).map((r) => [r.grantType, r.status, r.user]),
      [['refresh_token', 200, ALICE], ['refresh_token', 400, undefined], ['refresh_token', 400, undefined], ['refresh_token', 200, ALICE]],
    );
  });

  it('answers the next /token request with failNextToken (AADSTS700082 expired refresh token), then normally again', async () => {
    const refreshToken = idp.issueRefreshToken(ALICE);
    idp.failNextToken({ status: 400, body: microsoftError('invalid_grant', 700082, 'The refresh token has expired due to inactivity.') });
    const failed = await postToken(idp, { grant_type: 'refresh_token', refresh_token: refreshToken });
    assertMicrosoftError(failed, 'invalid_grant');
    assert.deepEqual(failed.body.error_codes, [700082]);
    assert.equal(idp.tokenRequests.at(-1)?.error, 'invalid_grant');
    // The injected answer did not consume the refresh token.
    assert.equal((await postToken(idp, { grant_type: 'refresh_token', refresh_token: refreshToken })).status, 200);
  });

  it('setTokenOutage: answers every /token request with a 503 until lifted, then normally again', async () => {
    const refreshToken = idp.issueRefreshToken(ALICE);
    idp.setTokenOutage({ status: 503, body: { error: 'temporarily_unavailable', error_description: 'AADSTS90033: service unavailable' } });
    try {
      for (let i = 0; i < 2; i++) assert.equal((await postToken(idp, { grant_type: 'refresh_token', refresh_token: refreshToken })).status, 503);
    } finally {
      idp.setTokenOutage(null);
    }
    assert.equal((await postToken(idp, { grant_type: 'refresh_token', refresh_token: refreshToken })).status, 200, 'the outage used nothing up');
  });

  it("setTokenOutage('hang'): holds requests; one whose client gave up is dropped unprocessed, a waiting one is answered when it ends", async () => {
    const refreshToken = idp.issueRefreshToken(ALICE);
    idp.setTokenOutage('hang');
    const post = (signal?: AbortSignal) =>
      fetch(idp.tokenUrl, { method: 'POST', body: new URLSearchParams({ client_id: 'juniper-test', grant_type: 'refresh_token', refresh_token: refreshToken }), signal });
    const abandoned = post(AbortSignal.timeout(200));
    await assert.rejects(abandoned, { name: 'TimeoutError' });
    // The server learns that a client gave up when its connection closes, a moment after the client's abort.
    for (let i = 0; i < 100 && idp.heldTokenRequests > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(idp.heldTokenRequests, 0, 'an abandoned request no longer counts');
    const waiting = post();
    for (let i = 0; i < 100 && idp.heldTokenRequests < 1; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(idp.heldTokenRequests, 1, 'the request whose client still waits counts');
    idp.setTokenOutage(null);
    assert.equal((await waiting).status, 200, 'the refresh token was not used up by the abandoned request');
    for (let i = 0; i < 100 && !idp.tokenRequests.some((r) => r.error === 'client_gone'); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(idp.tokenRequests.some((r) => r.status === 0 && r.error === 'client_gone'));
  });

  it('introspects valid tokens as active and expired, revoked or foreign tokens as inactive', async () => {
    const introspect = async (token: string): Promise<Json> => {
      const response = await fetch(`${idp.url}/introspect`, { method: 'POST', body: new URLSearchParams({ token }) });
      return (await response.json()) as Json;
    };
    const valid = await idp.mint(ALICE, 60);
    const revoked = await idp.mint(ALICE, 60);
    idp.revoke(revoked);
    const other = await startIdentityServer({ alg: 'ES256' }); // an EC key is made in a millisecond, RSA takes longer
    try {
      assert.deepEqual([(await introspect(valid)).active, (await introspect(valid)).email], [true, ALICE]);
      assert.equal((await introspect(await idp.mint(ALICE, -60))).active, false);
      assert.equal((await introspect(revoked)).active, false);
      assert.equal((await introspect(await other.mint(ALICE, 60))).active, false);
    } finally {
      await other.stop();
    }
  });

  it('sets aud from the resource of the scopes, as Entra ID: Outlook for IMAP/SMTP, Graph for Mail.Send and bare names', async () => {
    const cases: [string, string][] = [
      [DEFAULT_SCOPE, OUTLOOK_AUDIENCE],
      ['offline_access https://outlook.office.com/SMTP.Send', OUTLOOK_AUDIENCE],
      ['https://graph.microsoft.com/Mail.Send offline_access', GRAPH_AUDIENCE],
      ['Mail.Send User.Read', GRAPH_AUDIENCE],
      ['Mail.ReadWrite', GRAPH_AUDIENCE],
    ];
    for (const [scope, aud] of cases) {
      const minted = jwtClaims(await idp.mint(ALICE, 60, scope));
      assert.equal(minted.aud, aud, `mint for ${scope}`);
      const refreshed = await postToken(idp, { grant_type: 'refresh_token', refresh_token: idp.issueRefreshToken(ALICE, scope) });
      assert.equal(refreshed.status, 200);
      assert.equal(jwtClaims(String(refreshed.body.access_token)).aud, aud, `refresh for ${scope}`);
    }
    assert.equal(jwtClaims(await idp.mint(ALICE, 60)).aud, OUTLOOK_AUDIENCE, 'the default scope is Outlook\'s');
    assert.equal(jwtClaims(await idp.mint(ALICE, 60, 'Mail.Send')).scp, 'Mail.Send');

    const graphToken = await idp.mint(ALICE, 60, 'https://graph.microsoft.com/Mail.Send');
    const userinfo = (await (await fetch(`${idp.url}/userinfo`, { headers: { authorization: `Bearer ${graphToken}` } })).json()) as Json;
    assert.deepEqual([userinfo.aud, userinfo.scp], [GRAPH_AUDIENCE, 'Mail.Send']);
    const introspected = (await (await fetch(`${idp.url}/introspect`, { method: 'POST', body: new URLSearchParams({ token: await idp.mint(ALICE, 60) }) })).json()) as Json;
    assert.deepEqual([introspected.active, introspected.aud, introspected.scp], [true, OUTLOOK_AUDIENCE, 'IMAP.AccessAsUser.All SMTP.Send']);
  });

  it('one consent at /authorize covers Outlook and Graph; a refresh token of it is redeemed for either, and rotates', async () => {
    const consent = 'offline_access openid https://outlook.office.com/SMTP.Send https://graph.microsoft.com/Mail.Send';
    const { code } = await authorize(idp, { login_hint: BOB, scope: consent });
    const before = idp.tokenRequests.length;
    const first = await postToken(idp, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, scope: consent });
    assert.equal(first.status, 200);
    assert.deepEqual([jwtClaims(String(first.body.access_token)).aud, jwtClaims(String(first.body.access_token)).scp], [OUTLOOK_AUDIENCE, 'SMTP.Send']);
    assert.equal(first.body.scope, 'offline_access openid https://outlook.office.com/SMTP.Send', 'a token is for the first resource only');

    const graph = await postToken(idp, { grant_type: 'refresh_token', refresh_token: String(first.body.refresh_token), scope: 'https://graph.microsoft.com/Mail.Send offline_access' });
    assert.equal(graph.status, 200);
    const graphClaims = jwtClaims(String(graph.body.access_token));
    assert.deepEqual([graphClaims.aud, graphClaims.scp, graphClaims.email], [GRAPH_AUDIENCE, 'Mail.Send', BOB]);
    assertMicrosoftError(await postToken(idp, { grant_type: 'refresh_token', refresh_token: String(first.body.refresh_token) }), 'invalid_grant');

    const outlook = await postToken(idp, { grant_type: 'refresh_token', refresh_token: String(graph.body.refresh_token), scope: 'offline_access https://outlook.office.com/SMTP.Send' });
    assert.equal(jwtClaims(String(outlook.body.access_token)).aud, OUTLOOK_AUDIENCE, 'the rotated token keeps the whole consent');
    assert.deepEqual(
      idp.tokenRequests.slice(before).map((r) => [r.grantType, r.status, r.scope?.includes('graph') ?? false, r.aud]),
      [['authorization_code', 200, true, OUTLOOK_AUDIENCE], ['refresh_token', 200, true, GRAPH_AUDIENCE], ['refresh_token', 400, false, undefined], ['refresh_token', 200, false, OUTLOOK_AUDIENCE]],
    );
  });

  it('answers a request spanning two resources with a token for the first one (Microsoft documents it so)', async () => {
    const consent = 'offline_access https://outlook.office.com/SMTP.Send Mail.Send';
    const refreshToken = idp.issueRefreshToken(ALICE, consent);
    const graphFirst = await postToken(idp, { grant_type: 'refresh_token', refresh_token: refreshToken, scope: 'Mail.Send https://outlook.office.com/SMTP.Send offline_access' });
    assert.equal(graphFirst.status, 200);
    assert.deepEqual([jwtClaims(String(graphFirst.body.access_token)).aud, graphFirst.body.scope], [GRAPH_AUDIENCE, 'Mail.Send offline_access']);
    assert.equal(idp.tokenRequests.at(-1)?.aud, GRAPH_AUDIENCE);
  });

  it('refuses a refresh for a resource never consented with invalid_grant AADSTS65001, and the refresh token stays valid', async () => {
    const refreshToken = idp.issueRefreshToken(ALICE); // DEFAULT_SCOPE: Outlook only
    const refused = await postToken(idp, { grant_type: 'refresh_token', refresh_token: refreshToken, scope: 'https://graph.microsoft.com/Mail.Send offline_access' });
    assertMicrosoftError(refused, 'invalid_grant');
    assert.match(String(refused.body.error_description), /^AADSTS65001: The user or administrator has not consented to use the application .*Send an interactive authorization request for this user and resource\./);
    assert.deepEqual(refused.body.error_codes, [65001]);
    assert.deepEqual([idp.tokenRequests.at(-1)?.status, idp.tokenRequests.at(-1)?.error, idp.tokenRequests.at(-1)?.aud], [400, 'invalid_grant', undefined]);
    assertMicrosoftError(await postToken(idp, { grant_type: 'refresh_token', refresh_token: refreshToken, scope: 'Mail.Send' }), 'invalid_grant');

    const outlook = await postToken(idp, { grant_type: 'refresh_token', refresh_token: refreshToken, scope: 'offline_access https://outlook.office.com/SMTP.Send' });
    assert.equal(outlook.status, 200);
    assert.equal(jwtClaims(String(outlook.body.access_token)).aud, OUTLOOK_AUDIENCE);

    const { code } = await authorize(idp, { scope: 'offline_access https://outlook.office.com/SMTP.Send' });
    const redeemed = await postToken(idp, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, scope: 'offline_access Mail.Send' });
    assertMicrosoftError(redeemed, 'invalid_grant');
    assert.deepEqual(redeemed.body.error_codes, [65001], 'a code is redeemed only for what its /authorize consented to');
  });
});

describe('identity server with registered apps', { concurrency: false }, () => {
  const APP = { clientId: '1b4f9c5e-0000-4000-8000-123456789abc', secret: 'Peer8Q~registered-secret-value.0123456789' };
  const CONTOSO = 'contoso.onmicrosoft.com';
  let idp: IdentityServer;
  before(async () => {
    idp = await startIdentityServer({ apps: [{ ...APP, tenants: [TENANT_ID, CONTOSO] }] });
    idp.registerApp({ clientId: '2c5a0d6f-0000-4000-8000-123456789abc', secret: 'Old8Q~expired-secret-value.0123456789', tenants: [CONTOSO], secretExpired: true });
  });
  after(() => idp.stop());

  async function credentials(tenant: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<{ status: number; body: Json }> {
    const response = await fetch(`${idp.url}/${tenant}/oauth2/v2.0/token`, {
      method: 'POST',
      headers,
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'https://graph.microsoft.com/.default', ...form }),
    });
    return { status: response.status, body: (await response.json()) as Json };
  }
  const code = (r: { body: Json }) => (r.body.error_codes as number[] | undefined)?.[0];

  it('issues an app-only Graph token for client_credentials with the right secret, by tenant id or domain, posted or as Basic', async () => {
    for (const tenant of [TENANT_ID, CONTOSO.toUpperCase()]) {
      const granted = await credentials(tenant, { client_id: APP.clientId, client_secret: APP.secret });
      assert.equal(granted.status, 200, JSON.stringify(granted.body));
      assert.equal(granted.body.refresh_token, undefined, 'no refresh token for an app-only grant');
      assert.equal(jwtClaims(String(granted.body.access_token)).aud, GRAPH_AUDIENCE);
    }
    const basic = Buffer.from(`${APP.clientId}:${encodeURIComponent(APP.secret)}`).toString('base64');
    assert.equal((await credentials(CONTOSO, {}, { authorization: `Basic ${basic}` })).status, 200);
    assert.deepEqual([idp.tokenRequests.at(0)?.clientId, idp.tokenRequests.at(0)?.tenant], [APP.clientId, TENANT_ID]);
  });

  it('refuses as Entra ID: wrong secret 7000215, expired secret 7000222, unknown app 700016, unknown tenant 90002, common 50059, no .default 1002012', async () => {
    const cases: [string, Record<string, string>, number, string, number, RegExp][] = [
      [CONTOSO, { client_id: APP.clientId, client_secret: '9a8b7c6d-0000-4000-8000-000000000000' }, 401, 'invalid_client', 7000215, /the client secret value, not the client secret ID/],
      [CONTOSO, { client_id: '2c5a0d6f-0000-4000-8000-123456789abc', client_secret: 'Old8Q~expired-secret-value.0123456789' }, 401, 'invalid_client', 7000222, /client secret keys for app .* are expired/],
      [CONTOSO, { client_id: '3d6b1e70-0000-4000-8000-123456789abc', client_secret: APP.secret }, 400, 'unauthorized_client', 700016, /was not found in the directory 'contoso\.onmicrosoft\.com'/],
      ['fabrikam.onmicrosoft.com', { client_id: APP.clientId, client_secret: APP.secret }, 400, 'invalid_request', 90002, /Tenant 'fabrikam\.onmicrosoft\.com' not found/],
      ['common', { client_id: APP.clientId, client_secret: APP.secret }, 400, 'invalid_request', 50059, /No tenant-identifying information/],
      [CONTOSO, { client_id: APP.clientId, client_secret: APP.secret, scope: 'https://graph.microsoft.com/Mail.Send' }, 400, 'invalid_scope', 1002012, /must have a scope value with \/\.default/],
    ];
    for (const [tenant, form, status, error, aadsts, says] of cases) {
      const refused = await credentials(tenant, form);
      assert.deepEqual([refused.status, refused.body.error, code(refused)], [status, error, aadsts], `${tenant} ${JSON.stringify(form)}`);
      assert.match(String(refused.body.error_description), says);
      assert.ok(!JSON.stringify(refused.body).includes(APP.secret), 'Entra ID never echoes a secret');
    }
    // The expired secret's app is not in the home tenant of the first app: AADSTS700016 there, as Entra ID says.
    assert.equal(code(await credentials(TENANT_ID, { client_id: '2c5a0d6f-0000-4000-8000-123456789abc', client_secret: 'Old8Q~expired-secret-value.0123456789' })), 700016);
  });

  it('authenticates the client at a refresh too (a wrong secret is AADSTS7000215 there as well)', async () => {
    const refreshToken = idp.issueRefreshToken(ALICE);
    const response = await fetch(`${idp.url}/common/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: APP.clientId, client_secret: 'wrong', scope: 'offline_access https://outlook.office.com/SMTP.Send' }),
    });
    assert.equal(response.status, 401);
    assert.deepEqual(((await response.json()) as Json).error_codes, [7000215]);
  });
});

describe('smtp sink', { concurrency: false }, () => {
  let idp: IdentityServer;
  let sink: SmtpSink;
  let passwordSink: SmtpSink;
  before(async () => {
    idp = await startIdentityServer();
    [sink, passwordSink] = await Promise.all([
      startSmtpSink({ auth: 'xoauth2', identityUrl: idp.url }),
      startSmtpSink({ auth: 'password', passwords: { [ALICE]: 'secret' } }),
    ]);
  });
  after(() => Promise.all([sink.stop(), passwordSink.stop(), idp.stop()]));

  const transport = (auth: { user: string; accessToken: string } | { user: string; pass: string }, extra: object = {}) =>
    nodemailer.createTransport({
      host: '127.0.0.1',
      port: 'accessToken' in auth ? sink.port : passwordSink.port,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: 'accessToken' in auth ? { type: 'OAuth2', ...auth } : auth,
      ...extra,
    });
  const send = (t: ReturnType<typeof transport>, to: string[] = [BOB]) =>
    t.sendMail({ envelope: { from: ALICE, to }, raw: rawMessage('sink test', to.join(', ')) });

  it('accepts XOAUTH2 after STARTTLS with a token of the SMTP user and stores the message', async () => {
    const before = sink.messages.length;
    await send(transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60) }));
    const [message] = (await sink.waitFor(before + 1)).slice(before);
    assert.deepEqual([message?.from, message?.to, message?.user, message?.secure], [ALICE, [BOB], ALICE, true]);
    assert.match(message?.raw.toString('utf8') ?? '', /Subject: sink test/);
  });

  it('refuses XOAUTH2 with a garbage token, an expired token and another user\'s token (535)', async () => {
    for (const token of ['garbage', await idp.mint(ALICE, -60), await idp.mint(BOB, 60)]) {
      await assert.rejects(send(transport({ user: ALICE, accessToken: token })), { code: 'EAUTH', responseCode: 535 });
    }
  });

  it('refuses XOAUTH2 with a Microsoft Graph token of the SMTP user (wrong aud) like a bad token, and takes an Outlook one', async () => {
    const attempts = sink.authAttempts.length;
    for (const scope of ['https://graph.microsoft.com/Mail.Send', 'Mail.Send User.Read']) {
      await assert.rejects(send(transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60, scope) })), { code: 'EAUTH', responseCode: 535 });
    }
    await send(transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60, 'https://outlook.office.com/SMTP.Send') }));
    const oks = sink.authAttempts.slice(attempts).map((a) => a.ok); // nodemailer tries a refused token twice
    assert.deepEqual([oks.filter(Boolean).length, oks.at(-1)], [1, true]);
  });

  it('setAuthDisabled answers AUTH with Microsoft\'s 535 5.7.139 for the tenant or listed mailboxes until switched back', async () => {
    const disabledFor = (where: 'Tenant' | 'Mailbox') =>
      new RegExp(`^535 5\\.7\\.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the ${where}\\. Visit https://aka\\.ms/smtp_auth_disabled for more information\\.$`);
    const refusals = sink.refusals.length;
    try {
      sink.setAuthDisabled(true);
      await assert.rejects(send(transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60) })), { code: 'EAUTH', responseCode: 535, response: disabledFor('Tenant') });
      passwordSink.setAuthDisabled(true);
      await assert.rejects(send(transport({ user: ALICE, pass: 'secret' })), { code: 'EAUTH', responseCode: 535, response: disabledFor('Tenant') });
      passwordSink.setAuthDisabled(false);

      sink.setAuthDisabled([ALICE.toUpperCase()]);
      await assert.rejects(send(transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60) })), { responseCode: 535, response: disabledFor('Mailbox') });
      const before = sink.messages.length;
      await send(transport({ user: BOB, accessToken: await idp.mint(BOB, 60) }));
      assert.equal(sink.messages.length, before + 1, 'a mailbox not listed still sends');
    } finally {
      sink.setAuthDisabled(false);
    }
    await send(transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60) }));
    assert.deepEqual(
      sink.refusals.slice(refusals).map((r) => [r.stage, r.code, r.address]),
      [['auth', 535, ALICE], ['auth', 535, ALICE]],
      'the password sink keeps its own refusals',
    );
    assert.equal(passwordSink.refusals.at(-1)?.stage, 'auth');
  });

  it('refuses AUTH before STARTTLS, as Microsoft 365 does', async () => {
    const t = transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60) }, { requireTLS: false, ignoreTLS: true });
    await assert.rejects(send(t), { code: 'EAUTH', responseCode: 538 });
  });

  it('accepts PLAIN with the right password and refuses a wrong one', async () => {
    await send(transport({ user: ALICE, pass: 'secret' }));
    assert.equal(passwordSink.messages.length, 1);
    await assert.rejects(send(transport({ user: ALICE, pass: 'wrong' })), { code: 'EAUTH', responseCode: 535 });
  });

  it('answers DATA with 451 twice, then accepts the third attempt', async () => {
    const tempFail: SinkReply = { code: 451, message: '4.3.0 Temporary server error. Please try again later' };
    sink.setBehaviour({ data: replySequence(tempFail, tempFail) });
    const t = transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60) });
    const before = sink.messages.length;
    await assert.rejects(send(t), { responseCode: 451 });
    await assert.rejects(send(t), { responseCode: 451 });
    await send(t);
    assert.equal(sink.messages.length, before + 1);
    assert.deepEqual(sink.refusals.slice(-2).map((r) => [r.stage, r.code]), [['data', 451], ['data', 451]]);
    sink.setBehaviour({});
  });

  it('refuses one recipient with 550 and delivers to the others', async () => {
    const bad = 'nobody@example.test';
    sink.setBehaviour({ rcptTo: (to) => (to === bad ? { code: 550, message: '5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found' } : undefined) });
    const before = sink.messages.length;
    const info = await send(transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60) }), [BOB, bad]);
    assert.deepEqual([info.accepted, info.rejected], [[BOB], [bad]]);
    assert.deepEqual(sink.messages.slice(before).map((m) => m.to), [[BOB]]);
    sink.setBehaviour({});
  });

  it('refuses a sender at MAIL FROM', async () => {
    sink.setBehaviour({ mailFrom: () => ({ code: 550, message: '5.7.60 SMTP; Client does not have permissions to send as this sender' }) });
    const before = sink.messages.length;
    await assert.rejects(send(transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60) })), { code: 'EENVELOPE', responseCode: 550 });
    assert.equal(sink.messages.length, before);
    assert.equal(sink.refusals.at(-1)?.stage, 'mail');
    sink.setBehaviour({});
  });

  it('dropConnections hangs up every open session, so a pooled client connects and authenticates again', async () => {
    const t = transport({ user: ALICE, accessToken: await idp.mint(ALICE, 60) }, { pool: true, maxConnections: 1 });
    try {
      const before = sink.authAttempts.length;
      await send(t);
      assert.equal(sink.dropConnections(), 1);
      await new Promise((r) => setTimeout(r, 100)); // the client reads the close before its next send
      await send(t);
      assert.deepEqual(sink.authAttempts.slice(before).map((a) => a.ok), [true, true]);
    } finally {
      t.close();
    }
  });

  it('delayMs holds each DATA reply at least that long after the message arrived', async () => {
    let arrivedAt = 0;
    const slow = await startSmtpSink({ auth: 'password', passwords: { [ALICE]: 'secret' }, delayMs: 300, behaviour: { data: () => void (arrivedAt = Date.now()) } });
    try {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: slow.port, requireTLS: true, tls: { rejectUnauthorized: false }, auth: { user: ALICE, pass: 'secret' } });
      await send(t);
      // The reply, not the receipt, waits: the client got its 250 only after the delay.
      assert.ok(Date.now() - arrivedAt >= 300, `answered ${Date.now() - arrivedAt} ms after the message arrived`);
      assert.equal(slow.messages.length, 1);
    } finally {
      await slow.stop();
    }
  });
});

describe('dovecot', { concurrency: false }, () => {
  let idp: IdentityServer;
  let relay: SmtpSink;
  let dovecot: Dovecot;
  before(async () => {
    // ES256: compact tokens fit Dovecot 2.3 submission's 1 KB AUTH line (RS256 ones do not).
    idp = await startIdentityServer({ alg: 'ES256' });
    relay = await startSmtpSink({ auth: 'none', tls: 'none' });
    dovecot = await startDovecot({ identityUrl: idp.url, users: { [BOB]: 'bob-secret' }, relayPort: relay.port });
  });
  after(async () => {
    await dovecot.stop();
    await Promise.all([relay.stop(), idp.stop()]);
  });

  const imap = (auth: { user: string; accessToken: string } | { user: string; pass: string }, tls: 'implicit' | 'starttls' = 'implicit') => {
    const client = new ImapFlow({
      host: '127.0.0.1',
      port: tls === 'implicit' ? dovecot.imapsPort : dovecot.imapPort,
      secure: tls === 'implicit',
      auth,
      logger: false,
      tls: { rejectUnauthorized: false },
    });
    client.on('error', () => undefined); // failures surface as connect() rejections
    return client;
  };
  const assertLoginRefused = async (auth: { user: string; accessToken: string }): Promise<void> => {
    await assert.rejects(imap(auth).connect(), { authenticationFailed: true, serverResponseCode: 'AUTHENTICATIONFAILED' });
  };

  it('logs in over IMAPS with XOAUTH2 and a valid token (imapflow accessToken)', async () => {
    const client = imap({ user: ALICE, accessToken: await idp.mint(ALICE, 60) });
    await client.connect();
    assert.equal(client.authenticated, true);
    await client.logout();
  });

  // Dovecot answers failed logins in batches every 500 ms: run the refusals side by side.
  describe('refuses XOAUTH2 logins', { concurrency: true }, () => {
    it('with an expired token', async () => assertLoginRefused({ user: ALICE, accessToken: await idp.mint(ALICE, -60) }));
    it('with a token of another user', async () => assertLoginRefused({ user: ALICE, accessToken: await idp.mint(BOB, 60) }));
    it('with a garbage token', async () => assertLoginRefused({ user: ALICE, accessToken: 'not-a-token' }));
    it('with a revoked token', async () => {
      const token = await idp.mint(ALICE, 60);
      idp.revoke(token);
      await assertLoginRefused({ user: ALICE, accessToken: token });
    });
    it('with a Microsoft Graph token of the user (aud https://graph.microsoft.com)', async () => {
      await assertLoginRefused({ user: ALICE, accessToken: await idp.mint(ALICE, 60, 'https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/Mail.ReadWrite') });
      // Dovecot 2.3's words for a failed active_attribute (aud) check: the audience refused it, nothing else.
      assert.match(dovecot.logTail(200), /oauth2 failed: Token validation failed: Provided token is not valid/);
    });
    it('in introspect mode too: a Graph token is refused, an Outlook one logs in', async () => {
      const introspecting = await startDovecot({ identityUrl: idp.url, users: {}, oauthMode: 'introspect' });
      const login = (accessToken: string) => {
        const client = new ImapFlow({ host: '127.0.0.1', port: introspecting.imapsPort, secure: true, auth: { user: ALICE, accessToken }, logger: false, tls: { rejectUnauthorized: false } });
        client.on('error', () => undefined);
        return client;
      };
      try {
        await assert.rejects(login(await idp.mint(ALICE, 60, 'Mail.Send')).connect(), { authenticationFailed: true });
        const client = login(await idp.mint(ALICE, 60, 'offline_access https://outlook.office.com/IMAP.AccessAsUser.All'));
        await client.connect();
        await client.logout();
      } finally {
        await introspecting.stop();
      }
    });
  });

  it('delivers over LMTP into the INBOX, fetched byte-identical over IMAP with STARTTLS and a password', async () => {
    const raw = rawMessage('lmtp delivery');
    await dovecot.deliver(BOB, raw);
    const client = imap({ user: BOB, pass: 'bob-secret' }, 'starttls');
    await client.connect();
    try {
      assert.equal(client.secureConnection, true);
      await client.mailboxOpen('INBOX');
      const message = await client.fetchOne('*', { source: true });
      // Dovecot adds Return-Path, Delivered-To and Received above the message as sent.
      assert.ok(message && message.source?.toString('utf8').endsWith(`\r\n${raw}`), 'the delivered message, unchanged');
    } finally {
      await client.logout();
    }
  });

  it('relays a submission authenticated with XOAUTH2 (ES256 token) to the SMTP relay', async () => {
    const token = await idp.mint(ALICE, 60);
    const authLine = `AUTH XOAUTH2 ${Buffer.from(`user=${ALICE}\x01auth=Bearer ${token}\x01\x01`).toString('base64')}`;
    assert.ok(authLine.length <= 1024, `the AUTH line (${authLine.length} bytes) fits Dovecot 2.3 submission's 1 KB limit`);
    const t = nodemailer.createTransport({
      host: '127.0.0.1',
      port: dovecot.submissionPort,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { type: 'OAuth2', user: ALICE, accessToken: token },
    });
    await t.sendMail({ envelope: { from: ALICE, to: [BOB] }, raw: rawMessage('via submission') });
    const [message] = await relay.waitFor(1);
    assert.deepEqual([message?.from, message?.to], [ALICE, [BOB]]);
    assert.match(message?.raw.toString('utf8') ?? '', /Subject: via submission/);

    const expired = nodemailer.createTransport({
      host: '127.0.0.1',
      port: dovecot.submissionPort,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { type: 'OAuth2', user: ALICE, accessToken: await idp.mint(ALICE, -60) },
    });
    await assert.rejects(expired.sendMail({ envelope: { from: ALICE, to: [BOB] }, raw: rawMessage('refused') }), { code: 'EAUTH', responseCode: 535 });
  });
});

describe('graph server', { concurrency: false }, () => {
  const GRAPH_SCOPE = 'https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/User.Read';
  const SHARED = 'shared@example.test';
  let idp: IdentityServer;
  let graph: GraphServer;
  before(async () => {
    idp = await startIdentityServer({ alg: 'ES256' }); // an EC key is made in a millisecond
    graph = await startGraphServer({ identityUrl: idp.url });
  });
  after(() => Promise.all([graph.stop(), idp.stop()]));

  type GraphErrorBody = { error: { code: string; message: string; innerError: Record<string, string> } };
  const post = (token: string | undefined, body: string, opts: { path?: string; type?: string; signal?: AbortSignal } = {}) =>
    fetch(`${graph.url}${opts.path ?? '/v1.0/me/sendMail'}`, {
      method: 'POST',
      headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), 'content-type': opts.type ?? 'text/plain' },
      body,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  const mime = (raw: string) => Buffer.from(raw).toString('base64');
  const graphToken = (user = ALICE, scope = GRAPH_SCOPE) => idp.mint(user, 60, scope);
  /** Asserts a Graph error answer: status, code, message (string or pattern), and an innerError naming the request-id header. */
  const assertGraphError = async (response: Response, status: number, code: string, message?: string | RegExp): Promise<GraphErrorBody['error']> => {
    assert.equal(response.status, status);
    const { error } = (await response.json()) as GraphErrorBody;
    assert.equal(error.code, code);
    if (typeof message === 'string') assert.equal(error.message, message);
    else if (message) assert.match(error.message, message);
    assert.equal(error.innerError['request-id'], response.headers.get('request-id'));
    assert.match(error.innerError.date ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
    return error;
  };

  it('accepts a base64 MIME sendMail with a Graph token: 202, empty body, request-id; the message is stored decoded', async () => {
    const raw = rawMessage('graph send');
    const response = await post(await graphToken(), mime(raw));
    assert.equal(response.status, 202);
    assert.equal(await response.text(), '');
    assert.match(response.headers.get('request-id') ?? '', /^[0-9a-f-]{36}$/);
    const [message] = (await graph.waitFor(1)).slice(-1);
    assert.deepEqual([message?.mailbox, message?.path, message?.sendAs, message?.raw.toString('utf8')], [ALICE, '/v1.0/me/sendMail', null, raw]);
    assert.deepEqual(graph.requests.at(-1), { method: 'POST', path: '/v1.0/me/sendMail', status: 202, aud: GRAPH_AUDIENCE });

    // Base64 wrapped at 76 characters (as the Graph docs' example is), and a path in other case: Graph takes both.
    const wrapped = mime(rawMessage('wrapped')).replace(/.{76}/g, '$&\r\n');
    assert.equal((await post(await graphToken(), wrapped, { path: '/v1.0/ME/SENDMAIL' })).status, 202);
    assert.match(graph.messages.at(-1)?.raw.toString('utf8') ?? '', /Subject: wrapped/);
  });

  it('refuses an Outlook token, an expired, a garbage and a missing token with 401 InvalidAuthenticationToken in Graph\'s words', async () => {
    const before = graph.messages.length;
    const outlook = await post(await idp.mint(ALICE, 60, 'https://outlook.office.com/SMTP.Send'), mime(rawMessage('x')));
    await assertGraphError(outlook, 401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.');
    assert.match(outlook.headers.get('www-authenticate') ?? '', /^Bearer realm="", authorization_uri="https:\/\/login\.microsoftonline\.com\/common\/oauth2\/authorize", client_id="00000003-0000-0000-c000-000000000000"$/);
    assert.deepEqual([graph.requests.at(-1)?.status, graph.requests.at(-1)?.aud], [401, OUTLOOK_AUDIENCE]);
    await assertGraphError(await post(await idp.mint(ALICE, -60, GRAPH_SCOPE), mime(rawMessage('x'))), 401, 'InvalidAuthenticationToken', 'Lifetime validation failed, the token is expired.');
    await assertGraphError(await post('not-a-token', mime(rawMessage('x'))), 401, 'InvalidAuthenticationToken', /^IDX14100: JWT is not well formed/);
    await assertGraphError(await post(undefined, mime(rawMessage('x'))), 401, 'InvalidAuthenticationToken', 'Access token is empty.');
    const revoked = await graphToken();
    idp.revoke(revoked);
    await assertGraphError(await post(revoked, mime(rawMessage('x'))), 401, 'InvalidAuthenticationToken', 'Access token validation failure.');
    assert.equal(graph.messages.length, before);
  });

  it('refuses a Graph token without Mail.Send with 403 ErrorAccessDenied', async () => {
    for (const scope of ['https://graph.microsoft.com/User.Read', 'Mail.Send.Shared', 'openid']) {
      await assertGraphError(await post(await graphToken(ALICE, scope), mime(rawMessage('x'))), 403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
    }
  });

  it('send as: /users/{other}/sendMail and a From of another address get 403 ErrorSendAsDenied until grantSendAs', async () => {
    const denied = /^The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account\. Cannot submit message\.$/;
    const token = await graphToken();
    const sharedPath = `/v1.0/users/${encodeURIComponent(SHARED)}/sendMail`;
    await assertGraphError(await post(token, mime(rawMessage('as shared')), { path: sharedPath }), 403, 'ErrorSendAsDenied', denied);
    const fromShared = rawMessage('from shared').replace(`From: ${ALICE}`, `From: Shared <${SHARED}>`);
    await assertGraphError(await post(token, mime(fromShared)), 403, 'ErrorSendAsDenied', denied);

    // Its own address is always allowed, in any case, URL-encoded or not.
    assert.equal((await post(token, mime(rawMessage('own')), { path: `/v1.0/users/${encodeURIComponent(ALICE.toUpperCase())}/sendMail` })).status, 202);
    assert.equal(graph.messages.at(-1)?.sendAs, ALICE);

    graph.grantSendAs(ALICE.toUpperCase(), 'Shared@Example.test');
    assert.equal((await post(token, mime(rawMessage('as shared')), { path: sharedPath.replace('sendMail', 'sendmail') })).status, 202);
    assert.deepEqual([graph.messages.at(-1)?.mailbox, graph.messages.at(-1)?.sendAs], [ALICE, SHARED]);
    assert.equal((await post(token, mime(fromShared))).status, 202);
    await assertGraphError(await post(await graphToken(BOB), mime(rawMessage('bob as shared')), { path: sharedPath }), 403, 'ErrorSendAsDenied');
  });

  it('refuses bad base64, a body that is not MIME and a message without recipients with 400 and Graph\'s codes', async () => {
    const token = await graphToken();
    for (const body of ['not base64!', 'QUJD=', '', mime(rawMessage('x')).replace(/\+|\//g, '-')]) {
      await assertGraphError(await post(token, body), 400, 'ErrorMimeContentInvalidBase64String', 'Invalid base64 string for MIME content.');
    }
    await assertGraphError(await post(token, mime('just some text, no header block\r\n')), 400, 'ErrorMimeContentInvalid');
    await assertGraphError(await post(token, mime(`From: ${ALICE}\r\nSubject: nobody\r\n\r\nNo recipients.\r\n`)), 400, 'ErrorInvalidRecipients', /contains no recipients/);
    assert.equal((await post(token, mime(`From: ${ALICE}\r\nBcc: ${BOB}\r\nSubject: bcc only\r\n\r\nHi.\r\n`))).status, 202, 'a Bcc header is a recipient');
  });

  it('failNext answers the next sendMail requests (429 with Retry-After, then 503), then Graph answers normally again', async () => {
    const token = await graphToken();
    graph.failNext(
      { status: 429, headers: { 'Retry-After': '3' }, body: graphError('ApplicationThrottled', 'Application is over its MailboxConcurrency limit.') },
      { status: 503, body: graphError('ServiceNotAvailable', 'Service is temporarily unavailable.') },
    );
    const before = graph.messages.length;
    const throttled = await post(token, mime(rawMessage('x')));
    assert.equal(throttled.headers.get('retry-after'), '3');
    await assertGraphError(throttled, 429, 'ApplicationThrottled', 'Application is over its MailboxConcurrency limit.');
    await assertGraphError(await post(token, mime(rawMessage('x'))), 503, 'ServiceNotAvailable');
    assert.equal((await post(token, mime(rawMessage('after the failures')))).status, 202);
    assert.equal(graph.messages.length, before + 1);
    assert.deepEqual(graph.requests.slice(-3).map((r) => r.status), [429, 503, 202]);
  });

  it('answers a request body over 4 MB with 413 and Graph\'s message; one just under is sent', async () => {
    const token = await graphToken();
    const withBody = (bytes: number) => `${rawMessage('big').trimEnd()}\r\n${'a'.repeat(bytes)}\r\n`;
    const over = mime(withBody(3 * 1024 * 1024 + 16 * 1024));
    assert.ok(over.length > GRAPH_MAX_REQUEST_BYTES);
    await assertGraphError(await post(token, over), 413, 'BadRequest', 'The maximum request length supported is 4MB.');
    const under = mime(withBody(3 * 1024 * 1024 - 16 * 1024));
    assert.ok(under.length < GRAPH_MAX_REQUEST_BYTES);
    assert.equal((await post(token, under)).status, 202);
  });

  it('stores a JSON sendMail as json with saveToSentItems (a boolean or Graph\'s "false" string); a foreign from is ErrorSendAsDenied', async () => {
    const token = await graphToken();
    const message = { subject: 'json send', body: { contentType: 'Text', content: 'Hi.' }, toRecipients: [{ emailAddress: { address: BOB } }] };
    for (const [saveToSentItems, expected] of [[false, false], ['false', false], [undefined, undefined]] as const) {
      const response = await post(token, JSON.stringify({ message, saveToSentItems }), { type: 'application/json' });
      assert.equal(response.status, 202);
      const stored = graph.messages.at(-1);
      assert.deepEqual([stored?.json, stored?.saveToSentItems, stored?.raw.length], [message, expected, 0]);
    }
    await assertGraphError(await post(token, '{"message":', { type: 'application/json' }), 400, 'BadRequest', /^Unable to read JSON request payload/);
    await assertGraphError(await post(token, JSON.stringify({ message: { subject: 'x' } }), { type: 'application/json' }), 400, 'ErrorInvalidRecipients');
    await assertGraphError(await post(token, JSON.stringify({ message: { ...message, from: { emailAddress: { address: 'pattif@example.test' } } } }), { type: 'application/json' }), 403, 'ErrorSendAsDenied');
  });

  it('GET /v1.0/me answers the token\'s user with User.Read, and 403 Authorization_RequestDenied without it', async () => {
    const token = await graphToken(BOB);
    const response = await fetch(`${graph.url}/v1.0/me`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(response.status, 200);
    const me = (await response.json()) as Json;
    assert.deepEqual(
      [me['@odata.context'], me.mail, me.userPrincipalName, me.displayName, me.id],
      [`${graph.url}/v1.0/$metadata#users/$entity`, BOB, BOB, 'bob', jwtClaims(token).oid],
    );
    const mailOnly = await fetch(`${graph.url}/v1.0/me`, { headers: { authorization: `Bearer ${await graphToken(BOB, 'Mail.Send')}` } });
    await assertGraphError(mailOnly, 403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
  });

  it('answers an unknown segment or method with 400 BadRequest "Resource not found for the segment"', async () => {
    const token = await graphToken();
    const get = (path: string) => fetch(`${graph.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    await assertGraphError(await get('/v1.0/me/sendMailz'), 400, 'BadRequest', "Resource not found for the segment 'sendMailz'.");
    await assertGraphError(await get('/v1.0/me/sendMail'), 400, 'BadRequest', "Resource not found for the segment 'sendMail'.");
    await assertGraphError(await get('/v1.0/nothing'), 400, 'BadRequest', "Resource not found for the segment 'nothing'.");
  });

  it('setHang holds sendMail requests; one whose client gave up is dropped unprocessed, a waiting one is sent when it ends', async () => {
    const token = await graphToken();
    const before = graph.messages.length;
    const requestsBefore = graph.requests.length;
    graph.setHang(true);
    try {
      await assert.rejects(post(token, mime(rawMessage('abandoned')), { signal: AbortSignal.timeout(200) }), { name: 'TimeoutError' });
      // The server learns that a client gave up when its connection closes, a moment after the client's abort.
      for (let i = 0; i < 100 && graph.heldRequests > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(graph.heldRequests, 0, 'an abandoned request no longer counts');
      const waiting = post(token, mime(rawMessage('waited')));
      for (let i = 0; i < 100 && graph.heldRequests < 1; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(graph.heldRequests, 1);
      graph.setHang(false);
      assert.equal((await waiting).status, 202);
    } finally {
      graph.setHang(false);
    }
    assert.deepEqual(graph.messages.slice(before).map((m) => /Subject: (\w+)/.exec(m.raw.toString('utf8'))?.[1]), ['waited']);
    assert.deepEqual(graph.requests.slice(requestsBefore).map((r) => r.status), [0, 202]);
  });
});

describe('postgresql', { concurrency: false }, () => {
  it('answers select 1 at JUNIPER_TEST_PG_URL', async () => {
    const client = new pg.Client({ connectionString: postgresUrl() });
    await client.connect();
    try {
      const result = await client.query<{ one: number }>('select 1 as one');
      assert.equal(result.rows[0]?.one, 1);
    } finally {
      await client.end();
    }
  });
});
});
