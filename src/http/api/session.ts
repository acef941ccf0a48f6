// Sign-in for browsers: POST /api/v1/session answers { user, csrfToken } and sets an HttpOnly cookie.
// SameSite=Lax, not Strict: the OAuth redirect back from Microsoft is a cross-site top-level GET that must
// still carry the session.
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { SESSION_COOKIE } from '../access.js';
import { SIGN_IN_BODY_LIMIT } from '../body-limits.js';
import { assertSameSite } from '../same-site.js';
import { parseInput } from '../../lib/validate.js';
import { toUserView } from '../../users/users.js';
import { SESSION_TTL_MS } from '../../users/sessions.js';
import { MAX_LOGIN_CHARS, MAX_PASSWORD_CHARS } from '../../users/sign-in.js';

export const signInSchema = z.object({ login: z.string().min(1).max(MAX_LOGIN_CHARS), password: z.string().min(1).max(MAX_PASSWORD_CHARS) });
export const setupSchema = z.object({
  token: z.string().min(1),
  login: z.string(),
  email: z.string(),
  name: z.string().optional(),
  password: z.string(),
});

export function setSessionCookie(reply: FastifyReply, token: string): void {
  void reply.setCookie(SESSION_COOKIE, token, {
    path: '/',
    httpOnly: true,
    sameSite: 'lax',
    secure: 'auto',
    maxAge: Math.floor(SESSION_TTL_MS / 1000),
  });
}

export function sessionRoutes(services: Pick<Services, 'parameters' | 'signIn' | 'sessions' | 'users' | 'firstRun'>): FastifyPluginAsync {
  return async (app) => {
    // Anyone may post these two, so a large body is refused before it is read.
    app.post('/api/v1/session', { config: { access: 'public' }, bodyLimit: SIGN_IN_BODY_LIMIT }, async (request, reply) => {
      assertSameSite(request, await services.parameters.value('web.base.url'));
      const { login, password } = parseInput(signInSchema, request.body);
      const user = await services.signIn.attempt(login, password, request.ip);
      const session = await services.sessions.create(user.id);
      setSessionCookie(reply, session.token);
      return { user: toUserView(user), csrfToken: session.csrfToken };
    });

    app.get('/api/v1/session', { config: { access: 'user' } }, async (request) => {
      const p = request.principal!;
      const user = await services.users.findById(p.user.id);
      return { user: user && toUserView(user), via: p.via, csrfToken: p.session?.csrfToken ?? null };
    });

    app.delete('/api/v1/session', { config: { access: 'user' } }, async (request, reply) => {
      const token = request.cookies[SESSION_COOKIE];
      if (token) await services.sessions.destroy(token);
      void reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return reply.status(204).send();
    });

    app.post('/api/v1/setup', { config: { access: 'public' }, bodyLimit: SIGN_IN_BODY_LIMIT }, async (request, reply) => {
      assertSameSite(request, await services.parameters.value('web.base.url'));
      const input = parseInput(setupSchema, request.body);
      // check() says setup is done once an admin exists, else whether the token is the one printed.
      services.firstRun.check(input.token);
      const view = await services.firstRun.complete(input.token, input);
      const user = await services.users.findById(view.id);
      const session = await services.sessions.create(user!.id);
      setSessionCookie(reply, session.token);
      return reply.status(201).send({ user: view, csrfToken: session.csrfToken });
    });
  };
}
