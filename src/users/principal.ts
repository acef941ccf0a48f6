// Who is acting: the signed-in user (or the command line) as services see them. Lives with the users, not
// with HTTP, so domain modules never import the web layer.
import type { Role } from '../db/schema.js';

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
