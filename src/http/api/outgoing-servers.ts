import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { parseInput } from '../../lib/validate.js';
import { testOutgoingServer } from '../../outgoing/connection-test.js';
import { explainRoute } from '../../outgoing/route-explainer.js';
import { createOutgoingServerSchema, patchOutgoingServerSchema } from '../../outgoing/server-rules.js';
import { assertMayManage, outgoingServerView } from '../../outgoing/servers.js';
import { actorOf } from '../actor.js';

const idParams = z.object({ id: z.coerce.number().int().positive() });
const listQuery = z.object({ archived: z.enum(['true', 'false']).optional() });
const routeQuery = z.object({ from: z.string().min(1), massMailing: z.enum(['true', 'false']).optional(), serverId: z.coerce.number().int().positive().optional() });

export function outgoingServerRoutes(services: Pick<Services, 'outgoingServers' | 'oauthAppStatus' | 'parameters' | 'tokens'>): FastifyPluginAsync {
  const { outgoingServers } = services;
  return async (app) => {
    app.get('/api/v1/outgoing-servers', { config: { access: 'user' } }, async (request) => {
      const user = request.principal!.user;
      const { archived } = parseInput(listQuery, request.query, 'query');
      const rows = await outgoingServers.list({ includeArchived: archived === 'true', ownerUserId: user.role === 'admin' ? undefined : user.id });
      const problem = await services.oauthAppStatus.get();
      return rows.map((r) => outgoingServerView(r, problem));
    });

    app.post('/api/v1/outgoing-servers', { config: { access: 'user' } }, async (request, reply) => {
      const input = parseInput(createOutgoingServerSchema, request.body);
      const row = await outgoingServers.create(input, request.principal!.user, actorOf(request));
      return reply.status(201).send(outgoingServerView(row));
    });

    app.get('/api/v1/outgoing-servers/:id', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const row = await outgoingServers.get(id);
      assertMayManage(request.principal!.user, row);
      return outgoingServerView(row, await services.oauthAppStatus.get());
    });

    app.patch('/api/v1/outgoing-servers/:id', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const patch = parseInput(patchOutgoingServerSchema, request.body);
      return outgoingServerView(await outgoingServers.update(id, patch, request.principal!.user, actorOf(request)));
    });

    app.delete('/api/v1/outgoing-servers/:id', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      return outgoingServerView(await outgoingServers.archive(id, request.principal!.user, actorOf(request)));
    });

    app.post('/api/v1/outgoing-servers/:id/test', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const server = await outgoingServers.get(id);
      assertMayManage(request.principal!.user, server);
      const result = await testOutgoingServer(server, { servers: outgoingServers, parameters: services.parameters, tokens: services.tokens });
      return { ok: result.ok, message: result.message, stage: result.stage };
    });

    app.get('/api/v1/route', { config: { access: 'admin' } }, async (request) => {
      const q = parseInput(routeQuery, request.query, 'query');
      return explainRoute({ from: q.from, massMailing: q.massMailing === 'true', forcedServerId: q.serverId ?? null }, { servers: outgoingServers, parameters: services.parameters });
    });
  };
}
