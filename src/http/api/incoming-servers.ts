import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';
import { createIncomingServerSchema, patchIncomingServerSchema } from '../../incoming/server-rules.js';
import { assertMayManageIncoming, incomingServerView } from '../../incoming/servers.js';
import { parseInput } from '../../lib/validate.js';
import { assertMayChangeOwner } from '../../mail-servers/common.js';
import { actorOf } from '../actor.js';

const idParams = z.object({ id: z.coerce.number().int().positive() });
const listQuery = z.object({ archived: z.enum(['true', 'false']).optional() });

export function incomingServerRoutes(services: Pick<Services, 'incomingServers' | 'incoming' | 'oauthAppStatus'>): FastifyPluginAsync {
  const { incomingServers, incoming } = services;
  return async (app) => {
    app.get('/api/v1/incoming-servers', { config: { access: 'user' } }, async (request) => {
      const user = request.principal!.user;
      const { archived } = parseInput(listQuery, request.query, 'query');
      const rows = await incomingServers.list({ includeArchived: archived === 'true', ownerUserId: user.role === 'admin' ? undefined : user.id });
      const problem = await services.oauthAppStatus.get();
      return rows.map((r) => incomingServerView(r, problem));
    });

    app.post('/api/v1/incoming-servers', { config: { access: 'user' } }, async (request, reply) => {
      const input = parseInput(createIncomingServerSchema, request.body);
      // The service would quietly make the server the caller's own; say so instead, as outgoing servers do.
      assertMayChangeOwner(request.principal!.user, input.ownerUserId);
      const row = await incomingServers.create(input, request.principal!.user, actorOf(request));
      return reply.status(201).send(incomingServerView(row));
    });

    app.get('/api/v1/incoming-servers/:id', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const row = await incomingServers.get(id);
      assertMayManageIncoming(request.principal!.user, row);
      return incomingServerView(row, await services.oauthAppStatus.get());
    });

    app.patch('/api/v1/incoming-servers/:id', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const patch = parseInput(patchIncomingServerSchema, request.body);
      return incomingServerView(await incomingServers.update(id, patch, request.principal!.user, actorOf(request)));
    });

    app.delete('/api/v1/incoming-servers/:id', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      return incomingServerView(await incomingServers.archive(id, request.principal!.user, actorOf(request)));
    });

    // Test & Confirm: a failure is an answer ({ ok: false, message }), not an HTTP error; the form shows it.
    app.post('/api/v1/incoming-servers/:id/test', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const server = await incomingServers.get(id);
      assertMayManageIncoming(request.principal!.user, server);
      const r = await incoming.testAndConfirm(server);
      const state = (await incomingServers.get(id)).state;
      return { ok: r.ok, message: r.message, stage: r.stage, state, ...(r.serverReply ? { serverReply: r.serverReply } : {}) };
    });

    app.post('/api/v1/incoming-servers/:id/fetch', { config: { access: 'user' } }, async (request) => {
      const { id } = parseInput(idParams, request.params, 'path');
      const server = await incomingServers.get(id);
      assertMayManageIncoming(request.principal!.user, server);
      return incoming.fetchNow(server);
    });
  };
}
