// Outgoing and incoming servers keep the same OAuth token columns (TokenColumns in db/schema.ts), so one
// token store serves both by table name.
import type { Kysely } from 'kysely';
import type { DB, OutgoingServer } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { ServerTable } from '../mail-servers/mail-servers.js';
import type { ServerKind } from './token-provider.js';

/** The columns every OAuth-capable server row has. */
const TOKEN_ROW_COLUMNS = [
  'id',
  'name',
  'username',
  'auth',
  'owner_user_id',
  'refresh_token_enc',
  'access_token_enc',
  'access_token_expires_at',
  'token_account',
  'token_status',
  'token_error_code',
  'token_error_message',
  'token_refreshed_at',
  'token_refresh_lock_until',
  'token_refresh_lock_owner',
] as const;

export type TokenRow = Pick<OutgoingServer, (typeof TOKEN_ROW_COLUMNS)[number]>;

export function tableOf(kind: ServerKind): ServerTable {
  return kind === 'outgoing' ? 'outgoing_servers' : 'incoming_servers';
}

export const kindLabel = (kind: ServerKind) => (kind === 'outgoing' ? 'Outgoing' : 'Incoming');

export async function loadTokenRow(db: Kysely<DB>, kind: ServerKind, id: number): Promise<TokenRow> {
  const row = await db
    .selectFrom(tableOf(kind))
    .select(TOKEN_ROW_COLUMNS)
    .where('id', '=', id)
    .executeTakeFirst();
  if (!row) throw new AppError('JUNIPER_ERR_NOT_FOUND', `No ${kind} mail server with id ${id}.`);
  return row;
}

/** Connected Outlook servers (not archived) whose token was last refreshed before `before`, every kind. */
export async function tokensRefreshedBefore(db: Kysely<DB>, before: number): Promise<{ kind: ServerKind; id: number }[]> {
  const out: { kind: ServerKind; id: number }[] = [];
  for (const kind of ['outgoing', 'incoming'] as const) {
    const rows = await db
      .selectFrom(tableOf(kind))
      .select('id')
      .where('auth', '=', 'outlook')
      .where('token_status', '=', 'valid')
      .where('archived_at', 'is', null)
      .where((eb) => eb.or([eb('token_refreshed_at', 'is', null), eb('token_refreshed_at', '<', before)]))
      .execute();
    out.push(...rows.map(({ id }) => ({ kind, id })));
  }
  return out;
}

/** Vault contexts bind each token to its server row, so a token copied to another row does not decrypt. */
export const refreshTokenContext = (kind: ServerKind, id: number) => `${tableOf(kind)}.refresh_token:${id}`;
export const accessTokenContext = (kind: ServerKind, id: number) => `${tableOf(kind)}.access_token:${id}`;
