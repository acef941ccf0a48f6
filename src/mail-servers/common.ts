// What outgoing and incoming mail servers share: the view of their common fields, the last test result, and
// who may manage a server. Each kind keeps its own fields and rules in outgoing/ and incoming/; the OAuth
// connections are src/oauth's (oauth/connections.ts).
import type { IncomingServer, OutgoingServer } from '../db/schema.js';
import type { PrincipalUser } from '../users/principal.js';
import { AppError } from '../lib/errors.js';
import type { AppProblem } from '../oauth/app-status.js';
import { tokenView } from '../oauth/connections.js';

/** The fields every kind's view has; each kind adds its own. */
export function serverView<S extends OutgoingServer | IncomingServer>(s: S, appProblem: AppProblem | null) {
  return {
    id: s.id,
    name: s.name,
    host: s.host,
    port: s.port,
    security: s.security,
    auth: s.auth as S['auth'],
    username: s.username,
    hasPassword: s.password_enc !== null,
    priority: s.priority,
    active: s.active === 1,
    archived: s.archived_at !== null,
    allowSelfSigned: s.allow_self_signed === 1,
    ownerUserId: s.owner_user_id,
    token: tokenView(s, appProblem),
    lastTest: lastTestView(s),
    createdAt: iso(s.created_at)!,
    updatedAt: iso(s.updated_at)!,
  };
}

export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export function lastTestView(s: Pick<OutgoingServer, 'last_test_at' | 'last_test_ok' | 'last_test_message'>): { at: string; ok: boolean; message: string } | null {
  return s.last_test_at === null ? null : { at: iso(s.last_test_at)!, ok: s.last_test_ok === 1, message: s.last_test_message ?? '' };
}

/** Admins manage every server; a user only the personal servers they own (others do not exist for them). */
export function assertMayManageServer(kind: 'outgoing' | 'incoming', user: PrincipalUser, server: { owner_user_id: number | null; id: number }): void {
  if (user.role === 'admin') return;
  if (server.owner_user_id !== user.id) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No ${kind} mail server with id ${server.id}.`);
}

/** Only an admin hands a server to another user. */
export function assertMayChangeOwner(user: PrincipalUser, ownerUserId: number | null | undefined): void {
  if (user.role !== 'admin' && ownerUserId !== undefined && ownerUserId !== user.id) {
    throw new AppError('JUNIPER_ERR_FORBIDDEN', 'Only an admin may give a server to another user.');
  }
}
