import type { PrincipalUser } from '../users/principal.js';

/** Whoever runs the CLI has the database and the vault key: an admin in every access rule. */
export const cliPrincipal: PrincipalUser = { id: 0, login: 'cli', email: '', name: 'command line', role: 'admin' };
