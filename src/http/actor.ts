import type { FastifyRequest } from 'fastify';
import type { Actor } from '../audit/audit-log.js';

/** The audit actor for an authenticated request. */
export function actorOf(request: FastifyRequest): Actor {
  const p = request.principal;
  return p ? { userId: p.user.id, label: p.user.login } : { userId: null, label: 'anonymous' };
}
