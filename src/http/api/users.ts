import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { actorOf } from '../actor.js';
import { parseInput } from '../../lib/validate.js';
import { AppError } from '../../lib/errors.js';
import { MAX_PASSWORD_CHARS, type PasswordRefusal } from '../../users/sign-in.js';
import { newUserSchema } from '../../users/users.js';
import { CONTROL_CHARACTERS_REFUSED, hasControlCharacters } from '../../lib/plain-text.js';

export const apiKeySchema = z.object({
  name: z.string().trim().max(100).refine((s) => !hasControlCharacters(s), CONTROL_CHARACTERS_REFUSED).default('api key'),
  password: z.string().max(MAX_PASSWORD_CHARS).optional().describe("The caller's current password: required with a browser session, not with an API key"),
});

/** A session caller's re-entered password refused (SignIn.confirm), as the API's error, naming the field and what was not done. */
function refusalError(refusal: PasswordRefusal, field = 'password', notDone = 'no key was created'): AppError {
  const NotDone = notDone[0]!.toUpperCase() + notDone.slice(1);
  switch (refusal.reason) {
    case 'missing':
      return new AppError('JUNIPER_ERR_VALIDATION', field === 'password'
        ? `With a browser session, send your current password as "password": a key outlives sign-out and password changes. ${NotDone}.`
        : `With a browser session, send your current password as "${field}" (or confirm it on the Users page first): a new user is a lasting way in. ${NotDone}.`, { details: { field } });
    case 'wrong':
      return new AppError('JUNIPER_ERR_FORBIDDEN', `"${field}" is not your current password: ${notDone}.`, { details: { field } });
    case 'throttled':
      return new AppError('JUNIPER_ERR_RATE_LIMITED', `${NotDone}. ${refusal.message}`);
  }
}

export function userRoutes(services: Pick<Services, 'users' | 'apiKeys' | 'signIn'>): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/v1/users', { config: { access: 'admin' } }, async () => services.users.list());

    app.post('/api/v1/users', { config: { access: 'admin' } }, async (request, reply) => {
      const { currentPassword, ...input } = parseInput(newUserSchema.extend({ currentPassword: z.string().max(MAX_PASSWORD_CHARS).optional().describe("The admin's own password: required with a browser session not confirmed on the Users page in the last 10 minutes") }), request.body);
      // A new user is a lasting way in: an admin's session alone must not make one (recent-confirmations.ts).
      const principal = request.principal!;
      if (principal.via === 'session' && !(principal.session && services.signIn.recent.confirmedUntil(principal.session.id) !== undefined)) {
        const refused = await services.signIn.confirm(principal.user.login, currentPassword ?? '', request.ip);
        if (refused) throw refusalError(refused, 'currentPassword', 'no user was created');
      }
      const user = await services.users.create(input, actorOf(request));
      return reply.status(201).send(user);
    });

    app.get('/api/v1/api-keys', { config: { access: 'user' } }, async (request) => services.apiKeys.list(request.principal!.user.id));

    app.post('/api/v1/api-keys', { config: { access: 'user' } }, async (request, reply) => {
      const { name, password } = parseInput(apiKeySchema, request.body);
      const principal = request.principal!;
      // As on the Account page's form: whoever holds a session for a moment must not turn it into a lasting
      // credential without the password. A caller with an API key already holds one.
      if (principal.via === 'session') {
        const refused = await services.signIn.confirm(principal.user.login, password ?? '', request.ip);
        if (refused) throw refusalError(refused);
      }
      const user = await services.users.requireByLogin(principal.user.login);
      const { key, view } = await services.apiKeys.create(user, name, actorOf(request));
      return reply.status(201).send({ ...view, key });
    });
  };
}
