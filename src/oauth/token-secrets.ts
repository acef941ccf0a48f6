// The encrypted values the OAuth module owns, for key rotation: each connection's refresh token, its access
// tokens (one per resource), and the PKCE verifiers of sign-ins in progress. Their vault contexts name the
// server a token serves (connections.ts), so the sources read the connection's server with each value.
import type { Kysely } from 'kysely';
import { columnSecretSource } from '../db/secret-column.js';
import type { DB } from '../db/schema.js';
import type { SecretSource, StoredSecret } from '../vault/rotation.js';
import { accessTokenContext, refreshTokenContext } from './connections.js';
import { VERIFIER_CONTEXT } from './outlook-connect.js';

export function oauthSecretSources(db: Kysely<DB>): SecretSource[] {
  return [
    {
      // The column's own source writes (compare-and-set); its contexts come from the connection's server.
      ...columnSecretSource(db, 'oauth_connections', 'refresh_token_enc', () => '', { nameOf: () => '', forget: 'delete-row' }),
      async list(): Promise<StoredSecret[]> {
        const rows = await db.selectFrom('oauth_connections').select(['id', 'server_kind', 'server_id', 'refresh_token_enc']).where('refresh_token_enc', 'is not', null).orderBy('id').execute();
        return rows.map((r) => ({ id: r.id, cipher: r.refresh_token_enc!, context: refreshTokenContext(r.server_kind, r.server_id), name: `Outlook refresh token of ${r.server_kind} server id ${r.server_id}` }));
      },
      // Without its refresh token the connection is gone: the server shows "Connect your Outlook account" again.
      async forgetsAlso(secret) {
        const c = await db.selectFrom('oauth_connections').select(['server_kind', 'server_id']).where('id', '=', Number(secret.id)).executeTakeFirst();
        return c ? `the Outlook connection of ${c.server_kind} server id ${c.server_id} and its access tokens` : null;
      },
      async forget(secret) {
        await db.deleteFrom('oauth_access_tokens').where('connection_id', '=', Number(secret.id)).execute();
        await db.deleteFrom('oauth_connections').where('id', '=', Number(secret.id)).where('refresh_token_enc', '=', secret.cipher).execute();
      },
    },
    {
      // An access token is renewed from the refresh token; a forgotten one is simply fetched again.
      ...columnSecretSource(db, 'oauth_access_tokens', 'access_token_enc', () => '', { nameOf: () => '', forget: 'delete-row' }),
      async list(): Promise<StoredSecret[]> {
        const rows = await db
          .selectFrom('oauth_access_tokens as t')
          .innerJoin('oauth_connections as c', 'c.id', 't.connection_id')
          .select(['t.id', 't.resource', 't.access_token_enc', 'c.server_kind', 'c.server_id'])
          .orderBy('t.id')
          .execute();
        return rows.map((r) => ({ id: r.id, cipher: r.access_token_enc, context: accessTokenContext(r.server_kind, r.server_id, r.resource), name: `Outlook access token (${r.resource}) of ${r.server_kind} server id ${r.server_id}` }));
      },
    },
    columnSecretSource(db, 'oauth_states', 'code_verifier_enc', () => VERIFIER_CONTEXT, { nameOf: (id) => `Outlook sign-in in progress ${String(id).slice(0, 8)}`, forget: 'delete-row' }),
  ];
}
