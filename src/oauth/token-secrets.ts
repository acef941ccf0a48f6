// The encrypted values the OAuth module owns, for key rotation: both server kinds' refresh and access
// tokens, and the PKCE verifiers of sign-ins in progress.
import type { Kysely } from 'kysely';
import { columnSecretSource } from '../db/secret-column.js';
import type { DB } from '../db/schema.js';
import type { SecretSource } from '../vault/rotation.js';
import { VERIFIER_CONTEXT } from './outlook-connect.js';
import { accessTokenContext, refreshTokenContext } from './token-table.js';

export function oauthSecretSources(db: Kysely<DB>): SecretSource[] {
  return (['outgoing', 'incoming'] as const).flatMap((kind) => {
    const table = kind === 'outgoing' ? 'outgoing_servers' : 'incoming_servers';
    return [
      columnSecretSource(db, table, 'refresh_token_enc', (id) => refreshTokenContext(kind, Number(id))),
      columnSecretSource(db, table, 'access_token_enc', (id) => accessTokenContext(kind, Number(id))),
    ];
  }).concat(columnSecretSource(db, 'oauth_states', 'code_verifier_enc', () => VERIFIER_CONTEXT));
}
