import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { parseInput } from '../../lib/validate.js';
import { testOutgoingServer } from '../../outgoing/connection-test.js';
import { explainRoute } from '../../outgoing/route-explainer.js';
import { mailServerRoutes } from './mail-servers.js';

export const routeQuery = z.object({ from: z.string().min(1), massMailing: z.enum(['true', 'false']).optional(), serverId: z.coerce.number().int().positive().optional() });

export function outgoingServerRoutes(services: Pick<Services, 'outgoingServers' | 'oauthAppStatus' | 'parameters' | 'tokens' | 'settings'>): FastifyPluginAsync {
  const { outgoingServers } = services;
  return async (app) => {
    mailServerRoutes(app, outgoingServers, services.oauthAppStatus, async (server) => {
      const result = await testOutgoingServer(server, { servers: outgoingServers, parameters: services.parameters, tokens: services.tokens, graphEndpoint: () => services.settings.graphEndpoint() });
      return { ok: result.ok, message: result.message, stage: result.stage };
    });

    app.get('/api/v1/route', { config: { access: 'admin' } }, async (request) => {
      const q = parseInput(routeQuery, request.query, 'query');
      return explainRoute({ from: q.from, massMailing: q.massMailing === 'true', forcedServerId: q.serverId ?? null }, { servers: outgoingServers, parameters: services.parameters });
    });
  };
}
