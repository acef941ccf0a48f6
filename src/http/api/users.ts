import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { actorOf } from '../actor.js';
import { parseInput } from '../../lib/validate.js';
import { AppError } from '../../lib/errors.js';
import { MAX_PASSWORD_CHARS, type PasswordRefusal } from '../../users/sign-in.js';
import { newUserSchema } from '../../users/users.js';

export const apiKeySchema = z.object({
  name: z.string().trim().max(100).default('api key'),
  password: z.string().max(MAX_PASSWORD_CHARS).optional().describe("The caller's current password: required with a browser session, not with an API key"),
});

/** A session caller's re-entered password refused (SignIn.confirm), as the API's error. */
function refusalError(refusal: PasswordRefusal): AppError {
  switch (refusal.reason) {
    case 'missing':
      return new AppError('JUNIPER_ERR_VALIDATION', 'With a browser session, send your current password as "password": a key outlives sign-out and password changes. No key was created.', { details: { field: 'password' } });
    case 'wrong':
      return new AppError('JUNIPER_ERR_FORBIDDEN', '"password" is not your current password: no key was created.', { details: { field: 'password' } });
    case 'throttled':
      return new AppError('JUNIPER_ERR_RATE_LIMITED', `No key was created. ${refusal.message}`);
  }
}

export function userRoutes(services: Pick<Services, 'users' | 'apiKeys' | 'signIn'>): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/v1/users', { config: { access: 'admin' } }, async () => services.users.list());

    app.post('/api/v1/users', { config: { access: 'admin' } }, async (request, reply) => {
      const input = parseInput(newUserSchema, request.body);
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
