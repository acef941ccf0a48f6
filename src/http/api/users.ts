import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { actorOf } from '../actor.js';
import { parseInput } from '../../lib/validate.js';
import { newUserSchema } from '../../users/users.js';

export const apiKeySchema = z.object({ name: z.string().trim().max(100).default('api key') });

export function userRoutes(services: Pick<Services, 'users' | 'apiKeys'>): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/v1/users', { config: { access: 'admin' } }, async () => services.users.list());

    app.post('/api/v1/users', { config: { access: 'admin' } }, async (request, reply) => {
      const input = parseInput(newUserSchema, request.body);
      const user = await services.users.create(input, actorOf(request));
      return reply.status(201).send(user);
    });

    app.get('/api/v1/api-keys', { config: { access: 'user' } }, async (request) => services.apiKeys.list(request.principal!.user.id));

    app.post('/api/v1/api-keys', { config: { access: 'user' } }, async (request, reply) => {
      const { name } = parseInput(apiKeySchema, request.body);
      const user = await services.users.requireByLogin(request.principal!.user.login);
      const { key, view } = await services.apiKeys.create(user, name, actorOf(request));
      return reply.status(201).send({ ...view, key });
    });
  };
}
