// The Microsoft identity platform's wire shapes for the test identity server (identity-server.ts): error
// bodies, token claims, Entra-style paths, PKCE, and the small HTTP helpers the server needs.
import crypto from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export type Form = Record<string, string>;

/** A Microsoft identity platform error body, as /token answers it. */
export interface MicrosoftErrorBody {
  error: string;
  error_description: string;
  error_codes: number[];
  timestamp: string;
  trace_id: string;
  correlation_id: string;
  error_uri: string;
}

export const DEFAULT_SCOPE = 'https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access';
export const TENANT_ID = '7e1a4c0e-5f3b-4d2a-9c61-0d5b8a3f2e11';

/** The `aud` of Exchange Online tokens (SMTP AUTH, IMAP) and of Microsoft Graph tokens (`/me/sendMail`). */
export const OUTLOOK_AUDIENCE = 'https://outlook.office.com';
export const GRAPH_AUDIENCE = 'https://graph.microsoft.com';

const OPENID_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access']);

/**
 * The resource one scope belongs to, as Entra ID reads it: `https://outlook.office.com/SMTP.Send` ->
 * `https://outlook.office.com` (the URI up to the last slash); a bare name (`Mail.Send`, `User.Read`) is a
 * Microsoft Graph permission; the OpenID scopes belong to no resource (undefined).
 */
export function scopeResource(scope: string): string | undefined {
  if (OPENID_SCOPES.has(scope)) return undefined;
  if (!scope.includes('://')) return GRAPH_AUDIENCE;
  const slash = scope.indexOf('/', scope.indexOf('://') + 3);
  return slash < 0 ? scope : scope.slice(0, scope.lastIndexOf('/'));
}

/** The resources a space-separated scope string names, in order of first appearance. */
export function scopeResources(scope: string): string[] {
  const resources: string[] = [];
  for (const s of scope.split(' ')) {
    const resource = s ? scopeResource(s) : undefined;
    if (resource !== undefined && !resources.includes(resource)) resources.push(resource);
  }
  return resources;
}

/** Entra ID compares permissions case-insensitively, by resource and name. */
function permissionKey(scope: string): string | undefined {
  const resource = scopeResource(scope);
  if (resource === undefined) return undefined;
  const name = scope.includes('://') ? scope.slice(scope.lastIndexOf('/') + 1) : scope;
  return `${resource}/${name}`.toLowerCase();
}

export type IssuedScope = { ok: true; scope: string } | { ok: false; resource: string };

/**
 * What Entra ID issues for a /token request's `requested` scope when the user consented to `consented` (the
 * scopes of the /authorize request, which may span several resources: one consent covers SMTP.Send and Graph's
 * Mail.Send). A token is for one resource only; Microsoft documents the /token `scope` parameter of the code
 * and of the refresh grant as: "If the scopes specified in this request span multiple resource servers, then
 * the Microsoft identity platform returns a token for the resource specified in the first scope"
 * (learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow, "Redeem a code for an access token"
 * and "Refresh the access token"), so the scopes of later resources are dropped (real tenants have also been
 * seen refusing such requests with AADSTS28000; we follow the documentation). Each kept permission must have
 * been consented (`.default` stands for every consented permission of its resource), otherwise `ok: false`
 * names the resource (Entra's AADSTS65001).
 */
export function issuedScope(requested: string, consented: string): IssuedScope {
  const first = scopeResources(requested)[0];
  const consentedScopes = consented.split(' ').filter((s) => s && scopeResource(s) !== undefined);
  const ofResource = (resource: string) => consentedScopes.filter((s) => scopeResource(s)?.toLowerCase() === resource.toLowerCase());
  const consentedKeys = new Set(consentedScopes.map(permissionKey));
  const issued: string[] = [];
  for (const s of requested.split(' ')) {
    const resource = s ? scopeResource(s) : undefined;
    if (!s || (resource !== undefined && resource !== first)) continue;
    if (resource === undefined) {
      issued.push(s);
      continue;
    }
    const wholeResource = ofResource(resource);
    const resourceDefault = wholeResource.some((c) => c.endsWith('/.default'));
    if (s.endsWith('/.default')) {
      if (wholeResource.length === 0) return { ok: false, resource };
      issued.push(...wholeResource.filter((c) => !c.endsWith('/.default') && !issued.includes(c)));
      if (resourceDefault && !issued.includes(s)) issued.push(s);
    } else if (consentedKeys.has(permissionKey(s)) || resourceDefault) {
      issued.push(s);
    } else {
      return { ok: false, resource };
    }
  }
  return { ok: true, scope: issued.join(' ') };
}

/**
 * The `aud` of an access token issued for scope: its (first) resource. A request of OpenID scopes only gets a
 * Microsoft Graph token from Entra ID (the userinfo endpoint is Graph's), so that is the audience then too.
 */
export function audienceOf(scope: string): string {
  return scopeResources(scope)[0] ?? GRAPH_AUDIENCE;
}

/** A Microsoft-shaped error body: `microsoftError('invalid_grant', 700082, 'The refresh token has expired ...')`. */
export function microsoftError(error: string, code: number, message: string): MicrosoftErrorBody {
  const traceId = crypto.randomUUID();
  const correlationId = crypto.randomUUID();
  const timestamp = new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  return {
    error,
    error_description: `AADSTS${code}: ${message} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
    error_codes: [code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  };
}

/** Entra ID puts these names in both access and id tokens; `oid` is stable per user. */
export function userClaims(user: string): Record<string, string> {
  const h = crypto.createHash('sha256').update(user.toLowerCase()).digest('hex');
  const oid = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
  return { sub: user, email: user, preferred_username: user, upn: user, oid, tid: TENANT_ID, name: user.split('@')[0] ?? user };
}

/** Entra refresh tokens are long opaque strings (~1 KB), not UUIDs: storage and logs should see real sizes. */
/**
 * Entra ID access tokens carry the granted scopes in `scp`, short names without the resource prefix and without
 * the OpenID ones ("IMAP.AccessAsUser.All SMTP.Send"); the full URIs only appear in the token response's `scope`.
 * Keeping that shape also keeps ES256 tokens under Dovecot submission's 1 KB AUTH line.
 */
export function scpClaim(scope: string): string {
  return scope
    .split(' ')
    .filter((s) => s && !OPENID_SCOPES.has(s))
    .map((s) => s.replace(/^https?:\/\/[^/]+\//, ''))
    .join(' ');
}

export function opaqueRefreshToken(): string {
  return `1.AQ${crypto.randomBytes(600).toString('base64url')}`;
}

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function parseForm(raw: string, contentType: string | undefined): Form {
  if ((contentType ?? '').includes('json')) {
    const parsed: unknown = raw ? JSON.parse(raw) : {};
    const form: Form = {};
    if (parsed !== null && typeof parsed === 'object') {
      for (const [k, v] of Object.entries(parsed)) if (typeof v === 'string') form[k] = v;
    }
    return form;
  }
  return Object.fromEntries(new URLSearchParams(raw));
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** Maps Entra-style paths onto the mock's own endpoints; anything else is left as it is. */
export function mockPath(pathname: string): string {
  const ms = /^\/[^/]+\/oauth2\/v2\.0\/(authorize|token|logout)$/.exec(pathname);
  if (ms?.[1]) return ms[1] === 'logout' ? '/endsession' : `/${ms[1]}`;
  if (/^\/[^/]+\/v2\.0\/\.well-known\/openid-configuration$/.test(pathname)) return '/.well-known/openid-configuration';
  if (/^\/[^/]+\/discovery\/v2\.0\/keys$/.test(pathname)) return '/jwks';
  return pathname;
}

export function pkceMatches(verifier: string, challenge: { value: string; method: string }): boolean {
  const derived = challenge.method === 'S256' ? crypto.createHash('sha256').update(verifier).digest('base64url') : verifier;
  const a = Buffer.from(derived);
  const b = Buffer.from(challenge.value);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}
