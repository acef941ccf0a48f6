// An in-process OAuth2 authorization server shaped like Microsoft Entra ID, for tests. Built on
// oauth2-mock-server (its /authorize redirect, token signing, JWKS, discovery), plus what that mock lacks and
// a mail gateway must be tested against: it validates nothing by itself (any code, any refresh token, any
// token at /userinfo and /introspect is accepted, `sub` is always "johndoe"). Here:
//   GET  /authorize?response_type=code&redirect_uri&state&login_hint=USER[&code_challenge&code_challenge_method]
//        -> 302 redirect_uri?code&state; login_hint becomes sub/email/preferred_username/upn of the tokens
//   POST /token  authorization_code (single-use code; same redirect_uri as at /authorize; PKCE checked),
//        refresh_token (rotating: each refresh returns a new refresh token, the old one is then invalid),
//        both for the scopes consented at /authorize (which may span resources; the token is for the first
//        resource of the request; an unconsented one is AADSTS65001, see issuedScope),
//        password (any password: a mock), client_credentials (an app-only token; scope must be <resource>/.default).
//        Once an app is registered (`apps`, registerApp), every grant authenticates the client as Entra ID does:
//        unknown tenant AADSTS90002, app not in that directory AADSTS700016, wrong secret AADSTS7000215, expired
//        secret AADSTS7000222, and client_credentials on common/organizations/consumers AADSTS50059; with none
//        registered any Client ID and secret are accepted. Errors are Microsoft-shaped:
//        {error, error_description: "AADSTSnnnn: ...", error_codes: [nnnn], timestamp, trace_id, correlation_id}
//   GET  /userinfo (Bearer header or ?access_token=) -> 200 claims | 401 invalid_token  (Dovecot tokeninfo mode)
//   POST /introspect token=.. (form or JSON) -> {active:true, email, ..} | {active:false}  (RFC 7662)
//   POST /revoke token=..    access or refresh token becomes invalid
//   GET  /mock/mint?user=U&ttl=S&scope=X -> {access_token}  (for shell scripts; ttl < 0 gives an expired token)
// Entra-style paths work too: /{tenant}/oauth2/v2.0/{authorize,token,logout},
// /{tenant}/v2.0/.well-known/openid-configuration and /{tenant}/discovery/v2.0/keys.
// Tokens are JWTs signed with a key generated at start (kid "k1"); the checks are signature, exp, revocation.
// Access tokens carry `aud` as Entra ID sets it, from the resource of the requested scopes
// (https://outlook.office.com for IMAP/SMTP, https://graph.microsoft.com for Graph names such as Mail.Send), and
// `scp` with the short permission names; checking the audience is the relying peer's job (sink, Dovecot).
import crypto from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';
import type { MutableRedirectUri, MutableResponse, MutableToken } from 'oauth2-mock-server';
import {
  audienceOf,
  DEFAULT_SCOPE,
  issuedScope,
  microsoftError,
  mockPath,
  opaqueRefreshToken,
  parseForm,
  pkceMatches,
  readBody,
  scpClaim,
  sendJson,
  TENANT_ID,
  userClaims,
  type Form,
  type MicrosoftErrorBody,
} from './identity-protocol.js';

export {
  audienceOf,
  DEFAULT_SCOPE,
  GRAPH_AUDIENCE,
  microsoftError,
  OUTLOOK_AUDIENCE,
  scopeResources,
  scpClaim,
  TENANT_ID,
  type MicrosoftErrorBody,
} from './identity-protocol.js';

export type SigningAlgorithm = 'RS256' | 'ES256';

export interface IdentityServerOptions {
  /** Lifetime of issued access and id tokens (default 3600). A few seconds lets a test see real expiry. */
  tokenTtlSeconds?: number;
  /** RS256 (default, like Entra ID) or ES256: ES256 tokens are ~600 chars and fit Dovecot submission's 1 KB AUTH line. */
  alg?: SigningAlgorithm;
  /** The user when /authorize has no login_hint (default alice@example.test). */
  defaultUser?: string;
  /** Listen port on 127.0.0.1 (default 0: the OS picks one). */
  port?: number;
  /** Receives one line per token check and token request (default: silent). */
  log?: (line: string) => void;
  /** Azure app registrations whose client credentials /token checks (see registerApp). */
  apps?: RegisteredApp[];
}

/** An app registration, as Entra ID checks it at /token once any app is registered. */
export interface RegisteredApp {
  clientId: string;
  /** The client secret's Value (Entra ID compares it exactly; its Secret ID is a different string). */
  secret: string;
  /**
   * The directories the app exists in, by tenant id or verified domain: its home tenant and those whose users or
   * admins consented to it (default [TENANT_ID]). A `/{tenant}/oauth2/v2.0/token` of another known directory is
   * AADSTS700016; a tenant no app names is unknown (AADSTS90002).
   */
  tenants?: string[];
  /** The secret is past the expiry date chosen when it was created: AADSTS7000222. */
  secretExpired?: boolean;
}

export interface TokenResponseOverride {
  status: number;
  body: unknown;
}

/** One request that reached /token, in arrival order, with the status it was answered with. */
export interface TokenRequestRecord {
  grantType: string;
  status: number;
  /** The `error` of a refused request (invalid_grant, invalid_client, ...). */
  error?: string;
  /** The user a granted request was issued for (a refresh token's user), so refreshes can be counted per mailbox. */
  user?: string;
  /** The `scope` the request sent (absent when it sent none). */
  scope?: string;
  /** The `aud` of the access token a granted request was issued (https://outlook.office.com, https://graph.microsoft.com). */
  aud?: string;
  /** The client_id the request authenticated with (never its secret). */
  clientId?: string;
  /** The `{tenant}` of an Entra-style path (`/{tenant}/oauth2/v2.0/token`); absent for `/token`. */
  tenant?: string;
}

export type TokenCheck = { ok: true; claims: Record<string, unknown> } | { ok: false; reason: string };

export interface IdentityServer {
  /** http://127.0.0.1:PORT, no trailing slash. */
  readonly url: string;
  /** The `iss` of every token (equal to url). */
  readonly issuerUrl: string;
  readonly port: number;
  readonly authorizeUrl: string;
  readonly tokenUrl: string;
  /** Live log of /token requests, e.g. `tokenRequests.filter((r) => r.grantType === 'refresh_token').length`. */
  readonly tokenRequests: readonly TokenRequestRecord[];
  /** Query parameters of the last GET /authorize. */
  readonly lastAuthorizeQuery: Readonly<Record<string, string>> | undefined;
  /** An access token for user, signed like the issued ones; ttlSeconds < 0 gives an expired token. */
  mint(user: string, ttlSeconds?: number, scope?: string): Promise<string>;
  /**
   * A valid refresh token for user, as if the user had consented to scope (default DEFAULT_SCOPE; several
   * resources allowed) in a browser: it can be redeemed for any consented resource (to seed a token store).
   */
  issueRefreshToken(user: string, scope?: string): string;
  /** Makes an access or refresh token invalid from now on. */
  revoke(token: string): void;
  /** Lifetime of tokens issued from now on. */
  setTokenTtl(seconds: number): void;
  /** The next /token request gets this answer (queued: call twice for two failures). It still counts in tokenRequests. */
  failNextToken(response: TokenResponseOverride): void;
  /**
   * An outage of /token until called with null: every request gets `response`, or with 'hang' waits unanswered
   * (a client's timeout ends it). When a hang ends, held requests whose client is still waiting are answered
   * normally in arrival order; those whose client gave up are dropped unprocessed and logged with status 0
   * (so a refresh token they carried is not used up, and `tokenRequests` shows what was really redeemed).
   */
  setTokenOutage(outage: TokenResponseOverride | 'hang' | null): void;
  /** Requests held by a 'hang' outage whose client is still waiting. */
  readonly heldTokenRequests: number;
  /** The next /authorize redirects with this error instead of a code (e.g. access_denied: consent declined). */
  failNextAuthorize(error: { error: string; error_description: string }): void;
  /** The check /userinfo and /introspect apply. */
  checkToken(token: string | undefined): TokenCheck;
  /** Registers an app (or replaces the one with its Client ID): from now on /token authenticates every client. */
  registerApp(app: RegisteredApp): void;
  stop(): Promise<void>;
}

interface PendingCode {
  user: string;
  redirectUri: string;
  scope: string;
  clientId: string | undefined;
  challenge: { value: string; method: string } | undefined;
}
/** A refresh token's user and the scopes they consented to at /authorize (possibly several resources). */
interface RefreshGrant {
  user: string;
  scope: string;
}
/** What a /token request that passed our checks is issuing, looked up by the mock's event hooks. */
interface Grant {
  user: string | undefined;
  /** The scopes of the access token: one resource's. */
  scope: string | undefined;
  /** What a refresh token issued now may be redeemed for (the grant's consent); defaults to scope. */
  consented?: string;
  signed: number;
}
type Refusal = { status: number; body: MicrosoftErrorBody };

const MULTI_TENANT = new Set(['common', 'organizations', 'consumers']);

export async function startIdentityServer(opts: IdentityServerOptions = {}): Promise<IdentityServer> {
  let ttl = opts.tokenTtlSeconds ?? 3600;
  const defaultUser = opts.defaultUser ?? 'alice@example.test';
  const log = opts.log ?? (() => undefined);

  const issuer = new OAuth2Issuer();
  await issuer.keys.generate(opts.alg ?? 'RS256', { kid: 'k1' });
  const service = new OAuth2Service(issuer);

  const codes = new Map<string, PendingCode>();
  const redeemedCodes = new Set<string>();
  const refreshTokens = new Map<string, RefreshGrant>();
  const rotatedRefreshTokens = new Set<string>();
  const revoked = new Set<string>();
  const grants = new WeakMap<IncomingMessage, Grant>();
  const tokenRequests: TokenRequestRecord[] = [];
  const tokenFailures: TokenResponseOverride[] = [];
  let tokenOutage: TokenResponseOverride | 'hang' | null = null;
  const held: { gone: () => boolean; resume: () => void }[] = [];
  const authorizeFailures: { error: string; error_description: string }[] = [];
  const apps = new Map<string, RegisteredApp>((opts.apps ?? []).map((a) => [a.clientId.toLowerCase(), a]));
  let lastAuthorizeQuery: Record<string, string> | undefined;

  const keyCache = new Map<string, crypto.KeyObject>();
  function checkToken(token: string | undefined): TokenCheck {
    try {
      const [h, p, s] = (token ?? '').split('.');
      if (!h || !p || !s) return { ok: false, reason: 'malformed token' };
      const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { kid?: unknown };
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
      const kid = typeof header.kid === 'string' ? header.kid : '';
      let key = keyCache.get(kid);
      if (!key) {
        const jwk = issuer.keys.toJSON().find((k) => k.kid === kid);
        if (!jwk) return { ok: false, reason: 'unknown signing key' };
        key = crypto.createPublicKey({ key: jwk as crypto.JsonWebKey, format: 'jwk' });
        keyCache.set(kid, key);
      }
      // JWS ECDSA signatures are r||s (IEEE P1363), not DER; the option is ignored for RSA.
      const signatureOk = crypto.verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'));
      if (!signatureOk) return { ok: false, reason: 'bad signature' };
      if (!(typeof claims.exp === 'number' && claims.exp > Date.now() / 1000)) return { ok: false, reason: 'token expired' };
      if (revoked.has(token ?? '')) return { ok: false, reason: 'token revoked' };
      return { ok: true, claims };
    } catch {
      return { ok: false, reason: 'malformed token' };
    }
  }
  function publicClaims(claims: Record<string, unknown>): Record<string, unknown> {
    const user = typeof claims.email === 'string' ? claims.email : String(claims.sub);
    return { ...userClaims(user), aud: claims.aud, scp: claims.scp, scope: claims.scp, exp: claims.exp };
  }

  /** The token a consent allows for requested: the first resource's scopes, or AADSTS65001 for an unconsented one. */
  function consentedGrant(user: string, requested: string, consented: string, clientId: string | undefined): Refusal | Grant {
    const issued = issuedScope(requested, consented);
    if (!issued.ok) {
      return {
        status: 400,
        body: microsoftError(
          'invalid_grant',
          65001,
          `The user or administrator has not consented to use the application with ID '${clientId ?? ''}' named '${clientId ?? ''}'. Send an interactive authorization request for this user and resource.`,
        ),
      };
    }
    return { user, scope: issued.scope, consented, signed: 0 };
  }

  /**
   * Entra ID's client authentication, in its order: the directory of the path, the app in it, then the secret
   * (client_secret_post or client_secret_basic). Only once an app is registered; null when the client passes.
   */
  function authenticateClient(form: Form, tenant: string | undefined, authorization: string | undefined): Refusal | null {
    if (apps.size === 0) return null;
    const refuse = (error: string, code: number, message: string, status = 400): Refusal => ({ status, body: microsoftError(error, code, message) });
    const t = tenant?.toLowerCase();
    const multiTenant = t === undefined || MULTI_TENANT.has(t);
    if (!multiTenant && ![...apps.values()].some((a) => (a.tenants ?? [TENANT_ID]).some((d) => d.toLowerCase() === t))) {
      return refuse(
        'invalid_request',
        90002,
        `Tenant '${tenant ?? ''}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`,
      );
    }
    if (form.grant_type === 'client_credentials' && multiTenant) {
      return refuse('invalid_request', 50059, 'No tenant-identifying information found in either the request or implied by any provided credentials.');
    }
    let clientId = form.client_id;
    let secret = form.client_secret;
    const basic = /^basic (.+)$/i.exec(authorization ?? '');
    if (basic?.[1]) {
      // RFC 6749 2.3.1: form-urlencoded id and secret, joined by the first colon.
      const pair = Buffer.from(basic[1], 'base64').toString('utf8');
      const colon = pair.indexOf(':');
      const decode = (v: string) => decodeURIComponent(v.replace(/\+/g, ' '));
      if (colon > 0) {
        clientId ??= decode(pair.slice(0, colon));
        secret ??= decode(pair.slice(colon + 1));
      }
    }
    const app = apps.get((clientId ?? '').toLowerCase());
    if (!app || (!multiTenant && !(app.tenants ?? [TENANT_ID]).some((d) => d.toLowerCase() === t))) {
      return refuse(
        'unauthorized_client',
        700016,
        `Application with identifier '${clientId ?? ''}' was not found in the directory '${tenant ?? 'common'}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`,
      );
    }
    if (!secret) return refuse('invalid_client', 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", 401);
    if (secret !== app.secret) {
      return refuse(
        'invalid_client',
        7000215,
        `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${app.clientId}'.`,
        401,
      );
    }
    if (app.secretExpired) {
      return refuse(
        'invalid_client',
        7000222,
        `The provided client secret keys for app '${app.clientId}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.`,
        401,
      );
    }
    return null;
  }

  /** The checks Entra ID makes before issuing tokens; consumes the code or refresh token at once (single use). */
  function decide(form: Form): Refusal | Grant {
    const refuse = (error: string, code: number, message: string, status = 400): Refusal => ({ status, body: microsoftError(error, code, message) });
    const grantType = form.grant_type;
    switch (grantType) {
      case undefined:
      case '':
        return refuse('invalid_request', 900144, "The request body must contain the following parameter: 'grant_type'.");
      case 'authorization_code': {
        const code = form.code ?? '';
        const pending = codes.get(code);
        if (!pending) {
          return redeemedCodes.has(code)
            ? refuse('invalid_grant', 54005, 'OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.')
            : refuse('invalid_grant', 70000, "The provided value for the 'code' parameter is not valid.");
        }
        codes.delete(code);
        redeemedCodes.add(code);
        if (form.redirect_uri !== pending.redirectUri) {
          return refuse('invalid_grant', 70000, `The redirect_uri '${form.redirect_uri ?? ''}' does not match the one of the authorization request ('${pending.redirectUri}').`);
        }
        if (pending.clientId && form.client_id && form.client_id !== pending.clientId) {
          return refuse('invalid_grant', 700005, 'Provided Authorization Code is intended to use against other client.');
        }
        if (pending.challenge) {
          if (!form.code_verifier || !pkceMatches(form.code_verifier, pending.challenge)) {
            return refuse('invalid_grant', 501481, 'The Code_Verifier does not match the code_challenge supplied in the authorization request.');
          }
        } else if (form.code_verifier) {
          return refuse('invalid_grant', 501481, 'A code_verifier was sent, but the authorization request carried no code_challenge.');
        }
        return consentedGrant(pending.user, form.scope ?? pending.scope, pending.scope, form.client_id);
      }
      case 'refresh_token': {
        const token = form.refresh_token ?? '';
        const grant = refreshTokens.get(token);
        if (!grant) {
          return rotatedRefreshTokens.has(token)
            ? refuse('invalid_grant', 70000, 'The provided refresh token was already redeemed: refresh tokens rotate, use the one of the last response.')
            : revoked.has(token)
              ? refuse('invalid_grant', 50173, 'The provided grant has expired due to it being revoked, a fresh auth token is needed.')
              : refuse('invalid_grant', 9002313, 'Invalid request. Request is malformed or invalid.');
        }
        // A refusal for consent leaves the refresh token valid: Entra ID redeems nothing then.
        const issued = consentedGrant(grant.user, form.scope ?? grant.scope, grant.scope, form.client_id);
        if ('body' in issued) return issued;
        refreshTokens.delete(token);
        rotatedRefreshTokens.add(token);
        return issued;
      }
      case 'password': // consents to what it asks; a token is still for one resource
        return consentedGrant(form.username || defaultUser, form.scope ?? DEFAULT_SCOPE, form.scope ?? DEFAULT_SCOPE, form.client_id);
      case 'client_credentials':
        // An app-only token carries the permissions granted to the app itself: one resource, all of them.
        if (apps.size > 0 && !/^\S+\/\.default$/.test(form.scope ?? '')) {
          return refuse(
            'invalid_scope',
            1002012,
            `The provided value for scope ${form.scope ?? ''} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
          );
        }
        return { user: undefined, scope: form.scope, signed: 0 };
      default:
        return refuse('unsupported_grant_type', 70003, `The app requested an unsupported grant type '${grantType}'.`);
    }
  }

  service.on('beforeAuthorizeRedirect', (redirect: MutableRedirectUri, req: IncomingMessage) => {
    const query = Object.fromEntries(new URL(req.url ?? '/', 'http://x').searchParams);
    lastAuthorizeQuery = query;
    const code = redirect.url.searchParams.get('code');
    if (!code) return;
    const failure = authorizeFailures.shift();
    if (failure) {
      redirect.url.searchParams.delete('code');
      redirect.url.searchParams.set('error', failure.error);
      redirect.url.searchParams.set('error_description', failure.error_description);
      return;
    }
    codes.set(code, {
      user: query.login_hint || defaultUser,
      redirectUri: query.redirect_uri ?? '',
      scope: query.scope ?? DEFAULT_SCOPE,
      clientId: query.client_id,
      challenge: query.code_challenge ? { value: query.code_challenge, method: query.code_challenge_method ?? 'plain' } : undefined,
    });
  });

  // The mock signs the access token first, then the id token, both through this hook.
  service.on('beforeTokenSigning', (token: MutableToken, req: IncomingMessage) => {
    const grant = grants.get(req);
    if (!grant) return;
    const isAccessToken = grant.signed++ === 0;
    if (grant.user) Object.assign(token.payload, userClaims(grant.user));
    if (isAccessToken) {
      delete token.payload.scope;
      if (grant.scope !== undefined) Object.assign(token.payload, { aud: audienceOf(grant.scope), scp: scpClaim(grant.scope) });
    }
    token.payload.jti = crypto.randomUUID(); // tokens minted in the same second must still differ
    token.payload.exp = token.payload.iat + ttl;
  });

  service.on('beforeResponse', (resp: MutableResponse, req: IncomingMessage) => {
    const grant = grants.get(req);
    if (!grant || resp.statusCode !== 200 || resp.body === '') return;
    resp.body.expires_in = ttl;
    resp.body.ext_expires_in = ttl;
    if (grant.scope !== undefined) resp.body.scope = grant.scope;
    if (resp.body.refresh_token !== undefined && grant.user) {
      const refreshToken = opaqueRefreshToken();
      refreshTokens.set(refreshToken, { user: grant.user, scope: grant.consented ?? grant.scope ?? DEFAULT_SCOPE });
      resp.body.refresh_token = refreshToken;
    }
  });

  service.on('beforeUserinfo', (resp: MutableResponse, req: IncomingMessage) => {
    const auth = req.headers.authorization ?? '';
    const token = /^bearer /i.test(auth) ? auth.slice(7).trim() : (new URL(req.url ?? '/', 'http://x').searchParams.get('access_token') ?? undefined);
    const result = checkToken(token);
    if (result.ok) {
      resp.body = { ...publicClaims(result.claims), active: true };
    } else {
      resp.statusCode = 401;
      resp.body = { error: 'invalid_token', error_description: result.reason };
    }
    log(`userinfo ${result.ok ? String(result.claims.email) : result.reason}`);
  });

  service.on('beforeIntrospect', (resp: MutableResponse, req: IncomingMessage & { body?: Form }) => {
    const result = checkToken(req.body?.token);
    // Dovecot's introspection mode ignores the HTTP status: an invalid token must be 200 {"active":false}.
    resp.body = result.ok
      ? { active: true, ...publicClaims(result.claims), username: String(result.claims.email), token_type: 'Bearer' }
      : { active: false };
    log(`introspect ${result.ok ? String(result.claims.email) : result.reason}`);
  });

  function revoke(token: string): void {
    revoked.add(token);
    refreshTokens.delete(token);
  }
  service.on('beforeRevoke', (_resp: unknown, req: IncomingMessage & { body?: Form }) => {
    if (req.body?.token) revoke(req.body.token);
  });

  async function mint(user: string, ttlSeconds = ttl, scope = DEFAULT_SCOPE): Promise<string> {
    return issuer.buildToken({
      expiresIn: ttlSeconds,
      scopesOrTransform: (_header, payload) => Object.assign(payload, userClaims(user), { aud: audienceOf(scope), scp: scpClaim(scope), jti: crypto.randomUUID() }),
    });
  }

  async function handleToken(req: IncomingMessage & { body?: Form }, res: ServerResponse, form: Form, tenant: string | undefined): Promise<void> {
    const grantType = form.grant_type ?? '';
    const record = (status: number, error?: string, grant?: Grant): void => {
      const granted = grant && status === 200 ? grant : undefined;
      tokenRequests.push({
        grantType,
        status,
        ...(error === undefined ? {} : { error }),
        ...(granted?.user === undefined ? {} : { user: granted.user }),
        ...(form.scope === undefined ? {} : { scope: form.scope }),
        ...(granted?.scope === undefined ? {} : { aud: audienceOf(granted.scope) }),
        ...(form.client_id === undefined ? {} : { clientId: form.client_id }),
        ...(tenant === undefined ? {} : { tenant }),
      });
      log(`token ${grantType} -> ${status}${error ? ` ${error}` : ''}`);
    };
    if (tokenOutage === 'hang') {
      let closed = false;
      res.on('close', () => {
        closed = true;
      });
      const gone = () => closed || req.socket.destroyed;
      await new Promise<void>((resume) => held.push({ gone, resume }));
      if (gone()) {
        record(0, 'client_gone');
        return;
      }
    } else if (tokenOutage !== null) {
      const error = (tokenOutage.body as { error?: unknown } | null)?.error;
      record(tokenOutage.status, typeof error === 'string' ? error : undefined);
      sendJson(res, tokenOutage.status, tokenOutage.body);
      return;
    }
    const failure = tokenFailures.shift();
    if (failure) {
      const error = (failure.body as { error?: unknown } | null)?.error;
      record(failure.status, typeof error === 'string' ? error : undefined);
      sendJson(res, failure.status, failure.body);
      return;
    }
    const decision = authenticateClient(form, tenant, req.headers.authorization) ?? decide(form);
    if ('body' in decision) {
      record(decision.status, decision.body.error);
      sendJson(res, decision.status, decision.body);
      return;
    }
    grants.set(req, decision);
    // We checked PKCE ourselves; the mock would check again and answer its own invalid_request shapes.
    delete form.code_verifier;
    res.on('finish', () => record(res.statusCode, undefined, decision));
    service.requestHandler(req, res);
  }

  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const pathname = mockPath(url.pathname);
      const tenant = /^\/([^/]+)\/oauth2\/v2\.0\//.exec(url.pathname)?.[1];
      if (pathname !== url.pathname) req.url = `${pathname}${url.search}`;
      if (req.method === 'GET' && pathname === '/mock/mint') {
        const ttlParam = url.searchParams.get('ttl');
        const seconds = ttlParam === null ? ttl : Number(ttlParam);
        const token = await mint(url.searchParams.get('user') || defaultUser, seconds, url.searchParams.get('scope') || DEFAULT_SCOPE);
        sendJson(res, 200, { access_token: token, token_type: 'Bearer', expires_in: seconds });
        return;
      }
      if (req.method === 'POST' && ['/token', '/introspect', '/revoke'].includes(pathname)) {
        // The mock parses only JSON outside /token. A fully read request counts as parsed for its body parser,
        // so the form we set here is what it sees.
        const form = parseForm(await readBody(req), req.headers['content-type']);
        const withBody: IncomingMessage & { body?: Form } = req;
        withBody.body = form;
        if (pathname === '/token') {
          await handleToken(withBody, res, form, tenant === undefined ? undefined : decodeURIComponent(tenant));
          return;
        }
      }
      service.requestHandler(req, res);
    })().catch((err: unknown) => {
      log(`identity server error: ${String(err)}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: String(err) });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('identity server: no TCP address');
  const url = `http://127.0.0.1:${address.port}`;
  issuer.url = url;

  return {
    url,
    issuerUrl: url,
    port: address.port,
    authorizeUrl: `${url}/authorize`,
    tokenUrl: `${url}/token`,
    tokenRequests,
    get lastAuthorizeQuery() {
      return lastAuthorizeQuery;
    },
    mint,
    issueRefreshToken(user, scope = DEFAULT_SCOPE) {
      const token = opaqueRefreshToken();
      refreshTokens.set(token, { user, scope });
      return token;
    },
    revoke,
    setTokenTtl(seconds) {
      ttl = seconds;
    },
    failNextToken(response) {
      tokenFailures.push(response);
    },
    setTokenOutage(outage) {
      tokenOutage = outage;
      if (outage !== 'hang') for (const h of held.splice(0)) h.resume();
    },
    get heldTokenRequests() {
      return held.filter((h) => !h.gone()).length;
    },
    failNextAuthorize(error) {
      authorizeFailures.push(error);
    },
    checkToken,
    registerApp(app) {
      apps.set(app.clientId.toLowerCase(), app);
    },
    stop() {
      for (const h of held.splice(0)) h.resume();
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Keep-alive connections (fetch keeps them) would hold close() open until they time out.
        server.closeAllConnections();
      });
    },
  };
}
