// The authorization code flow (confidential client, PKCE S256) and the refresh grant against a Microsoft
// authority, through oauth4webapi. Stateless: the caller keeps state, verifier and redirect_uri (the
// outlook-connect flow) and the tokens (the token store). Every failure is a classified JUNIPER_ERR_OAUTH;
// no message, detail or cause carries the client secret, a token, the code or the verifier.
import * as oauth from 'oauth4webapi';
import { AppError, isAppError } from '../lib/errors.js';
import { microsoft } from './microsoft.js';
import { oauthFailure, parseMicrosoftError } from './oauth-errors.js';

export interface OAuthAppCredentials {
  clientId: string;
  clientSecret: string;
  /** `https://<login host>/<tenant>/oauth2/v2.0/` */
  authority: string;
}

export interface TokenSet {
  accessToken: string;
  /** null when the server did not return one: keep the previous refresh token. */
  refreshToken: string | null;
  /** Epoch milliseconds. */
  expiresAt: number;
  scope: string | null;
  /** preferred_username, else email, else upn of the id_token; null without an id_token. */
  account: string | null;
}

export interface TokenRequestOptions {
  /** Whole request including the body (default 15 s): a hung token endpoint must not hold a mail worker. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 15_000;
// RFC 6749 lets a server omit expires_in; Microsoft always sends it and its access tokens live 60-90 min.
// A token refused earlier by the mail server is renewed anyway.
const DEFAULT_EXPIRES_IN_S = 3600;
// Microsoft's own libraries allow 5 minutes of clock skew when checking id_token times.
const CLOCK_TOLERANCE_S = 300;

export function buildAuthorizeUrl(
  app: OAuthAppCredentials,
  p: { redirectUri: string; scope: string; state: string; codeChallenge: string; loginHint?: string | null },
): string {
  const url = new URL(microsoft.authorizeUrl(app.authority));
  const q = url.searchParams;
  q.set('client_id', app.clientId);
  q.set('response_type', 'code');
  // The callback is a GET route; fragment would never reach the server, form_post needs a POST route.
  q.set('response_mode', 'query');
  q.set('redirect_uri', p.redirectUri);
  q.set('scope', p.scope);
  q.set('state', p.state);
  q.set('code_challenge', p.codeChallenge);
  q.set('code_challenge_method', 'S256');
  // A browser already signed in to another Microsoft account would otherwise connect that one silently.
  q.set('prompt', 'select_account');
  if (p.loginHint) q.set('login_hint', p.loginHint);
  return url.href;
}

export async function newPkce(): Promise<{ verifier: string; challenge: string }> {
  const verifier = oauth.generateRandomCodeVerifier();
  return { verifier, challenge: await oauth.calculatePKCECodeChallenge(verifier) };
}

export function newState(): string {
  return oauth.generateRandomState();
}

/** Redeems the code from /microsoft_outlook/confirm; `redirectUri` must be the one sent to /authorize. */
export async function exchangeCode(
  app: OAuthAppCredentials,
  p: { code: string; redirectUri: string; codeVerifier: string; scope: string },
  options: TokenRequestOptions = {},
): Promise<TokenSet> {
  if (p.code === '') throw new AppError('JUNIPER_ERR_VALIDATION', 'The answer from Microsoft carries no authorization code.');
  if (p.codeVerifier === '') throw new AppError('JUNIPER_ERR_VALIDATION', 'The sign-in has no PKCE verifier: start it again with Connect your Outlook account.');
  return tokenRequest(
    app,
    options,
    (as, client, auth, http) => {
      // oauth4webapi takes the code only from parameters it has validated; state was already checked
      // against our server-side store, which also binds it to the user and the server.
      const callback = oauth.validateAuthResponse(as, client, new URLSearchParams({ code: p.code }), oauth.skipStateCheck);
      return oauth.authorizationCodeGrantRequest(as, client, auth, callback, p.redirectUri, p.codeVerifier, {
        ...http,
        additionalParameters: { scope: p.scope },
      });
    },
    (as, client, response) => oauth.processAuthorizationCodeResponse(as, client, response),
  );
}

/** Entra ID rotates refresh tokens: store `refreshToken` of the result whenever it is not null. */
export async function refreshAccessToken(
  app: OAuthAppCredentials,
  p: { refreshToken: string; scope: string },
  options: TokenRequestOptions = {},
): Promise<TokenSet> {
  if (p.refreshToken === '') {
    throw oauthFailure({ httpStatus: null, description: 'no refresh token is stored: click Connect your Outlook account' }, { errorClass: 'server' });
  }
  return tokenRequest(
    app,
    options,
    // Scope on refresh keeps the token for the same single resource (Outlook), not Graph.
    (as, client, auth, http) =>
      oauth.refreshTokenGrantRequest(as, client, auth, p.refreshToken, { ...http, additionalParameters: { scope: p.scope } }),
    (as, client, response) => oauth.processRefreshTokenResponse(as, client, response),
  );
}

/**
 * An app-only token (client_credentials) for `scope`, e.g. `https://graph.microsoft.com/.default`: the one request
 * that proves Client ID, client secret and tenant without a user (the credentials check after a save,
 * credentials-check.ts). Nobody uses the token. Not possible on a common/organizations/consumers authority.
 */
export async function clientCredentialsToken(app: OAuthAppCredentials, p: { scope: string }, options: TokenRequestOptions = {}): Promise<TokenSet> {
  return tokenRequest(
    app,
    options,
    (as, client, auth, http) => oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams({ scope: p.scope }), http),
    (as, client, response) => oauth.processClientCredentialsResponse(as, client, response),
  );
}

type Send = (
  as: oauth.AuthorizationServer,
  client: oauth.Client,
  auth: oauth.ClientAuth,
  http: oauth.TokenEndpointRequestOptions,
) => Promise<Response>;
type Process = (as: oauth.AuthorizationServer, client: oauth.Client, response: Response) => Promise<oauth.TokenEndpointResponse>;

async function tokenRequest(app: OAuthAppCredentials, options: TokenRequestOptions, send: Send, process: Process): Promise<TokenSet> {
  if (app.clientId.trim() === '' || app.clientSecret === '') {
    throw oauthFailure(
      { httpStatus: null, description: 'the Outlook credentials are incomplete: enter the Client ID and the client secret\'s Value in Settings' },
      { errorClass: 'app' },
    );
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const tokenEndpoint = microsoft.tokenUrl(app.authority);
  // Measured before the request: the token's lifetime started no earlier, so expiry errs early, not late.
  const startedAt = Date.now();
  try {
    // No discovery: Microsoft's metadata names the issuer `{tenantid}` for multi-tenant authorities, and the
    // two endpoints follow from the authority anyway.
    const as: oauth.AuthorizationServer = {
      issuer: issuerPlaceholder(tokenEndpoint),
      authorization_endpoint: microsoft.authorizeUrl(app.authority),
      token_endpoint: tokenEndpoint,
      // The id_token signature is not checked (see idTokenIssuer); RS256 is Microsoft's, ES256 the test peer's.
      id_token_signing_alg_values_supported: ['RS256', 'ES256'],
    };
    const client: oauth.Client = { client_id: app.clientId, [oauth.clockTolerance]: CLOCK_TOLERANCE_S };
    const http: oauth.TokenEndpointRequestOptions = {
      signal: AbortSignal.timeout(timeoutMs),
      // Marked deprecated only to stand out: plain HTTP is allowed for a loopback test authority, never a real one.
      [oauth.allowInsecureRequests]: isLoopbackHttp(tokenEndpoint),
    };
    const response = await send(as, client, oauth.ClientSecretPost(app.clientSecret), http);
    // oauth4webapi reads error bodies of 4xx only, and without error_codes; Microsoft's 5xx bodies matter too.
    if (response.status !== 200) throw await refusal(response);
    const result = await process({ ...as, issuer: (await idTokenIssuer(response)) ?? as.issuer }, client, response);
    return {
      accessToken: result.access_token,
      refreshToken: result.refresh_token ?? null,
      expiresAt: startedAt + (result.expires_in ?? DEFAULT_EXPIRES_IN_S) * 1000,
      scope: result.scope ?? null,
      account: accountOf(oauth.getValidatedIdTokenClaims(result)),
    };
  } catch (err) {
    throw asOAuthError(err, tokenEndpoint, timeoutMs);
  }
}

/**
 * The issuer oauth4webapi compares the id_token's `iss` with. On a multi-tenant authority (common,
 * organizations, consumers) Microsoft issues `https://login.microsoftonline.com/{tid}/v2.0` with the
 * user's own tenant, so no configured issuer can match; the oauth4webapi maintainer's advice for Entra ID
 * is to set `as.issuer` per response (https://github.com/panva/oauth4webapi/pull/131). We take the token's
 * own `iss`: the id_token comes straight from the token endpoint we called over TLS with our client
 * secret, so its origin is already established (OIDC Core 3.1.3.7 lets such a client skip the signature
 * too), and it only names the connected account for display; audience and expiry are still checked.
 */
async function idTokenIssuer(response: Response): Promise<string | undefined> {
  let body: unknown;
  try {
    body = await response.clone().json();
  } catch {
    return undefined; // oauth4webapi reports the unparsable body
  }
  const idToken = typeof body === 'object' && body !== null ? (body as { id_token?: unknown }).id_token : undefined;
  if (typeof idToken !== 'string') return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(idToken.split('.')[1] ?? '', 'base64url').toString('utf8'));
    const iss = typeof payload === 'object' && payload !== null ? (payload as { iss?: unknown }).iss : undefined;
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

function accountOf(claims: oauth.IDToken | undefined): string | null {
  if (!claims) return null;
  for (const name of microsoft.accountClaims) {
    const value = claims[name];
    if (typeof value === 'string' && value.trim() !== '') return value.trim();
  }
  return null;
}

async function refusal(response: Response): Promise<AppError> {
  let body: unknown = null;
  try {
    body = JSON.parse(await response.text());
  } catch {
    // an HTML error page from a proxy or an outage: the status is all we have
  }
  return oauthFailure({ ...parseMicrosoftError(body), httpStatus: response.status });
}

function asOAuthError(err: unknown, tokenEndpoint: string, timeoutMs: number): AppError {
  if (isAppError(err)) return err;
  const host = hostOf(tokenEndpoint);
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return oauthFailure({ httpStatus: null, description: `${host} did not answer within ${Math.round(timeoutMs / 100) / 10} s` }, { cause: err });
  }
  if (err instanceof oauth.OperationProcessingError) {
    if (err.code === oauth.HTTP_REQUEST_FORBIDDEN || err.code === oauth.REQUEST_PROTOCOL_FORBIDDEN) {
      return oauthFailure(
        { httpStatus: null, description: `the Outlook endpoint ${tokenEndpoint} must use https://` },
        { errorClass: 'app', cause: safeCause(err) },
      );
    }
    if (err.code === oauth.MISSING_SERVER_METADATA || err.code === oauth.INVALID_SERVER_METADATA) {
      return oauthFailure({ httpStatus: null, description: 'the Outlook endpoint is not a valid URL' }, { errorClass: 'app', cause: safeCause(err) });
    }
    if (err.code === oauth.JWT_TIMESTAMP_CHECK) {
      // The id_token is fresh from Microsoft, so a failed time check means this machine's clock is wrong.
      return oauthFailure(
        { httpStatus: 200, description: `the id_token from ${host} fails its time check (${err.message}): check this machine's clock (NTP)` },
        { errorClass: 'app', cause: safeCause(err) },
      );
    }
    if (err.code === oauth.JWT_CLAIM_COMPARISON || err.code === oauth.JSON_ATTRIBUTE_COMPARISON) {
      // Deterministic: every server would get the same answer (e.g. an id_token for another Client ID).
      return oauthFailure(
        { httpStatus: 200, description: `the token response from ${host} does not belong to this app (${err.message}): check the Client ID and the Outlook endpoint` },
        { errorClass: 'app', cause: safeCause(err) },
      );
    }
    // A 200 that is not a usable token response (an HTML page, no access_token): Microsoft is having a bad
    // moment or something between us rewrote the answer; either way a later try may succeed.
    return oauthFailure(
      { httpStatus: 200, description: `${host} sent an unusable token response: ${err.message}` },
      { errorClass: 'transient', cause: safeCause(err) },
    );
  }
  if (err instanceof oauth.UnsupportedOperationError) {
    return oauthFailure(
      { httpStatus: 200, description: `${host} sent a token response Juniper cannot use: ${err.message}` },
      { errorClass: 'transient', cause: safeCause(err) },
    );
  }
  const argCode = err instanceof TypeError ? (err as { code?: unknown }).code : undefined;
  if (argCode === 'ERR_INVALID_ARG_VALUE' || argCode === 'ERR_INVALID_ARG_TYPE') {
    // oauth4webapi's own argument checks; the guards above catch the cases a user can cause.
    return oauthFailure(
      { httpStatus: null, description: `the token request could not be built: ${(err as TypeError).message}` },
      { errorClass: 'app', cause: safeCause(err as TypeError) },
    );
  }
  // fetch's "fetch failed": refused connection, DNS, TLS; the reason is in its cause.
  const reason = networkReason(err);
  return oauthFailure({ httpStatus: null, description: `${host}: ${reason}` }, { cause: err });
}

/** oauth4webapi attaches the response body (tokens included) to its errors: keep only name, code and message. */
function safeCause(err: Error): Error {
  const copy = new Error(err.message);
  copy.name = err.name;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') Object.assign(copy, { code });
  return copy;
}

function networkReason(err: unknown): string {
  const cause = err instanceof Error ? (err.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  if (cause && typeof cause.code === 'string') return cause.code;
  if (cause && typeof cause.message === 'string') return cause.message;
  return err instanceof Error ? err.message : String(err);
}

function issuerPlaceholder(tokenEndpoint: string): string {
  try {
    return `${new URL(tokenEndpoint).origin}/{tenantid}/v2.0`;
  } catch {
    return tokenEndpoint;
  }
}

/** The host of an endpoint for messages, or a description when the URL cannot be read. */
export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'the Outlook endpoint';
  }
}

function isLoopbackHttp(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
  } catch {
    return false;
  }
}
