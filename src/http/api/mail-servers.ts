// The REST routes both kinds of mail server share (/api/v1/<kind>-servers): list, create, show, change,
// archive, restore and test, over the kind's MailServers service. Each kind's file adds what only it has.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { parseInput } from '../../lib/validate.js';
import type { CommonInput, KindName, MailServers, ServerRows } from '../../mail-servers/mail-servers.js';
import type { OAuthAppStatus } from '../../oauth/app-status.js';
import { serverViewOf, serverViews } from '../../mail-servers/server-views.js';
import { actorOf } from '../actor.js';
import { idParams, managedServer } from '../managed-server.js';

export const listQuery = z.object({ archived: z.enum(['true', 'false']).optional() });

export function mailServerRoutes<K extends KindName, C extends CommonInput, P extends Partial<CommonInput>, V>(
  app: FastifyInstance,
  servers: MailServers<K, C, P, V>,
  appStatus: OAuthAppStatus,
  /** Test Connection / Test & Confirm: a failure is an answer ({ ok: false, message }), not an HTTP error. */
  test: (server: ServerRows[K]) => Promise<object>,
): void {
  const base = `/api/v1/${servers.kind.kind}-servers`;
  const access = { config: { access: 'user' as const } };

  app.get(base, access, async (request) => {
    const user = request.principal!.user;
    const { archived } = parseInput(listQuery, request.query, 'query');
    const rows = await servers.list({ includeArchived: archived === 'true', ownerUserId: user.role === 'admin' ? undefined : user.id });
    return serverViews(servers, appStatus, rows);
  });

  app.post(base, access, async (request, reply) => {
    const input = parseInput(servers.kind.createSchema, request.body);
    const row = await servers.create(input, request.principal!.user, actorOf(request));
    return reply.status(201).send(await serverViewOf(servers, appStatus, row));
  });

  app.get(`${base}/:id`, access, async (request) => serverViewOf(servers, appStatus, await managedServer(servers, request)));

  app.patch(`${base}/:id`, access, async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    const patch = parseInput(servers.kind.patchSchema, request.body);
    return serverViewOf(servers, appStatus, await servers.update(id, patch, request.principal!.user, actorOf(request)));
  });

  app.delete(`${base}/:id`, access, async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    return serverViewOf(servers, appStatus, await servers.archive(id, request.principal!.user, actorOf(request)));
  });

  // The pages' Restore and `juniper … restore ID` call the same restore(): the same audit entry, the same refusals.
  app.post(`${base}/:id/restore`, access, async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    return serverViewOf(servers, appStatus, await servers.restore(id, request.principal!.user, actorOf(request)));
  });

  app.post(`${base}/:id/test`, access, async (request) => test(await managedServer(servers, request)));
}
