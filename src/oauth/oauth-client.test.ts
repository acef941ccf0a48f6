// The OAuth client against the loopback Microsoft-shaped identity server (test/peers/identity-server.ts):
// the real authorize redirect, code + PKCE exchange, rotating refresh, and Microsoft-shaped failures. A few
// cases the peer cannot produce (a multi-tenant `iss`, a silent endpoint) use a canned HTTP responder.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { microsoftError, startIdentityServer, type IdentityServer } from '../../test/peers/identity-server.js';
import { isAppError, type AppError } from '../lib/errors.js';
import { scopeFor } from './microsoft.js';
import { buildAuthorizeUrl, clientCredentialsToken, exchangeCode, newPkce, newState, refreshAccessToken, type OAuthAppCredentials, type TokenSet } from './oauth-client.js';
import { oauthErrorDetails } from './oauth-errors.js';

const CLIENT_ID = '1b4f9c5e-2a7d-4f0e-8c3b-9d6a5e4f3b21';
const CLIENT_SECRET = 'Qx8~kZ3pL.secret-value_9fT2mWv7rYb4nC1dE6gH';
const REDIRECT_URI = 'https://mail.example.test/microsoft_outlook/confirm';
const BOB = 'bob@contoso.test';
const SCOPE = scopeFor('outgoing');

/** Every secret the tests handed to or received from the client; none may appear in an error. */
const secrets = new Set<string>([CLIENT_SECRET]);
const errorsSeen: AppError[] = [];

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isAppError(err), `expected an AppError, got ${String(err)}`);
    assert.equal(err.code, 'JUNIPER_ERR_OAUTH');
    errorsSeen.push(err);
    return err;
  }
  assert.fail('expected the promise to reject');
}

/** Everything a logger or an API response could show of an error: message, details, the cause chain. */
function visibleText(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 6; depth++) {
    if (e instanceof Error) {
      parts.push(e.name, e.message, String(e.stack), JSON.stringify(e), JSON.stringify((e as { details?: unknown }).details ?? null));
      e = e.cause;
    } else {
      parts.push(JSON.stringify(e));
      break;
    }
  }
  return parts.join('\n');
}

/** Runs /authorize as a browser would and returns the code Microsoft puts on the redirect. */
async function authorize(url: string): Promise<{ code: string; state: string | null }> {
  const response = await fetch(url, { redirect: 'manual' });
  assert.equal(response.status, 302);
  const location = new URL(response.headers.get('location') ?? '');
  assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI);
  const code = location.searchParams.get('code');
  assert.ok(code, `no code in ${location.href}`);
  secrets.add(code);
  return { code, state: location.searchParams.get('state') };
}

function track(tokens: TokenSet): TokenSet {
  secrets.add(tokens.accessToken);
  if (tokens.refreshToken) secrets.add(tokens.refreshToken);
  return tokens;
}

describe('oauth-client', { concurrency: false }, () => {
  let idp: IdentityServer;
  let app: OAuthAppCredentials;

  before(async () => {
    idp = await startIdentityServer();
    app = { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, authority: `${idp.url}/common/oauth2/v2.0/` };
  });
  after(async () => {
    await idp.stop();
  });

  /** A full sign-in for BOB: authorize, then exchange with the matching verifier. */
  async function connect(): Promise<TokenSet> {
    const pkce = await newPkce();
    secrets.add(pkce.verifier);
    const state = newState();
    const { code } = await authorize(buildAuthorizeUrl(app, { redirectUri: REDIRECT_URI, scope: SCOPE, state, codeChallenge: pkce.challenge, loginHint: BOB }));
    return track(await exchangeCode(app, { code, redirectUri: REDIRECT_URI, codeVerifier: pkce.verifier, scope: SCOPE }));
  }

  it('builds the authorize URL of DESIGN §5', () => {
    const url = new URL(
      buildAuthorizeUrl(
        { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, authority: 'https://login.microsoftonline.com/common/oauth2/v2.0/' },
        { redirectUri: REDIRECT_URI, scope: SCOPE, state: 'st', codeChallenge: 'ch', loginHint: BOB },
      ),
    );
    assert.equal(`${url.origin}${url.pathname}`, 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize');
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      client_id: CLIENT_ID,
      response_type: 'code',
      response_mode: 'query',
      redirect_uri: REDIRECT_URI,
      scope: 'offline_access openid email https://outlook.office.com/SMTP.Send',
      state: 'st',
      code_challenge: 'ch',
      code_challenge_method: 'S256',
      prompt: 'select_account',
      login_hint: BOB,
    });
    assert.ok(!url.href.includes(CLIENT_SECRET), 'the secret never goes to the browser');
  });

  it('omits login_hint when the server has no username, and tolerates an authority without its slash', () => {
    const url = new URL(
      buildAuthorizeUrl(
        { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, authority: 'https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0' },
        { redirectUri: REDIRECT_URI, scope: scopeFor('incoming'), state: 'st', codeChallenge: 'ch', loginHint: null },
      ),
    );
    assert.equal(url.pathname, '/contoso.onmicrosoft.com/oauth2/v2.0/authorize');
    assert.equal(url.searchParams.has('login_hint'), false);
    assert.equal(url.searchParams.get('scope'), 'offline_access openid email https://outlook.office.com/IMAP.AccessAsUser.All');
  });

  it('makes S256 PKCE pairs and unguessable states', async () => {
    const { verifier, challenge } = await newPkce();
    assert.match(verifier, /^[A-Za-z0-9_-]{43,128}$/);
    assert.equal(challenge, crypto.createHash('sha256').update(verifier).digest('base64url'));
    assert.notEqual((await newPkce()).verifier, verifier);
    const states = new Set(Array.from({ length: 50 }, () => newState()));
    assert.equal(states.size, 50);
    for (const s of states) assert.ok(s.length >= 32);
  });

  it('exchanges the code with the PKCE verifier and names the login_hint account', async () => {
    const pkce = await newPkce();
    secrets.add(pkce.verifier);
    const state = newState();
    const { code, state: returnedState } = await authorize(
      buildAuthorizeUrl(app, { redirectUri: REDIRECT_URI, scope: SCOPE, state, codeChallenge: pkce.challenge, loginHint: BOB }),
    );
    assert.equal(returnedState, state);
    assert.equal(idp.lastAuthorizeQuery?.code_challenge_method, 'S256');
    assert.equal(idp.lastAuthorizeQuery?.prompt, 'select_account');
    assert.equal(idp.lastAuthorizeQuery?.response_mode, 'query');

    const before = Date.now();
    const tokens = track(await exchangeCode(app, { code, redirectUri: REDIRECT_URI, codeVerifier: pkce.verifier, scope: SCOPE }));
    assert.equal(tokens.account, BOB);
    assert.equal(tokens.scope, SCOPE);
    assert.ok(tokens.refreshToken, 'offline_access brings a refresh token');
    assert.ok(tokens.expiresAt >= before + 3_599_000 && tokens.expiresAt <= Date.now() + 3_600_000, `expiresAt ${tokens.expiresAt}`);
    const check = idp.checkToken(tokens.accessToken);
    assert.ok(check.ok, 'the access token is one the identity server accepts');
    assert.equal(check.claims.email, BOB);
  });

  it('refreshes, returns the rotated refresh token, and the old one is refused afterwards', async () => {
    const first = await connect();
    assert.ok(first.refreshToken);
    const refreshesBefore = idp.tokenRequests.filter((r) => r.grantType === 'refresh_token').length;
    const second = track(await refreshAccessToken(app, { refreshToken: first.refreshToken, scope: SCOPE }));
    assert.ok(second.refreshToken);
    assert.notEqual(second.refreshToken, first.refreshToken);
    assert.notEqual(second.accessToken, first.accessToken);
    assert.equal(second.account, BOB);
    assert.equal(idp.tokenRequests.filter((r) => r.grantType === 'refresh_token').length, refreshesBefore + 1);

    const err = await rejection(refreshAccessToken(app, { refreshToken: first.refreshToken, scope: SCOPE }));
    assert.equal(err.details?.oauthError, 'invalid_grant');
    assert.equal(err.details?.errorClass, 'server');
    assert.equal(err.details?.transient, false);
    assert.equal(err.details?.httpStatus, 400);

    // The rotated one still works.
    track(await refreshAccessToken(app, { refreshToken: second.refreshToken, scope: SCOPE }));
  });

  it('refuses a code redeemed with the wrong PKCE verifier (invalid_grant, per server)', async () => {
    const pkce = await newPkce();
    const other = await newPkce();
    secrets.add(pkce.verifier).add(other.verifier);
    const { code } = await authorize(buildAuthorizeUrl(app, { redirectUri: REDIRECT_URI, scope: SCOPE, state: newState(), codeChallenge: pkce.challenge, loginHint: BOB }));
    const err = await rejection(exchangeCode(app, { code, redirectUri: REDIRECT_URI, codeVerifier: other.verifier, scope: SCOPE }));
    assert.equal(err.details?.oauthError, 'invalid_grant');
    assert.equal(err.details?.aadsts, 501481);
    assert.equal(err.details?.errorClass, 'server');
    assert.match(err.message, /PKCE/);
  });

  it('classifies an expired client secret (AADSTS7000222) as app-wide and says how to fix it', async () => {
    const first = await connect();
    assert.ok(first.refreshToken);
    idp.failNextToken({
      status: 401,
      body: microsoftError('invalid_client', 7000222, `The provided client secret keys for app '${CLIENT_ID}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret.`),
    });
    const err = await rejection(refreshAccessToken(app, { refreshToken: first.refreshToken, scope: SCOPE }));
    assert.equal(err.details?.oauthError, 'invalid_client');
    assert.equal(err.details?.aadsts, 7000222);
    assert.equal(err.details?.errorClass, 'app');
    assert.equal(err.details?.httpStatus, 401);
    assert.match(String(err.details?.traceId), /^[0-9a-f-]{36}$/);
    assert.match(err.message, /client secret has expired/);
    assert.match(err.message, /Certificates & secrets/);
  });

  it('treats HTTP 503 as transient, with or without a Microsoft body', async () => {
    const first = await connect();
    assert.ok(first.refreshToken);
    idp.failNextToken({ status: 503, body: microsoftError('temporarily_unavailable', 90033, 'A transient error has occurred. Please try again.') });
    const withBody = await rejection(refreshAccessToken(app, { refreshToken: first.refreshToken, scope: SCOPE }));
    assert.equal(withBody.details?.errorClass, 'transient');
    assert.equal(withBody.details?.transient, true);
    assert.equal(withBody.details?.aadsts, 90033);
    assert.match(withBody.message, /retries automatically/);

    idp.failNextToken({ status: 503, body: 'Service Unavailable' });
    const bare = await rejection(refreshAccessToken(app, { refreshToken: first.refreshToken, scope: SCOPE }));
    assert.equal(bare.details?.errorClass, 'transient');
    assert.equal(bare.details?.httpStatus, 503);
    assert.equal(bare.details?.oauthError, null);

    // A refused request did not consume the refresh token.
    track(await refreshAccessToken(app, { refreshToken: first.refreshToken, scope: SCOPE }));
  });

  it('treats an unreachable authority as transient', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await rejection(
      refreshAccessToken({ ...app, authority: `http://127.0.0.1:${port}/common/oauth2/v2.0/` }, { refreshToken: 'rt-unreachable', scope: SCOPE }),
    );
    secrets.add('rt-unreachable');
    assert.equal(err.details?.errorClass, 'transient');
    assert.equal(err.details?.httpStatus, null);
    assert.match(err.message, /ECONNREFUSED/);
  });

  it('gives up on a token endpoint that does not answer within the timeout (transient)', async () => {
    const silent = http.createServer(() => undefined); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      const started = Date.now();
      const err = await rejection(
        refreshAccessToken({ ...app, authority: `http://127.0.0.1:${port}/common/oauth2/v2.0/` }, { refreshToken: 'rt-silent', scope: SCOPE }, { timeoutMs: 200 }),
      );
      secrets.add('rt-silent');
      assert.ok(Date.now() - started < 2_000);
      assert.equal(err.details?.errorClass, 'transient');
      assert.match(err.message, /did not answer within 0\.2 s/);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('refuses a plain-HTTP authority that is not loopback without sending anything (app-wide)', async () => {
    const err = await rejection(
      refreshAccessToken({ ...app, authority: 'http://login.example.test/common/oauth2/v2.0/' }, { refreshToken: 'rt-insecure', scope: SCOPE }),
    );
    secrets.add('rt-insecure');
    assert.equal(err.details?.errorClass, 'app');
    assert.match(err.message, /must use https/);
  });

  it('refuses incomplete credentials and an empty refresh token before calling Microsoft', async () => {
    const noSecret = await rejection(refreshAccessToken({ ...app, clientSecret: '' }, { refreshToken: 'x', scope: SCOPE }));
    assert.equal(noSecret.details?.errorClass, 'app');
    const noToken = await rejection(refreshAccessToken(app, { refreshToken: '', scope: SCOPE }));
    assert.equal(noToken.details?.errorClass, 'server');
  });

  it('gets an app-only token with client_credentials, and a refused secret is AADSTS7000215, app-wide (registered app)', async () => {
    const tenant = `${idp.url}/contoso.onmicrosoft.com/oauth2/v2.0/`;
    const strict = await startIdentityServer({ apps: [{ clientId: CLIENT_ID, secret: CLIENT_SECRET, tenants: ['contoso.onmicrosoft.com'] }] });
    try {
      const authority = tenant.replace(idp.url, strict.url);
      const tokens = track(await clientCredentialsToken({ ...app, authority }, { scope: 'https://graph.microsoft.com/.default' }));
      assert.deepEqual([tokens.refreshToken, tokens.account], [null, null], 'no refresh token and no account: nobody signed in');
      const [sent] = strict.tokenRequests;
      assert.deepEqual([sent?.grantType, sent?.scope, sent?.tenant, sent?.aud], ['client_credentials', 'https://graph.microsoft.com/.default', 'contoso.onmicrosoft.com', 'https://graph.microsoft.com']);

      const wrong = 'Qx8~kZ3pL.an-older-secret-value_9fT2mWv7';
      secrets.add(wrong);
      const err = await rejection(clientCredentialsToken({ ...app, clientSecret: wrong, authority }, { scope: 'https://graph.microsoft.com/.default' }));
      assert.deepEqual([oauthErrorDetails(err)?.aadsts, oauthErrorDetails(err)?.errorClass, oauthErrorDetails(err)?.httpStatus], [7000215, 'app', 401]);
      assert.match(err.message, /Microsoft refused the client secret\..*not its Secret ID/);
    } finally {
      await strict.stop();
    }
  });

  it('never shows the client secret, a token, the code or the verifier in an error', () => {
    assert.ok(errorsSeen.length >= 10, `only ${errorsSeen.length} errors were collected`);
    for (const err of errorsSeen) {
      const text = visibleText(err);
      for (const secret of secrets) assert.ok(!text.includes(secret), `an error shows a secret: ${err.message}`);
    }
  });
});

/** A token endpoint answering one canned JSON body, for shapes the identity server does not produce. */
async function cannedTokenEndpoint(body: unknown): Promise<{ authority: string; forms: URLSearchParams[]; close: () => Promise<void> }> {
  const forms: URLSearchParams[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      forms.push(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    authority: `http://127.0.0.1:${port}/common/oauth2/v2.0/`,
    forms,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An Entra-shaped id_token; the signature is junk because a client that got it straight from the token endpoint does not check it. */
function idToken(claims: Record<string, unknown>): string {
  const part = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  return `${part({ typ: 'JWT', alg: 'RS256', kid: 'KQ2tAcrE7lBaVVGBmc5FobgdJo4' })}.${part({ aud: CLIENT_ID, iat: now, nbf: now, exp: now + 3600, sub: 'AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ', ver: '2.0', ...claims })}.${crypto.randomBytes(256).toString('base64url')}`;
}

describe('oauth-client with Microsoft shapes the identity server does not produce', () => {
  const TID = '9188040d-6c67-4c5b-b112-36a304b66dad';

  it('accepts the tenant-specific iss of a /common/ authority and falls back to upn for the account', async () => {
    const peer = await cannedTokenEndpoint({
      token_type: 'Bearer',
      scope: 'https://outlook.office.com/SMTP.Send',
      expires_in: 4299,
      ext_expires_in: 4299,
      access_token: 'eyJ0eXAiOiJKV1Qi.access.token',
      // No refresh_token: Microsoft does not always rotate it.
      id_token: idToken({ iss: `https://login.microsoftonline.com/${TID}/v2.0`, tid: TID, upn: 'carol@fabrikam.test', name: 'Carol' }),
    });
    try {
      const before = Date.now();
      const tokens = await refreshAccessToken({ ...appFor(peer.authority) }, { refreshToken: 'rt-canned', scope: SCOPE });
      assert.equal(tokens.account, 'carol@fabrikam.test');
      assert.equal(tokens.refreshToken, null);
      assert.equal(tokens.scope, 'https://outlook.office.com/SMTP.Send');
      assert.ok(tokens.expiresAt >= before + 4_299_000 && tokens.expiresAt <= Date.now() + 4_299_000);
      const form = peer.forms[0];
      assert.ok(form);
      assert.equal(form.get('grant_type'), 'refresh_token');
      assert.equal(form.get('client_id'), CLIENT_ID);
      assert.equal(form.get('client_secret'), CLIENT_SECRET, 'client_secret_post, as Entra ID expects for a Web app');
      assert.equal(form.get('scope'), SCOPE);
    } finally {
      await peer.close();
    }
  });

  it('still rejects an id_token issued to another application', async () => {
    const peer = await cannedTokenEndpoint({
      token_type: 'Bearer',
      expires_in: 3600,
      access_token: 'at',
      refresh_token: 'rt-next',
      id_token: idToken({ iss: `https://login.microsoftonline.com/${TID}/v2.0`, aud: '00000000-0000-0000-0000-000000000001', preferred_username: 'eve@evil.test' }),
    });
    try {
      const err = await rejection(refreshAccessToken(appFor(peer.authority), { refreshToken: 'rt-canned', scope: SCOPE }));
      assert.equal(err.details?.httpStatus, 200);
      assert.equal(err.details?.errorClass, 'app');
      assert.match(err.message, /audience.*check the Client ID/);
      assert.ok(!visibleText(err).includes('rt-next'), 'the response body with its tokens is not kept as the cause');
    } finally {
      await peer.close();
    }
  });

  it('takes a response without an id_token (account null)', async () => {
    const peer = await cannedTokenEndpoint({ token_type: 'Bearer', expires_in: 3600, access_token: 'at', refresh_token: 'rt-2' });
    try {
      const tokens = await refreshAccessToken(appFor(peer.authority), { refreshToken: 'rt-canned', scope: SCOPE });
      assert.equal(tokens.account, null);
      assert.equal(tokens.refreshToken, 'rt-2');
      assert.equal(tokens.scope, null);
    } finally {
      await peer.close();
    }
  });
});

function appFor(authority: string): OAuthAppCredentials {
  return { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, authority };
}
