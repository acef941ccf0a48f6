// System parameters over HTTP (DESIGN §11): admins only; values are validated by the service, so this
// file only shapes the request. Changes go through settings.setParameter: the mass_mailing.* keys are refused
// what Settings refuses.
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { actorOf } from '../actor.js';
import { parseInput } from '../../lib/validate.js';

// Numbers and booleans are taken as their text, so `{ "value": true }` works for a boolean parameter.
export const putSchema = z.strictObject({
  value: z.union([z.string(), z.number(), z.boolean()], { error: 'value is required: a string (numbers and booleans are accepted as text)' }),
});
export const keyParams = z.object({ key: z.string() });

export function parameterRoutes(services: Pick<Services, 'parameters' | 'settings'>): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/v1/parameters', { config: { access: 'admin' } }, async () => services.parameters.list());

    app.get('/api/v1/parameters/:key', { config: { access: 'admin' } }, async (request) => {
      const { key } = parseInput(keyParams, request.params, 'path');
      return services.parameters.get(key);
    });

    app.put('/api/v1/parameters/:key', { config: { access: 'admin' } }, async (request) => {
      const { key } = parseInput(keyParams, request.params, 'path');
      const { value } = parseInput(putSchema, request.body);
      return services.settings.setParameter(key, String(value), actorOf(request));
    });

    // Idempotent: deleting an unset parameter is not an error, so scripts can converge without checking first.
    app.delete('/api/v1/parameters/:key', { config: { access: 'admin' } }, async (request, reply) => {
      const { key } = parseInput(keyParams, request.params, 'path');
      await services.settings.unsetParameter(key, actorOf(request));
      return reply.status(204).send();
    });
  };
}
