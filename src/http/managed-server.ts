// The mail server a request's :id names, for the REST routes and the web pages alike: looked up, and refused
// (as not found) unless the signed-in user may manage it.
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { parseInput } from '../lib/validate.js';
import type { PrincipalUser } from '../users/principal.js';

export const idParams = z.object({ id: z.coerce.number().int().positive() });

/** The server named by the path's :id, if the caller may manage it. */
export async function managedServer<R extends { id: number; owner_user_id: number | null }>(
  servers: { get(id: number): Promise<R>; assertMayManage(user: PrincipalUser, server: { id: number; owner_user_id: number | null }): void },
  request: FastifyRequest,
): Promise<R> {
  const { id } = parseInput(idParams, request.params, 'path');
  const server = await servers.get(id);
  servers.assertMayManage(request.principal!.user, server);
  return server;
}

