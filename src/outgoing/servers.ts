// Outgoing mail servers: the outgoing ServerKind (SMTP presets and auth rules, From filter, pool and rate)
// over the shared MailServers service, plus what routing needs (owners, usable servers).
import { sql, type Kysely } from 'kysely';
import type { Actor, AuditLog } from '../audit/audit-log.js';
import type { DB, OutgoingServer, OutgoingServerRow, Role } from '../db/schema.js';
import type { PrincipalUser } from '../users/principal.js';
import { normaliseAddress } from '../lib/address.js';
import { AppError } from '../lib/errors.js';
import type { AppProblem } from '../oauth/app-status.js';
import type { Vault } from '../vault/index.js';
import type { HostGuard } from '../mail-servers/host-guard.js';
import { assertMayManageServer, serverView } from '../mail-servers/common.js';
import { tokenView, withTokenSummary, type TokenView } from '../oauth/connections.js';
import { MailServers, serverPasswordContext, type MailServerHooks, type ServerKind } from '../mail-servers/mail-servers.js';
import { toMailParameters } from '../settings/parameter-rules.js';
import { archiveRefusal } from './mass-mailing.js';
import type { RoutableServer } from './routing.js';
import {
  applyAuthRules,
  checkPortSecurity,
  connectionDefaults,
  createOutgoingServerSchema,
  normaliseFromFilter,
  patchOutgoingServerSchema,
  activeTransport,
  poolSizeOf,
  ratePerMinuteOf,
  transportFor,
  type CreateOutgoingServer,
  type PatchOutgoingServer,
} from './server-rules.js';

export type { TokenView };
export { tokenView };

export type OutgoingServerView = ReturnType<typeof outgoingServerView>;

export function outgoingServerView(s: OutgoingServer, appProblem: AppProblem | null = null) {
  return {
    ...serverView(s, appProblem),
    fromFilter: s.from_filter,
    /** As set (null = the default for its kind) and in effect. */
    poolSize: s.pool_size,
    effectivePoolSize: poolSizeOf(s),
    /** Mails a minute at most, as set (null = the default for its kind; 0 = no limit) and in effect. */
    ratePerMinute: s.rate_per_minute,
    effectiveRatePerMinute: ratePerMinuteOf(s),
    /** As set, and in effect: an auto server moves to Graph when Microsoft refuses SMTP AUTH. */
    transport: s.transport,
    activeTransport: activeTransport(s),
    transportSwitch: s.transport_switched_at === null ? null : { at: new Date(s.transport_switched_at).toISOString(), reason: s.transport_switch_reason ?? '' },
    saveToSentItems: s.save_to_sent_items === 1,
  };
}

/** A server row with its owner's address and role, as routing needs them (null for a shared server). */
export type OutgoingServerWithOwner = OutgoingServer & { owner_email: string | null; owner_role: Role | null };

export function toRoutable(s: OutgoingServerRow & Pick<OutgoingServerWithOwner, 'owner_email' | 'owner_role'>): RoutableServer {
  // A personal server whose owner is gone keeps its owner id and no address: it then carries nothing.
  const owner = s.owner_user_id === null ? null : { userId: s.owner_user_id, address: s.owner_email === null ? null : (normaliseAddress(s.owner_email) ?? s.owner_email.toLowerCase()), isAdmin: s.owner_role === 'admin' };
  return { id: s.id, name: s.name, fromFilter: s.from_filter, priority: s.priority, active: s.active === 1 && s.archived_at === null, archived: s.archived_at !== null, owner };
}

export const passwordContext = (id: number) => serverPasswordContext('outgoing_servers', id);

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

export const outgoingKind: ServerKind<'outgoing', CreateOutgoingServer, PatchOutgoingServer, OutgoingServerView> = {
  kind: 'outgoing',
  table: 'outgoing_servers',
  noun: 'outgoing mail server',
  listCommand: 'juniper servers list',
  createSchema: createOutgoingServerSchema,
  patchSchema: patchOutgoingServerSchema,
  view: outgoingServerView,
  // One rule for the pages, the API and the CLI: archiving the server mass mailings are set to go through would
  // leave them waiting, so it is refused until Settings names another (or the dedicated server is turned off).
  async assertMayArchive(db, row) {
    if (row.archived_at !== null) return;
    const keys = ['mass_mailing.outgoing_mail_server', 'mass_mailing.mail_server_id'];
    const stored = await db.selectFrom('parameters').select(['key', 'value']).where('key', 'in', keys).execute();
    const p = toMailParameters(new Map(stored.map((r) => [r.key, r.value])));
    if (p.massMailingDedicatedServer && p.massMailingServerId === row.id) throw new AppError('JUNIPER_ERR_CONFLICT', archiveRefusal(row));
  },
  create(input, user, owner) {
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
    if (owner !== null && user.role !== 'admin') assertPersonalFilter(user, cred.fromFilter);
    return {
      ...conn,
      auth: input.auth,
      username: cred.username,
      password: cred.password,
      columns: {
        from_filter: cred.fromFilter,
        pool_size: input.poolSize ?? null,
        rate_per_minute: input.ratePerMinute ?? null,
        transport: transportFor(input.auth, input.transport, null),
        save_to_sent_items: input.saveToSentItems === false ? 0 : 1,
      },
    };
  },
  update(current, patch, user) {
    const auth = patch.auth ?? current.auth;
    const port = patch.port ?? current.port;
    const security = patch.security ?? current.security;
    checkPortSecurity(port, security);
    const cred = applyAuthRules({
      auth,
      username: patch.username !== undefined ? patch.username : current.username,
      password: patch.password !== undefined ? patch.password : undefined,
      hasStoredPassword: current.password_enc !== null && auth === 'password',
      fromFilter: patch.fromFilter !== undefined ? normaliseFromFilter(patch.fromFilter) : current.from_filter,
      fromFilterGiven: patch.fromFilter !== undefined || current.from_filter !== null,
    });
    if (current.owner_user_id !== null) assertPersonalFilter(user, cred.fromFilter);
    return {
      host: patch.host ?? current.host,
      port,
      security,
      auth,
      username: cred.username,
      password: cred.password,
      columns: {
        from_filter: cred.fromFilter,
        pool_size: patch.poolSize !== undefined ? patch.poolSize : current.pool_size,
        rate_per_minute: patch.ratePerMinute !== undefined ? patch.ratePerMinute : current.rate_per_minute,
        transport: transportFor(auth, patch.transport, current),
        // Naming the transport, or a new mailbox or auth method, tries SMTP again on an auto server.
        ...(patch.transport !== undefined || auth !== current.auth || cred.username !== current.username ? { transport_switched_at: null, transport_switch_reason: null } : {}),
        ...(patch.saveToSentItems !== undefined ? { save_to_sent_items: patch.saveToSentItems ? 1 : 0 } : {}),
      },
    };
  },
};

export class OutgoingServers extends MailServers<'outgoing', CreateOutgoingServer, PatchOutgoingServer, OutgoingServerView> {
  constructor(db: Kysely<DB>, vault: Vault, audit: AuditLog, hostGuard?: HostGuard, hooks: MailServerHooks<'outgoing'> = {}) {
    super(db, vault, audit, outgoingKind, hostGuard, hooks);
  }

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

  /**
   * These servers whatever their state, as routing sees them: the dispatcher routes against the usable servers
   * plus those a mail names (forced, or the dedicated mass-mailing server) that are not usable, so its reason
   * ("is archived") is the Route checker's, not "no server has id …".
   */
  async routableByIds(ids: readonly number[]): Promise<RoutableServer[]> {
    if (ids.length === 0) return [];
    return (await this.withOwner().where('outgoing_servers.id', 'in', [...ids]).execute()).map(toRoutable);
  }

  /** These servers' names and owners, archived ones included: what a mail's view needs to decide what its viewer reads. */
  async namesAndOwners(ids: readonly number[]): Promise<Pick<OutgoingServer, 'id' | 'name' | 'owner_user_id'>[]> {
    if (ids.length === 0) return [];
    return this.db.selectFrom('outgoing_servers').select(['id', 'name', 'owner_user_id']).where('id', 'in', [...ids]).execute();
  }

  /** The user whose address this is, if any: `juniper route` explains a From as if that user sent it. */
  async userIdByAddress(address: string): Promise<number | null> {
    const row = await this.db.selectFrom('users').select('id').where(sql<string>`lower(email)`, '=', address.toLowerCase()).executeTakeFirst();
    return row?.id ?? null;
  }

  /**
   * Moves an auto server to Graph after Microsoft refused SMTP AUTH (issue 13). Conditional, so concurrent
   * senders that met the same refusal switch it once; `changed` says whether this call did. The row's
   * updated_at stays: the admin's settings did not change, and an edit open in a form is still current.
   */
  async switchToGraph(id: number, reason: string, now: number, actor: Actor = { userId: null, label: 'dispatcher' }): Promise<{ changed: boolean; at: number; reason: string }> {
    return this.db.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('outgoing_servers')
        .set({ transport_switched_at: now, transport_switch_reason: reason })
        .where('id', '=', id)
        .where('transport', '=', 'auto')
        .where('transport_switched_at', 'is', null)
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) > 0) {
        await this.audit.record(actor, 'outgoing_server.transport_switch', `outgoing_server:${id}`, { to: 'graph', reason }, trx);
        return { changed: true, at: now, reason };
      }
      const row = await trx.selectFrom('outgoing_servers').select(['transport_switched_at', 'transport_switch_reason']).where('id', '=', id).executeTakeFirst();
      return { changed: false, at: row?.transport_switched_at ?? now, reason: row?.transport_switch_reason ?? reason };
    });
  }

  /** Servers the dispatcher may use: active and not archived, in routing order. */
  async usable(): Promise<OutgoingServerWithOwner[]> {
    // With each connection's state: the dispatcher holds mails for a server that must be reconnected.
    return withTokenSummary(this.db, 'outgoing', await this.withOwner().where('outgoing_servers.archived_at', 'is', null).where('outgoing_servers.active', '=', 1).execute());
  }
}
