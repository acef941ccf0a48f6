// Every /api route declares who may call it (route `config.access`); a route without a declaration is a
// start-up error, and a test walks the route table to prove it.
import type { Principal } from '../users/principal.js';

export type { Principal, PrincipalUser } from '../users/principal.js';

export type Access = 'public' | 'user' | 'admin';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export const SESSION_COOKIE = 'juniper_session';
export const CSRF_HEADER = 'x-csrf-token';
export const CSRF_FIELD = '_csrf';
