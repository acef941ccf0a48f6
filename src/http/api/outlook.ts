import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { parseInput } from '../../lib/validate.js';

export const idParams = z.object({ id: z.coerce.number().int().positive() });

export function outlookRoutes(services: Pick<Services, 'outlookConnect'>): FastifyPluginAsync {
  return async (app) => {
    for (const kind of ['outgoing', 'incoming'] as const) {
      // Admins, or a user for their own personal server (checked by the service).
      app.post(`/api/v1/${kind}-servers/:id/outlook/connect`, { config: { access: 'user' } }, async (request) => {
        const { id } = parseInput(idParams, request.params, 'path');
        return services.outlookConnect.start(kind, id, request.principal!);
      });
    }
  };
}
