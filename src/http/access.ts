// Every /api route declares who may call it (route `config.access`); a route without a declaration is a
// start-up error, and a test walks the route table to prove it.
import type { Role } from '../db/schema.js';

export type Access = 'public' | 'user' | 'admin';

export interface PrincipalUser {
  id: number;
  login: string;
  email: string;
  name: string;
  role: Role;
}

export interface Principal {
  user: PrincipalUser;
  via: 'session' | 'api_key';
  /** Present when signed in with the browser session cookie. */
  session?: { id: string; csrfToken: string };
}

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
