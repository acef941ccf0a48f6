// One service for every kind of mail server: list, get, password, create (the password encrypted once the
// row id exists, since the ciphertext is bound to it), update, archive and the last test result. What truly
// differs between kinds (table, presets and auth rules, the kind's own columns, its view) is a ServerKind
// descriptor next to the kind (outgoing/servers.ts, incoming/servers.ts): a third kind is one more descriptor.
// Passwords are encrypted with the vault; views carry hasPassword, never the value; a stored password or
// Outlook connection is only used at the endpoint it was given for (secret-binding.ts). Archived servers stay
// for the record (mails and messages point at them) but are never used.
import type { Kysely, Transaction } from 'kysely';
import type { z } from 'zod';
import type { Actor, AuditLog } from '../audit/audit-log.js';
import type { DB, IncomingServer, OutgoingServer, Security } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { AppProblem } from '../oauth/app-status.js';
import type { PrincipalUser } from '../users/principal.js';
import type { Vault } from '../vault/index.js';
import { forgetConnection, withTokenSummary, withTokenSummaryOne } from '../oauth/connections.js';
import { bindingDiff, bindingOfRow, lockServerRow } from '../oauth/server-binding.js';
import { assertMayChangeOwner, assertMayManageServer } from './common.js';
import { HostGuard } from './host-guard.js';
import { outlookUninstalledRefusal, restoreRefusal } from '../settings/outlook-in-use.js';
import { outlookInstalledLocked } from '../settings/settings.js';
import { assertPasswordMayMove, endpointMoves } from './secret-binding.js';

export interface ServerRows {
  outgoing: OutgoingServer;
  incoming: IncomingServer;
}
export type KindName = keyof ServerRows;
export type ServerTable = 'outgoing_servers' | 'incoming_servers';

/** The fields every kind's create and patch bodies share (the rest is the kind's). */
export interface CommonInput {
  name: string;
  priority: number;
  active: boolean;
  allowSelfSigned: boolean;
  ownerUserId?: number | null;
}

/** Connection and credentials after the kind's rules, with the kind's own columns. */
export interface ServerDraft {
  host: string;
  port: number;
  security: Security;
  auth: string;
  username: string | null;
  /** A password given in clear; undefined or null when none was given. */
  password: string | null | undefined;
  /** The kind's own columns (From filter, folder, back to draft …). */
  columns: Record<string, unknown>;
  /** What the audit entry of an update adds. */
  audit?: Record<string, unknown>;
}

export interface ServerKind<K extends KindName, Create extends CommonInput, Patch extends Partial<CommonInput>, View> {
  kind: K;
  table: ServerTable;
  /** How messages name it: "outgoing mail server". */
  noun: string;
  /** The command that lists valid ids. */
  listCommand: string;
  /** Request bodies (API, pages and CLI alike): create with its defaults, patch without. */
  createSchema: z.ZodType<Create>;
  patchSchema: z.ZodType<Patch>;
  /** The kind's rules for a new server; `owner` is who will own it (null = shared). */
  create(input: Create, user: PrincipalUser, owner: number | null): ServerDraft;
  /** The kind's rules for a change. */
  update(current: ServerRows[K], patch: Patch, user: PrincipalUser): ServerDraft;
  /** Refuses to archive a server something still depends on (outgoing: the dedicated mass-mailing server); in the archive's transaction. */
  assertMayArchive?(db: Kysely<DB>, row: ServerRows[K]): Promise<void>;
  /** Columns a passed test sets besides the result (incoming: confirmed). */
  testPassed?: Record<string, unknown>;
  view(row: ServerRows[K], appProblem?: AppProblem | null): View;
}

/** Called after the commit of a change (services.ts wires them to the queue). */
export interface MailServerHooks<K extends KindName> {
  /** Restored, or made active: what waited for this server (mass mailings for their dedicated server) may go now. */
  onUsableAgain?: (server: ServerRows[K]) => Promise<void>;
}

/** Vault context binding a server's password to its row, so a ciphertext copied to another row does not decrypt. */
export const serverPasswordContext = (table: ServerTable, id: number) => `${table}.password:${id}`;

export class MailServers<K extends KindName, Create extends CommonInput = CommonInput, Patch extends Partial<CommonInput> = Partial<CommonInput>, View = unknown> {
  constructor(
    protected readonly db: Kysely<DB>,
    private readonly vault: Vault,
    protected readonly audit: AuditLog,
    readonly kind: ServerKind<K, Create, Patch, View>,
    /** The address policy for servers of users other than admins, at save and at every connection. */
    readonly hostGuard: HostGuard = new HostGuard(db),
    private readonly hooks: MailServerHooks<K> = {},
  ) {}

  /** Usable: active and not archived, as the dispatcher and the fetcher take servers. */
  private static usable = (row: { active: number; archived_at: number | null }) => row.active === 1 && row.archived_at === null;

  /** After the commit of a restore or an update that made the server usable again. */
  private async afterChange(before: ServerRows[K], after: ServerRows[K]): Promise<void> {
    if (!MailServers.usable(before) && MailServers.usable(after)) await this.hooks.onUsableAgain?.(after);
  }

  // Both tables share the columns used here; the row is the kind's own (ServerRows[K]) with its OAuth
  // connection's state, which src/oauth keeps (connections.ts).
  private async row(db: Kysely<DB> | Transaction<DB>, r: { id: number }): Promise<ServerRows[K]> {
    return (await withTokenSummaryOne(db, this.kind.kind, r)) as unknown as ServerRows[K];
  }

  private passwordContext = (id: number) => serverPasswordContext(this.kind.table, id);

  /** Admins manage every server; a user only the personal servers they own (others do not exist for them). */
  assertMayManage(user: PrincipalUser, server: { owner_user_id: number | null; id: number }): void {
    assertMayManageServer(this.kind.kind, user, server);
  }

  view = (row: ServerRows[K], appProblem: AppProblem | null = null): View => this.kind.view(row, appProblem);

  async list(options: { includeArchived?: boolean; ownerUserId?: number } = {}): Promise<ServerRows[K][]> {
    let q = this.db.selectFrom(this.kind.table).selectAll().orderBy('priority').orderBy('id');
    if (!options.includeArchived) q = q.where('archived_at', 'is', null);
    if (options.ownerUserId !== undefined) q = q.where('owner_user_id', '=', options.ownerUserId);
    return (await withTokenSummary(this.db, this.kind.kind, await q.execute())) as unknown as ServerRows[K][];
  }

  async get(id: number): Promise<ServerRows[K]> {
    const row = await this.db.selectFrom(this.kind.table).selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No ${this.kind.noun} with id ${id}. List them with \`${this.kind.listCommand}\`.`);
    return this.row(this.db, row);
  }

  /** The server's password in clear, for the protocol library only. */
  password(server: Pick<ServerRows[K], 'id' | 'password_enc'>): string | null {
    return server.password_enc === null ? null : this.vault.decrypt(server.password_enc, this.passwordContext(server.id));
  }

  async create(input: Create, user: PrincipalUser, actor: Actor): Promise<ServerRows[K]> {
    const owner = user.role === 'admin' ? (input.ownerUserId ?? null) : user.id;
    const d = this.kind.create(input, user, owner);
    await this.hostGuard.assertMaySave(d, owner, this.kind.noun);
    const now = Date.now();
    const { table, kind } = this.kind;
    return this.db.transaction().execute(async (trx) => {
      // Created while Microsoft Outlook is uninstalled, an Outlook server could never be connected (outlook-in-use.ts).
      if (d.auth === 'outlook' && !(await outlookInstalledLocked(trx))) throw outlookUninstalledRefusal(this.kind.noun, input.name);
      const inserted = await trx
        .insertInto(table)
        .values({
          name: input.name,
          host: d.host,
          port: d.port,
          security: d.security,
          auth: d.auth as 'password',
          username: d.username,
          password_enc: null,
          priority: input.priority,
          active: input.active ? 1 : 0,
          allow_self_signed: input.allowSelfSigned ? 1 : 0,
          owner_user_id: owner,
          ...d.columns,
          created_at: now,
          updated_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, `${kind}_server.create`, `${kind}_server:${inserted.id}`, { name: inserted.name, auth: inserted.auth, hasPassword: !!d.password }, trx);
      if (!d.password) return this.row(trx, inserted);
      // The ciphertext is bound to the row id, so it is written once the id exists.
      const withPassword = await trx
        .updateTable(table)
        .set({ password_enc: this.vault.encrypt(d.password, this.passwordContext(inserted.id)) })
        .where('id', '=', inserted.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      return this.row(trx, withPassword);
    });
  }

  async update(id: number, patch: Patch, user: PrincipalUser, actor: Actor): Promise<ServerRows[K]> {
    const current = await this.get(id);
    this.assertMayManage(user, current);
    assertMayChangeOwner(user, patch.ownerUserId);
    const d = this.kind.update(current, patch, user);
    const owner = patch.ownerUserId !== undefined ? patch.ownerUserId : current.owner_user_id;
    // Checked on every save, not only when the host changes: a new owner, or an allow-list entry an admin removed, counts too.
    await this.hostGuard.assertMaySave(d, owner, this.kind.noun);
    const allowSelfSigned = patch.allowSelfSigned === undefined ? current.allow_self_signed === 1 : patch.allowSelfSigned;
    // A stored secret is only sent to the endpoint it was given for (secret-binding.ts): a stored password
    // moves only with a new one, and the Outlook tokens are forgotten below.
    const moves = endpointMoves({ ...current, allowSelfSigned: current.allow_self_signed === 1 }, { ...d, allowSelfSigned });
    assertPasswordMayMove({ auth: d.auth, storedPassword: current.password_enc !== null, newPassword: !!d.password, moves });
    // Changing away from password auth drops the stored password.
    const passwordEnc = d.auth !== 'password' ? null : d.password ? this.vault.encrypt(d.password, this.passwordContext(id)) : current.password_enc;
    // A new mailbox, auth method or endpoint invalidates the Outlook tokens of the old one.
    const tokensStale = d.auth !== 'outlook' || d.username !== current.username || moves.length > 0;
    const { table, kind } = this.kind;
    const updated = await this.db.transaction().execute(async (trx) => {
      // Switched to Outlook while it is uninstalled, the server could never be connected (outlook-in-use.ts). Taken
      // before the server row's lock below, in the order a restore takes them. A server that already signs in with
      // Outlook keeps saving: assertUnchangedSince refuses the save if another one changed its auth meanwhile.
      if (d.auth === 'outlook' && current.auth !== 'outlook' && !(await outlookInstalledLocked(trx))) throw outlookUninstalledRefusal(this.kind.noun, patch.name ?? current.name);
      // Everything above was judged on a row read before the host's DNS lookup, which whoever controls that DNS
      // can make slow: a change meanwhile to what decides where the server's secrets go (another save, a
      // re-point and back while an Outlook sign-in completed), or to its Active state, must not be overwritten
      // with what was judged on the old row. The row is locked first (PostgreSQL; SQLite has one writer).
      await assertUnchangedSince(trx, kind, current, `${this.kind.noun} "${current.name}"`);
      const row = await trx
        .updateTable(table)
        .set({
          name: patch.name ?? current.name,
          host: d.host,
          port: d.port,
          security: d.security,
          auth: d.auth as 'password',
          username: d.username,
          password_enc: passwordEnc,
          priority: patch.priority ?? current.priority,
          active: patch.active === undefined ? current.active : patch.active ? 1 : 0,
          allow_self_signed: allowSelfSigned ? 1 : 0,
          owner_user_id: owner,
          ...d.columns,
          updated_at: Date.now(),
        })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      if (tokensStale) await forgetConnection(trx, kind, id);
      await this.audit.record(actor, `${kind}_server.update`, `${kind}_server:${id}`, { changed: Object.keys(patch), ...d.audit }, trx);
      return this.row(trx, row);
    });
    await this.afterChange(current, updated);
    return updated;
  }

  /**
   * Archives (never deletes): queued mails, messages and history keep pointing at the server. An archived server
   * is inactive; its Active setting is kept (active_before_archive) for restore(). Archiving twice keeps the first.
   */
  async archive(id: number, user: PrincipalUser, actor: Actor): Promise<ServerRows[K]> {
    const current = await this.get(id);
    this.assertMayManage(user, current);
    const { table, kind } = this.kind;
    return this.db.transaction().execute(async (trx) => {
      await this.kind.assertMayArchive?.(trx, current);
      const archived = current.archived_at !== null;
      const row = await trx
        .updateTable(table)
        .set({ archived_at: current.archived_at ?? Date.now(), active: 0, active_before_archive: archived ? current.active_before_archive : current.active, updated_at: Date.now() })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, `${kind}_server.archive`, `${kind}_server:${id}`, { name: row.name }, trx);
      return this.row(trx, row);
    });
  }

  /**
   * Undoes archive(): the server is listed again, active if it was when archived (restoring is undoing, and the
   * admin saw it working then); inactive if it was not, or was archived before migration 031 kept that. An
   * Outlook server is restored only while Microsoft Outlook is installed.
   */
  async restore(id: number, user: PrincipalUser, actor: Actor): Promise<ServerRows[K]> {
    const current = await this.get(id);
    this.assertMayManage(user, current);
    const { table, kind } = this.kind;
    const active = current.archived_at === null ? current.active : (current.active_before_archive ?? 0);
    const restored = await this.db.transaction().execute(async (trx) => {
      // Restored while Microsoft Outlook is uninstalled, an Outlook server could never be reconnected (outlook-in-use.ts).
      if (current.archived_at !== null && current.auth === 'outlook' && !(await outlookInstalledLocked(trx))) throw restoreRefusal(this.kind.noun, current.name);
      const row = await trx
        .updateTable(table)
        .set({ archived_at: null, active, active_before_archive: null, updated_at: Date.now() })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.audit.record(actor, `${kind}_server.restore`, `${kind}_server:${id}`, { name: row.name, active: row.active === 1 }, trx);
      return this.row(trx, row);
    });
    await this.afterChange(current, restored);
    return restored;
  }

  /** Keeps a test result (Test Connection, Test & Confirm). */
  async recordTest(id: number, ok: boolean, message: string): Promise<ServerRows[K]> {
    const row = await this.db
      .updateTable(this.kind.table)
      .set({ last_test_at: Date.now(), last_test_ok: ok ? 1 : 0, last_test_message: message, ...(ok ? this.kind.testPassed : {}) })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return this.row(this.db, row);
  }
}

type GuardedColumns = { id: number; auth: string; username: string | null; host: string; port: number; security: string; allow_self_signed: number; password_enc: string | null; owner_user_id: number | null; active: number; archived_at: number | null };

/** Refuses (409) an update whose row changed since the caller read it, where the save would undo the change. */
async function assertUnchangedSince(trx: Transaction<DB>, kind: 'outgoing' | 'incoming', read: GuardedColumns, label: string): Promise<void> {
  const table = kind === 'outgoing' ? 'outgoing_servers' : 'incoming_servers';
  await lockServerRow(trx, kind, read.id);
  const now = await trx.selectFrom(table).select(['id', 'auth', 'username', 'host', 'port', 'security', 'allow_self_signed', 'password_enc', 'owner_user_id', 'active', 'archived_at']).where('id', '=', read.id).executeTakeFirst();
  if (!now) throw new AppError('JUNIPER_ERR_NOT_FOUND', `${label} no longer exists.`);
  const changes = bindingDiff(bindingOfRow(read), bindingOfRow(now));
  if (now.password_enc !== read.password_enc) changes.push('password');
  if (now.owner_user_id !== read.owner_user_id) changes.push('owner');
  // The save writes Active back from its read: an admin's deactivation (or an archive) meanwhile would be undone.
  if (now.active !== read.active) changes.push('Active setting');
  if (now.archived_at !== read.archived_at) changes.push('archived state');
  if (changes.length > 0) {
    throw new AppError('JUNIPER_ERR_CONFLICT', `${label[0]!.toUpperCase()}${label.slice(1)} was changed by someone else while this save ran (its ${changes.join(', ')}): nothing was saved. Reload it, check it, and save again.`);
  }
}
