// OAuth connections, as src/oauth owns them (tables oauth_connections and oauth_access_tokens): one consent of
// one server of either kind, with one access token per resource. The server services ask these functions
// for a server's token state (its view in API responses, the dispatcher's "needs reconnect" check) and to
// forget a connection when the mailbox or the auth method changes; nothing outside src/oauth names the tables.
import type { Kysely, Transaction } from 'kysely';
import type { DB, TokenSummary } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { AppProblem } from './app-status.js';
import type { ServerKind, TokenResource } from './token-provider.js';

type Db = Kysely<DB> | Transaction<DB>;

export function tableOf(kind: ServerKind): 'outgoing_servers' | 'incoming_servers' {
  return kind === 'outgoing' ? 'outgoing_servers' : 'incoming_servers';
}

export const kindLabel = (kind: ServerKind) => (kind === 'outgoing' ? 'Outgoing' : 'Incoming');

/**
 * Vault contexts bind each token to the server it serves (and an access token to its resource), so a token
 * copied to another row does not decrypt. They are the contexts of the columns the tokens lived in before
 * migration 021, which therefore moved them without re-encrypting.
 */
export const refreshTokenContext = (kind: ServerKind, serverId: number) => `${tableOf(kind)}.refresh_token:${serverId}`;
export const accessTokenContext = (kind: ServerKind, serverId: number, resource: TokenResource = 'outlook') =>
  resource === 'outlook' ? `${tableOf(kind)}.access_token:${serverId}` : `${tableOf(kind)}.access_token.${resource}:${serverId}`;

const NO_CONNECTION: TokenSummary = { token_status: 'missing', token_account: null, token_error_code: null, token_error_message: null, access_token_expires_at: null };

/** The servers' rows with their connection's state (TokenSummary), in the order given. */
export async function withTokenSummary<R extends { id: number }>(db: Db, kind: ServerKind, rows: R[]): Promise<(R & TokenSummary)[]> {
  if (rows.length === 0) return [];
  const found = await db
    .selectFrom('oauth_connections as c')
    .leftJoin('oauth_access_tokens as t', (j) => j.onRef('t.connection_id', '=', 'c.id').on('t.resource', '=', 'outlook'))
    .select(['c.server_id', 'c.status', 'c.account', 'c.error_code', 'c.error_message', 't.expires_at'])
    .where('c.server_kind', '=', kind)
    .where('c.server_id', 'in', [...new Set(rows.map((r) => r.id))])
    .execute();
  const byServer = new Map(
    found.map((c): [number, TokenSummary] => [
      c.server_id,
      { token_status: c.status, token_account: c.account, token_error_code: c.error_code, token_error_message: c.error_message, access_token_expires_at: c.expires_at },
    ]),
  );
  return rows.map((r) => ({ ...r, ...(byServer.get(r.id) ?? NO_CONNECTION) }));
}

export async function withTokenSummaryOne<R extends { id: number }>(db: Db, kind: ServerKind, row: R): Promise<R & TokenSummary> {
  return (await withTokenSummary(db, kind, [row]))[0]!;
}

/** Forgets a server's connection (and its access tokens): after a change of mailbox or auth method they belong to someone else. */
export async function forgetConnection(db: Db, kind: ServerKind, serverId: number): Promise<void> {
  await db.deleteFrom('oauth_connections').where('server_kind', '=', kind).where('server_id', '=', serverId).execute();
}

/** What the token store needs of a server and its connection, with the access token of one resource. */
export interface TokenRow {
  id: number;
  name: string;
  username: string | null;
  auth: string;
  owner_user_id: number | null;
  connectionId: number | null;
  status: TokenSummary['token_status'];
  account: string | null;
  refresh_token_enc: string | null;
  error_code: string | null;
  error_message: string | null;
  access_token_enc: string | null;
  access_token_expires_at: number | null;
}

export async function loadTokenRow(db: Db, kind: ServerKind, serverId: number, resource: TokenResource = 'outlook'): Promise<TokenRow> {
  const server = await db.selectFrom(tableOf(kind)).select(['id', 'name', 'username', 'auth', 'owner_user_id']).where('id', '=', serverId).executeTakeFirst();
  if (!server) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No ${kind} mail server with id ${serverId}.`);
  const c = await db
    .selectFrom('oauth_connections as c')
    .leftJoin('oauth_access_tokens as t', (j) => j.onRef('t.connection_id', '=', 'c.id').on('t.resource', '=', resource))
    .select(['c.id', 'c.status', 'c.account', 'c.refresh_token_enc', 'c.error_code', 'c.error_message', 't.access_token_enc', 't.expires_at'])
    .where('c.server_kind', '=', kind)
    .where('c.server_id', '=', serverId)
    .executeTakeFirst();
  return {
    ...server,
    connectionId: c?.id ?? null,
    status: c?.status ?? 'missing',
    account: c?.account ?? null,
    refresh_token_enc: c?.refresh_token_enc ?? null,
    error_code: c?.error_code ?? null,
    error_message: c?.error_message ?? null,
    access_token_enc: c?.access_token_enc ?? null,
    access_token_expires_at: c?.expires_at ?? null,
  };
}

/** Stores an access token of one resource for a connection (a refresh, or the first token of a consent). */
export async function putAccessToken(db: Db, connectionId: number, resource: TokenResource, accessTokenEnc: string, expiresAt: number): Promise<void> {
  await db
    .insertInto('oauth_access_tokens')
    .values({ connection_id: connectionId, resource, access_token_enc: accessTokenEnc, expires_at: expiresAt })
    .onConflict((oc) => oc.columns(['connection_id', 'resource']).doUpdateSet({ access_token_enc: accessTokenEnc, expires_at: expiresAt }))
    .execute();
}

/** Connected Outlook servers (not archived) whose connection was last refreshed before `before`, every kind. */
export async function tokensRefreshedBefore(db: Db, before: number): Promise<{ kind: ServerKind; id: number }[]> {
  const out: { kind: ServerKind; id: number }[] = [];
  for (const kind of ['outgoing', 'incoming'] as const) {
    // Typed as one table: both have the columns named here.
    const table = tableOf(kind) as 'outgoing_servers';
    const rows = await db
      .selectFrom('oauth_connections as c')
      .innerJoin(table, `${table}.id`, 'c.server_id')
      .select('c.server_id')
      .where('c.server_kind', '=', kind)
      .where('c.status', '=', 'valid')
      .where(`${table}.auth`, '=', 'outlook')
      .where(`${table}.archived_at`, 'is', null)
      .where((eb) => eb.or([eb('c.refreshed_at', 'is', null), eb('c.refreshed_at', '<', before)]))
      .execute();
    // A loop, not push(...rows): a spread of that many arguments overflows the stack past ~125,000 rows.
    for (const r of rows) out.push({ kind, id: r.server_id });
  }
  return out;
}

/** Connections that need someone to reconnect them, of servers not archived (the webhook scanner's question). */
export async function connectionsNeedingReconnect(db: Db, kind: ServerKind) {
  const table = tableOf(kind) as 'outgoing_servers';
  return db
    .selectFrom('oauth_connections as c')
    .innerJoin(table, `${table}.id`, 'c.server_id')
    .select(['c.server_id as id', `${table}.name as name`, 'c.refresh_token_enc', 'c.error_code', 'c.error_message'])
    .where('c.server_kind', '=', kind)
    .where('c.status', '=', 'needs_reconnect')
    .where(`${table}.archived_at`, 'is', null)
    .execute();
}

export interface TokenView {
  status: 'missing' | 'valid' | 'needs_reconnect';
  account: string | null;
  expiresAt: string | null;
  error: { code: string | null; message: string } | null;
  /** An app-wide Outlook problem (client secret invalid or expired …): it stops every Outlook server. */
  appProblem: { code: string | null; message: string } | null;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export function tokenView(s: TokenSummary & { auth: string }, appProblem: AppProblem | null = null): TokenView {
  const shared = s.auth === 'outlook' && appProblem ? { code: appProblem.code, message: appProblem.message } : null;
  return {
    status: s.token_status,
    account: s.token_account,
    expiresAt: iso(s.access_token_expires_at),
    error: s.token_error_message ? { code: s.token_error_code, message: s.token_error_message } : shared,
    appProblem: shared,
  };
}
