// Incoming (IMAP) mail servers: the incoming ServerKind (IMAP presets and auth rules, folder, interval)
// over the shared MailServers service (the fetch lease and cursor are in fetch-state.ts). A change to how
// Juniper connects sends the server back to draft, so it is fetched again only after a Test & Confirm.
import type { IncomingServer } from '../db/schema.js';
import type { PrincipalUser } from '../users/principal.js';
import { assertMayChangeOwner, assertMayManageServer, iso, serverView } from '../mail-servers/common.js';
import { serverPasswordContext, type MailServers, type ServerKind } from '../mail-servers/mail-servers.js';
import type { AppProblem } from '../oauth/app-status.js';
import {
  applyIncomingAuthRules,
  checkIncomingConnection,
  createIncomingServerSchema,
  incomingConnectionDefaults,
  patchIncomingServerSchema,
  type CreateIncomingServer,
  type PatchIncomingServer,
} from './server-rules.js';

export type IncomingServerView = ReturnType<typeof incomingServerView>;

export function incomingServerView(s: IncomingServer, appProblem: AppProblem | null = null) {
  return {
    ...serverView(s, appProblem),
    protocol: s.protocol,
    folder: s.folder,
    keepOriginal: s.keep_original === 1,
    keepAttachments: s.keep_attachments === 1,
    intervalMinutes: s.interval_minutes,
    state: s.state,
    lastFetchAt: iso(s.last_fetch_at),
    lastError: s.last_error,
    errorSince: iso(s.error_since),
  };
}

export const incomingPasswordContext = (id: number) => serverPasswordContext('incoming_servers', id);

/** Admins manage every server; a user only the personal servers they own (others do not exist for them). */
export function assertMayManageIncoming(user: PrincipalUser, server: Pick<IncomingServer, 'owner_user_id' | 'id'>): void {
  assertMayManageServer('incoming', user, server);
}

const bit = (value: boolean | undefined, current: number) => (value === undefined ? current : value ? 1 : 0);

export const incomingKind: ServerKind<'incoming', CreateIncomingServer, PatchIncomingServer, IncomingServerView> = {
  kind: 'incoming',
  table: 'incoming_servers',
  noun: 'incoming mail server',
  listCommand: 'juniper incoming list',
  createSchema: createIncomingServerSchema,
  patchSchema: patchIncomingServerSchema,
  view: incomingServerView,
  testPassed: { state: 'confirmed' },
  create(input, user) {
    // Rather than quietly making the server the caller's own, say so (as a change of owner does).
    assertMayChangeOwner(user, input.ownerUserId);
    const conn = incomingConnectionDefaults(input.auth, input);
    checkIncomingConnection(input.auth, conn.port, conn.security);
    const cred = applyIncomingAuthRules({ auth: input.auth, username: input.username ?? null, password: input.password ?? null, hasStoredPassword: false });
    return {
      ...conn,
      auth: input.auth,
      username: cred.username,
      password: cred.password,
      columns: {
        protocol: input.protocol,
        folder: input.folder,
        keep_original: input.keepOriginal ? 1 : 0,
        keep_attachments: input.keepAttachments ? 1 : 0,
        state: 'draft',
        interval_minutes: input.intervalMinutes,
      },
    };
  },
  update(current, patch) {
    const auth = patch.auth ?? current.auth;
    const port = patch.port ?? current.port;
    const security = patch.security ?? current.security;
    checkIncomingConnection(auth, port, security);
    const cred = applyIncomingAuthRules({
      auth,
      username: patch.username !== undefined ? patch.username : current.username,
      password: patch.password !== undefined ? patch.password : undefined,
      hasStoredPassword: current.password_enc !== null && auth === 'password',
    });
    const host = patch.host ?? current.host;
    const folder = patch.folder ?? current.folder;
    const connectionChanged =
      host !== current.host || port !== current.port || security !== current.security || auth !== current.auth || cred.username !== current.username ||
      folder !== current.folder || bit(patch.allowSelfSigned, current.allow_self_signed) !== current.allow_self_signed || !!cred.password;
    // UIDs belong to one folder of one mailbox: another one starts a new cursor (duplicates are still caught by Message-ID).
    const otherMailbox = host !== current.host || cred.username !== current.username || folder !== current.folder;
    return {
      host,
      port,
      security,
      auth,
      username: cred.username,
      password: cred.password,
      columns: {
        folder,
        keep_original: bit(patch.keepOriginal, current.keep_original),
        keep_attachments: bit(patch.keepAttachments, current.keep_attachments),
        interval_minutes: patch.intervalMinutes ?? current.interval_minutes,
        ...(connectionChanged ? { state: 'draft' } : {}),
        ...(otherMailbox ? { cursor_uidvalidity: null, cursor_last_uid: null, cursor_seen_uid: null, unreturned_uid: null, unreturned_runs: 0, attempt_first_uid: null, attempt_last_uid: null, attempt_failed_runs: 0 } : {}),
      },
      audit: { backToDraft: connectionChanged },
    };
  },
};

/** Incoming servers have nothing of their own beyond the descriptor: `new MailServers(…, incomingKind)`. */
export type IncomingServers = MailServers<'incoming', CreateIncomingServer, PatchIncomingServer, IncomingServerView>;
