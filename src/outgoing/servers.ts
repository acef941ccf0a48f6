// Outgoing mail servers: create, change, archive, list. Passwords are encrypted with the vault, bound to
// the server's row; responses carry hasPassword, never the value. Archived servers stay for the record
// (mails point at them) but are never used to send.
import { sql, type Kysely } from 'kysely';
import type { Actor, AuditLog } from '../audit/audit-log.js';
import type { DB, OutgoingServer, Role } from '../db/schema.js';
import type { PrincipalUser } from '../users/principal.js';
import { normaliseAddress } from '../lib/address.js';
import { AppError } from '../lib/errors.js';
import type { Vault } from '../vault/index.js';
import type { AppProblem } from '../oauth/app-status.js';
import { HostGuard } from '../mail-servers/host-guard.js';
import { assertMayChangeOwner, assertMayManageServer, forgetTokens, iso, lastTestView, noTokens, tokenView, type TokenView } from '../mail-servers/common.js';
import type { RoutableServer } from './routing.js';
import {
  applyAuthRules,
  checkPortSecurity,
  connectionDefaults,
  normaliseFromFilter,
  poolSizeOf,
  ratePerMinuteOf,
  type CreateOutgoingServer,
  type PatchOutgoingServer,
} from './server-rules.js';

export type { TokenView };
export { tokenView };

export interface OutgoingServerView {
  id: number;
  name: string;
  host: string;
  port: number;
  security: 'none' | 'starttls' | 'ssl';
  auth: 'none' | 'password' | 'outlook';
  username: string | null;
  hasPassword: boolean;
  fromFilter: string | null;
  priority: number;
  active: boolean;
  archived: boolean;
  allowSelfSigned: boolean;
  ownerUserId: number | null;
  /** As set (null = the default for its kind) and in effect. */
  poolSize: number | null;
  effectivePoolSize: number;
  /** Mails a minute at most, as set (null = the default for its kind; 0 = no limit) and in effect. */
  ratePerMinute: number | null;
  effectiveRatePerMinute: number;
  token: TokenView;
  lastTest: { at: string; ok: boolean; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export function outgoingServerView(s: OutgoingServer, appProblem: AppProblem | null = null): OutgoingServerView {
  return {
    id: s.id,
    name: s.name,
    host: s.host,
    port: s.port,
    security: s.security,
    auth: s.auth,
    username: s.username,
    hasPassword: s.password_enc !== null,
    fromFilter: s.from_filter,
    priority: s.priority,
    active: s.active === 1,
    archived: s.archived_at !== null,
    allowSelfSigned: s.allow_self_signed === 1,
    ownerUserId: s.owner_user_id,
    poolSize: s.pool_size,
    effectivePoolSize: poolSizeOf(s),
    ratePerMinute: s.rate_per_minute,
    effectiveRatePerMinute: ratePerMinuteOf(s),
    token: tokenView(s, appProblem),
    lastTest: lastTestView(s),
    createdAt: iso(s.created_at)!,
    updatedAt: iso(s.updated_at)!,
  };
}

/** A server row with its owner's address and role, as routing needs them (null for a shared server). */
export type OutgoingServerWithOwner = OutgoingServer & { owner_email: string | null; owner_role: Role | null };

export function toRoutable(s: OutgoingServerWithOwner): RoutableServer {
  // A personal server whose owner is gone keeps its owner id and no address: it then carries nothing.
  const owner = s.owner_user_id === null ? null : { userId: s.owner_user_id, address: s.owner_email === null ? null : (normaliseAddress(s.owner_email) ?? s.owner_email.toLowerCase()), isAdmin: s.owner_role === 'admin' };
  return { id: s.id, name: s.name, fromFilter: s.from_filter, priority: s.priority, active: s.active === 1 && s.archived_at === null, owner };
}

export const passwordContext = (id: number) => `outgoing_servers.password:${id}`;

/**
 * Who may see or change a server: admins any; a user only a personal server they own, whose From filter
 * is exactly their own address (DESIGN §8), so a user cannot route other people's mail.
 */
export function assertMayManage(user: PrincipalUser, server: Pick<OutgoingServer, 'owner_user_id' | 'id'>): void {
  assertMayManageServer('outgoing', user, server);
}

function assertPersonalFilter(user: PrincipalUser, fromFilter: string | null): void {
  if (user.role === 'admin') return;
  if (fromFilter !== user.email.toLowerCase()) {
    throw new AppError('JUNIPER_ERR_FORBIDDEN', `A personal server's From filter must be your own address (${user.email}); ask an admin for other senders.`);
  }
}

export class OutgoingServers {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly vault: Vault,
    private readonly audit: AuditLog,
    /** The address policy for servers of users other than admins, at save and at every connection. */
    readonly hostGuard: HostGuard = new HostGuard(db),
  ) {}

  private withOwner() {
    return this.db
      .selectFrom('outgoing_servers')
      .leftJoin('users', 'users.id', 'outgoing_servers.owner_user_id')
      .selectAll('outgoing_servers')
      .select(['users.email as owner_email', 'users.role as owner_role'])
      .orderBy('outgoing_servers.priority')
      .orderBy('outgoing_servers.id');
  }

  /** Every server, archived ones included, as routing sees them (for `juniper route` and GET /api/v1/route). */
  async routable(): Promise<RoutableServer[]> {
    return (await this.withOwner().execute()).map(toRoutable);
  }

  /** The user whose address this is, if any: `juniper route` explains a From as if that user sent it. */
  async userIdByAddress(address: string): Promise<number | null> {
    const row = await this.db.selectFrom('users').select('id').where(sql<string>`lower(email)`, '=', address.toLowerCase()).executeTakeFirst();
    return row?.id ?? null;
  }

  async list(options: { includeArchived?: boolean; ownerUserId?: number } = {}): Promise<OutgoingServer[]> {
    let q = this.db.selectFrom('outgoing_servers').selectAll().orderBy('priority').orderBy('id');
    if (!options.includeArchived) q = q.where('archived_at', 'is', null);
    if (options.ownerUserId !== undefined) q = q.where('owner_user_id', '=', options.ownerUserId);
    return q.execute();
  }

  /** Servers the dispatcher may use: active and not archived, in routing order. */
  async usable(): Promise<OutgoingServerWithOwner[]> {
    return this.withOwner().where('outgoing_servers.archived_at', 'is', null).where('outgoing_servers.active', '=', 1).execute();
  }

  async get(id: number): Promise<OutgoingServer> {
    const row = await this.db.selectFrom('outgoing_servers').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No outgoing mail server with id ${id}. List them with \`juniper servers list\`.`);
    return row;
  }

  /** The server's password in clear, for the SMTP library only. */
  password(server: OutgoingServer): string | null {
    return server.password_enc === null ? null : this.vault.decrypt(server.password_enc, passwordContext(server.id));
  }

  async create(input: CreateOutgoingServer, user: PrincipalUser, actor: Actor): Promise<OutgoingServer> {
    const conn = connectionDefaults(input.auth, input);
    checkPortSecurity(conn.port, conn.security);
    const cred = applyAuthRules({
      auth: input.auth,
      username: input.username ?? null,
      password: input.password ?? null,
      hasStoredPassword: false,
      fromFilter: normaliseFromFilter(input.fromFilter),
      fromFilterGiven: input.fromFilter !== undefined,
    });
    const owner = user.role === 'admin' ? (input.ownerUserId ?? null) : user.id;
    if (owner !== null && user.role !== 'admin') assertPersonalFilter(user, cred.fromFilter);
    await this.hostGuard.assertMaySave(conn.host, owner, 'outgoing mail server');
    const now = Date.now();
    const row = await this.db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('outgoing_servers')
        .values({
          name: input.name,
          host: conn.host,
          port: conn.port,
          security: conn.security,
          auth: input.auth,
          username: cred.username,
          password_enc: null,
          from_filter: cred.fromFilter,
          priority: input.priority,
          active: input.active ? 1 : 0,
          allow_self_signed: input.allowSelfSigned ? 1 : 0,
          owner_user_id: owner,
          pool_size: input.poolSize ?? null,
          rate_per_minute: input.ratePerMinute ?? null,
          ...noTokens,
          last_test_at: null,
          last_test_ok: null,
          last_test_message: null,
          archived_at: null,
          created_at: now,
          updated_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, 'outgoing_server.create', `outgoing_server:${inserted.id}`, { name: inserted.name, auth: inserted.auth, hasPassword: !!cred.password }, trx);
      if (!cred.password) return inserted;
      // The ciphertext is bound to the row id, so it is written once the id exists.
      return trx
        .updateTable('outgoing_servers')
        .set({ password_enc: this.vault.encrypt(cred.password, passwordContext(inserted.id)) })
        .where('id', '=', inserted.id)
        .returningAll()
        .executeTakeFirstOrThrow();
    });
    return row;
  }

  async update(id: number, patch: PatchOutgoingServer, user: PrincipalUser, actor: Actor): Promise<OutgoingServer> {
    const current = await this.get(id);
    assertMayManage(user, current);
    assertMayChangeOwner(user, patch.ownerUserId);
    const auth = patch.auth ?? current.auth;
    const host = patch.host ?? current.host;
    const port = patch.port ?? current.port;
    const security = patch.security ?? current.security;
    checkPortSecurity(port, security);
    const cred = applyAuthRules({
      auth,
      username: patch.username !== undefined ? patch.username : current.username,
      // Changing away from password auth drops the stored password.
      password: patch.password !== undefined ? patch.password : undefined,
      hasStoredPassword: current.password_enc !== null && auth === 'password',
      fromFilter: patch.fromFilter !== undefined ? normaliseFromFilter(patch.fromFilter) : current.from_filter,
      fromFilterGiven: patch.fromFilter !== undefined || current.from_filter !== null,
    });
    if (current.owner_user_id !== null) assertPersonalFilter(user, cred.fromFilter);
    const owner = patch.ownerUserId !== undefined ? patch.ownerUserId : current.owner_user_id;
    // Checked on every save, not only when the host changes: a new owner, or an allow-list entry an admin removed, counts too.
    await this.hostGuard.assertMaySave(host, owner, 'outgoing mail server');
    const passwordEnc =
      auth !== 'password' ? null : cred.password ? this.vault.encrypt(cred.password, passwordContext(id)) : current.password_enc;
    // A new mailbox or auth method invalidates the Outlook tokens of the old one.
    const tokensStale = auth !== 'outlook' || cred.username !== current.username;
    const changed = Object.keys(patch);
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('outgoing_servers')
        .set({
          name: patch.name ?? current.name,
          host,
          port,
          security,
          auth,
          username: cred.username,
          password_enc: passwordEnc,
          from_filter: cred.fromFilter,
          priority: patch.priority ?? current.priority,
          active: patch.active === undefined ? current.active : patch.active ? 1 : 0,
          allow_self_signed: patch.allowSelfSigned === undefined ? current.allow_self_signed : patch.allowSelfSigned ? 1 : 0,
          owner_user_id: owner,
          pool_size: patch.poolSize !== undefined ? patch.poolSize : current.pool_size,
          rate_per_minute: patch.ratePerMinute !== undefined ? patch.ratePerMinute : current.rate_per_minute,
          ...forgetTokens(current, tokensStale),
          updated_at: Date.now(),
        })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, 'outgoing_server.update', `outgoing_server:${id}`, { changed }, trx);
      return row;
    });
  }

  /** Archives (never deletes): queued mails and history keep pointing at the server. */
  async archive(id: number, user: PrincipalUser, actor: Actor): Promise<OutgoingServer> {
    const current = await this.get(id);
    assertMayManage(user, current);
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('outgoing_servers')
        .set({ archived_at: current.archived_at ?? Date.now(), active: 0, updated_at: Date.now() })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, 'outgoing_server.archive', `outgoing_server:${id}`, { name: row.name }, trx);
      return row;
    });
  }

  async recordTest(id: number, ok: boolean, message: string): Promise<void> {
    await this.db.updateTable('outgoing_servers').set({ last_test_at: Date.now(), last_test_ok: ok ? 1 : 0, last_test_message: message }).where('id', '=', id).execute();
  }
}
