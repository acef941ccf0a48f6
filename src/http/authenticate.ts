// Resolves who is calling (API key or session cookie) and enforces the route's declared access in onRequest,
// from the headers alone: a caller without credentials is refused before Fastify reads the body, which on the
// mail routes may be tens of MB to parse (body-limits.ts). For cookie-authenticated state changes a
// preValidation hook then checks the session's CSRF token, which a form sends in its body, and (in depth,
// should a token ever leak) that the browser does not report the request as coming from another site.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../lib/errors.js';
import { timingSafeEqualStr } from '../vault/hmac.js';
import type { ApiKeys } from '../users/api-keys.js';
import type { Sessions } from '../users/sessions.js';
import { assertSameSite } from './same-site.js';
import { toPrincipalUser } from '../users/users.js';
import { CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, type Principal } from './access.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function authenticator(deps: { sessions: Sessions; apiKeys: ApiKeys; parameters: { value(key: string): Promise<string | undefined> } }) {
  async function identify(request: FastifyRequest): Promise<Principal | null> {
    const auth = request.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      const user = m?.[1] ? await deps.apiKeys.resolve(m[1]) : undefined;
      // A wrong key is an error even on public routes: a script with a revoked key should hear about it.
      if (!user) throw new AppError('JUNIPER_ERR_UNAUTHENTICATED', 'The API key is unknown, revoked or malformed. Create one with `juniper api-keys create --user LOGIN`.');
      return { user: toPrincipalUser(user), via: 'api_key' };
    }
    const token = request.cookies[SESSION_COOKIE];
    if (!token) return null;
    const found = await deps.sessions.resolve(token);
    if (!found) return null;
    return { user: toPrincipalUser(found.user), via: 'session', session: { id: found.sessionId, csrfToken: found.csrfToken } };
  }

  /** onRequest: who calls, and whether the route's declared access lets them; reads no body. */
  async function authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const access = request.routeOptions.config.access;
    request.principal = await identify(request);
    if (access === 'public' || access === undefined) return;
    const principal = request.principal;
    if (!principal) {
      if (wantsHtml(request)) {
        await reply.redirect(`/login?next=${encodeURIComponent(request.url)}`);
        return;
      }
      throw new AppError('JUNIPER_ERR_UNAUTHENTICATED');
    }
    if (access === 'admin' && principal.user.role !== 'admin') {
      throw new AppError('JUNIPER_ERR_FORBIDDEN', 'Only an admin may do this.');
    }
  }

  /** preValidation: a signed-in browser's state change carries the session's CSRF token (header or form field). */
  async function checkCsrf(request: FastifyRequest): Promise<void> {
    const access = request.routeOptions.config.access;
    const principal = request.principal;
    if (access === 'public' || access === undefined || !principal?.session || SAFE_METHODS.has(request.method)) return;
    const body = request.body as Record<string, unknown> | undefined;
    const sent = request.headers[CSRF_HEADER] ?? (typeof body?.[CSRF_FIELD] === 'string' ? body[CSRF_FIELD] : undefined);
    if (typeof sent !== 'string' || !timingSafeEqualStr(sent, principal.session.csrfToken)) throw new AppError('JUNIPER_ERR_CSRF');
    assertSameSite(request, await deps.parameters.value('web.base.url'), () =>
      new AppError('JUNIPER_ERR_CSRF', 'This request comes from another web site (its Origin or Sec-Fetch-Site says so); Juniper accepts changes only from its own pages.'),
    );
  }

  return { authenticate, checkCsrf };
}

function wantsHtml(request: FastifyRequest): boolean {
  return request.method === 'GET' && !request.url.startsWith('/api/') && (request.headers.accept ?? '').includes('text/html');
}
