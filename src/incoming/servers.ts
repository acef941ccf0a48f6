// Incoming (IMAP) mail servers: create, change, archive, list (the fetch lease and cursor are in
// fetch-state.ts). Passwords are encrypted with the vault, bound to the row; responses
// carry hasPassword, never the value. A change to how Juniper connects sends the server back to draft, so
// it is fetched again only after a Test & Confirm.
import type { Kysely } from 'kysely';
import type { Actor, AuditLog } from '../audit/audit-log.js';
import type { DB, IncomingServer } from '../db/schema.js';
import type { PrincipalUser } from '../users/principal.js';
import { AppError } from '../lib/errors.js';
import { HostGuard } from '../mail-servers/host-guard.js';
import { assertMayChangeOwner, assertMayManageServer, forgetTokens, iso, lastTestView, noTokens, tokenView, type TokenView } from '../mail-servers/common.js';
import type { AppProblem } from '../oauth/app-status.js';
import type { Vault } from '../vault/index.js';
import {
  applyIncomingAuthRules,
  checkIncomingConnection,
  incomingConnectionDefaults,
  type CreateIncomingServer,
  type PatchIncomingServer,
} from './server-rules.js';

export interface IncomingServerView {
  id: number;
  name: string;
  protocol: 'imap';
  host: string;
  port: number;
  security: 'none' | 'starttls' | 'ssl';
  auth: 'password' | 'outlook';
  username: string | null;
  hasPassword: boolean;
  folder: string;
  keepOriginal: boolean;
  keepAttachments: boolean;
  priority: number;
  intervalMinutes: number;
  active: boolean;
  archived: boolean;
  allowSelfSigned: boolean;
  state: 'draft' | 'confirmed';
  ownerUserId: number | null;
  lastFetchAt: string | null;
  lastError: string | null;
  errorSince: string | null;
  token: TokenView;
  lastTest: { at: string; ok: boolean; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export function incomingServerView(s: IncomingServer, appProblem: AppProblem | null = null): IncomingServerView {
  return {
    id: s.id,
    name: s.name,
    protocol: s.protocol,
    host: s.host,
    port: s.port,
    security: s.security,
    auth: s.auth,
    username: s.username,
    hasPassword: s.password_enc !== null,
    folder: s.folder,
    keepOriginal: s.keep_original === 1,
    keepAttachments: s.keep_attachments === 1,
    priority: s.priority,
    intervalMinutes: s.interval_minutes,
    active: s.active === 1,
    archived: s.archived_at !== null,
    allowSelfSigned: s.allow_self_signed === 1,
    state: s.state,
    ownerUserId: s.owner_user_id,
    lastFetchAt: iso(s.last_fetch_at),
    lastError: s.last_error,
    errorSince: iso(s.error_since),
    token: tokenView(s, appProblem),
    lastTest: lastTestView(s),
    createdAt: iso(s.created_at)!,
    updatedAt: iso(s.updated_at)!,
  };
}

export const incomingPasswordContext = (id: number) => `incoming_servers.password:${id}`;

/** Admins manage every server; a user only the personal servers they own (others do not exist for them). */
export function assertMayManageIncoming(user: PrincipalUser, server: Pick<IncomingServer, 'owner_user_id' | 'id'>): void {
  assertMayManageServer('incoming', user, server);
}

export class IncomingServers {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly vault: Vault,
    private readonly audit: AuditLog,
    /** The address policy for servers of users other than admins, at save and at every connection. */
    readonly hostGuard: HostGuard = new HostGuard(db),
  ) {}

  async list(options: { includeArchived?: boolean; ownerUserId?: number } = {}): Promise<IncomingServer[]> {
    let q = this.db.selectFrom('incoming_servers').selectAll().orderBy('priority').orderBy('id');
    if (!options.includeArchived) q = q.where('archived_at', 'is', null);
    if (options.ownerUserId !== undefined) q = q.where('owner_user_id', '=', options.ownerUserId);
    return q.execute();
  }

  async get(id: number): Promise<IncomingServer> {
    const row = await this.db.selectFrom('incoming_servers').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No incoming mail server with id ${id}. List them with \`juniper incoming list\`.`);
    return row;
  }

  /** The server's password in clear, for the IMAP library only. */
  password(server: IncomingServer): string | null {
    return server.password_enc === null ? null : this.vault.decrypt(server.password_enc, incomingPasswordContext(server.id));
  }

  async create(input: CreateIncomingServer, user: PrincipalUser, actor: Actor): Promise<IncomingServer> {
    const conn = incomingConnectionDefaults(input.auth, input);
    checkIncomingConnection(input.auth, conn.port, conn.security);
    const cred = applyIncomingAuthRules({ auth: input.auth, username: input.username ?? null, password: input.password ?? null, hasStoredPassword: false });
    const owner = user.role === 'admin' ? (input.ownerUserId ?? null) : user.id;
    await this.hostGuard.assertMaySave(conn.host, owner, 'incoming mail server');
    const now = Date.now();
    const row = await this.db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('incoming_servers')
        .values({
          name: input.name,
          protocol: input.protocol,
          host: conn.host,
          port: conn.port,
          security: conn.security,
          auth: input.auth,
          username: cred.username,
          password_enc: null,
          folder: input.folder,
          keep_original: input.keepOriginal ? 1 : 0,
          keep_attachments: input.keepAttachments ? 1 : 0,
          state: 'draft',
          priority: input.priority,
          active: input.active ? 1 : 0,
          interval_minutes: input.intervalMinutes,
          allow_self_signed: input.allowSelfSigned ? 1 : 0,
          owner_user_id: owner,
          ...noTokens,
          created_at: now,
          updated_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, 'incoming_server.create', `incoming_server:${inserted.id}`, { name: inserted.name, auth: inserted.auth, hasPassword: !!cred.password }, trx);
      if (!cred.password) return inserted;
      // The ciphertext is bound to the row id, so it is written once the id exists.
      return trx
        .updateTable('incoming_servers')
        .set({ password_enc: this.vault.encrypt(cred.password, incomingPasswordContext(inserted.id)) })
        .where('id', '=', inserted.id)
        .returningAll()
        .executeTakeFirstOrThrow();
    });
    return row;
  }

  async update(id: number, patch: PatchIncomingServer, user: PrincipalUser, actor: Actor): Promise<IncomingServer> {
    const current = await this.get(id);
    assertMayManageIncoming(user, current);
    assertMayChangeOwner(user, patch.ownerUserId);
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
    const passwordEnc = auth !== 'password' ? null : cred.password ? this.vault.encrypt(cred.password, incomingPasswordContext(id)) : current.password_enc;
    const host = patch.host ?? current.host;
    const owner = patch.ownerUserId !== undefined ? patch.ownerUserId : current.owner_user_id;
    await this.hostGuard.assertMaySave(host, owner, 'incoming mail server');
    const folder = patch.folder ?? current.folder;
    const allowSelfSigned = patch.allowSelfSigned === undefined ? current.allow_self_signed : patch.allowSelfSigned ? 1 : 0;
    const connectionChanged =
      host !== current.host || port !== current.port || security !== current.security || auth !== current.auth ||
      cred.username !== current.username || folder !== current.folder || allowSelfSigned !== current.allow_self_signed || !!cred.password;
    // UIDs belong to one folder of one mailbox: another one starts a new cursor (duplicates are still caught by Message-ID).
    const otherMailbox = host !== current.host || cred.username !== current.username || folder !== current.folder;
    const tokensStale = auth !== 'outlook' || cred.username !== current.username;
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('incoming_servers')
        .set({
          name: patch.name ?? current.name,
          host,
          port,
          security,
          auth,
          username: cred.username,
          password_enc: passwordEnc,
          folder,
          keep_original: patch.keepOriginal === undefined ? current.keep_original : patch.keepOriginal ? 1 : 0,
          keep_attachments: patch.keepAttachments === undefined ? current.keep_attachments : patch.keepAttachments ? 1 : 0,
          priority: patch.priority ?? current.priority,
          interval_minutes: patch.intervalMinutes ?? current.interval_minutes,
          active: patch.active === undefined ? current.active : patch.active ? 1 : 0,
          allow_self_signed: allowSelfSigned,
          owner_user_id: owner,
          ...(connectionChanged ? { state: 'draft' as const } : {}),
          ...(otherMailbox ? { cursor_uidvalidity: null, cursor_last_uid: null, cursor_seen_uid: null } : {}),
          ...forgetTokens(current, tokensStale),
          updated_at: Date.now(),
        })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, 'incoming_server.update', `incoming_server:${id}`, { changed: Object.keys(patch), backToDraft: connectionChanged }, trx);
      return row;
    });
  }

  /** Archives (never deletes): fetched messages keep pointing at the server. */
  async archive(id: number, user: PrincipalUser, actor: Actor): Promise<IncomingServer> {
    const current = await this.get(id);
    assertMayManageIncoming(user, current);
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('incoming_servers')
        .set({ archived_at: current.archived_at ?? Date.now(), active: 0, updated_at: Date.now() })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, 'incoming_server.archive', `incoming_server:${id}`, { name: row.name }, trx);
      return row;
    });
  }

  /** Keeps a Test & Confirm result; a success confirms the server. */
  async recordTest(id: number, ok: boolean, message: string): Promise<IncomingServer> {
    return this.db
      .updateTable('incoming_servers')
      .set({ last_test_at: Date.now(), last_test_ok: ok ? 1 : 0, last_test_message: message, ...(ok ? { state: 'confirmed' as const } : {}) })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
  }
}
