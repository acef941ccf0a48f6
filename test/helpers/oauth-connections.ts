// A server's OAuth connection as the tests set it up or look at it (tables oauth_connections and
// oauth_access_tokens, owned by src/oauth/connections.ts): "as after Connect your Outlook account" without the
// browser, and the stored state a test asserts on.
import type { Kysely } from 'kysely';
import type { DB } from '../../src/db/schema.js';
import { refreshTokenContext } from '../../src/oauth/connections.js';
import type { ServerKind } from '../../src/oauth/token-provider.js';
import type { Vault } from '../../src/vault/index.js';

type Fields = Partial<Pick<DB['oauth_connections'], 'status' | 'account' | 'error_code' | 'error_message' | 'refreshed_at'>>;

/** Replaces the server's connection by one holding `refreshToken` (encrypted) and no access token. */
export async function seedConnection(db: Kysely<DB>, vault: Vault, kind: ServerKind, serverId: number, refreshToken: string | null, fields: Fields = {}): Promise<void> {
  await db.deleteFrom('oauth_connections').where('server_kind', '=', kind).where('server_id', '=', serverId).execute();
  await db
    .insertInto('oauth_connections')
    .values({
      server_kind: kind,
      server_id: serverId,
      refresh_token_enc: refreshToken === null ? null : vault.encrypt(refreshToken, refreshTokenContext(kind, serverId)),
      status: 'valid',
      created_at: Date.now(),
      ...fields,
    })
    .execute();
}

/** Changes the server's connection in place (status, error, last refresh). */
export async function updateConnection(db: Kysely<DB>, kind: ServerKind, serverId: number, fields: Fields): Promise<void> {
  await db.updateTable('oauth_connections').set(fields).where('server_kind', '=', kind).where('server_id', '=', serverId).execute();
}

/** The stored connection with its access token for `resource` (undefined fields when there is none). */
export async function connectionOf(db: Kysely<DB>, kind: ServerKind, serverId: number, resource: 'outlook' | 'graph' = 'outlook') {
  const row = await db
    .selectFrom('oauth_connections as c')
    .leftJoin('oauth_access_tokens as t', (j) => j.onRef('t.connection_id', '=', 'c.id').on('t.resource', '=', resource))
    .select(['c.status', 'c.account', 'c.refresh_token_enc', 'c.lock_owner', 'c.lock_until', 'c.refreshed_at', 'c.error_code', 't.access_token_enc', 't.expires_at'])
    .where('c.server_kind', '=', kind)
    .where('c.server_id', '=', serverId)
    .executeTakeFirst();
  return row ?? { status: 'missing' as const, account: null, refresh_token_enc: null, lock_owner: null, lock_until: null, refreshed_at: null, error_code: null, access_token_enc: null, expires_at: null };
}
