// OAuth authorization requests in flight: the state (stored as its SHA-256), who started it from which
// session, for which server, the PKCE verifier (encrypted) and the exact redirect_uri, so the callback can
// check all of it and use the state once.
import type { Kysely } from 'kysely';
import { notNull, type MigrationContext } from './helpers.js';

export function oauth(_ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('oauth_states')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('session_id', 'text')
        .addColumn('server_kind', 'text', notNull)
        .addColumn('server_id', 'integer', notNull)
        .addColumn('code_verifier_enc', 'text', notNull)
        .addColumn('redirect_uri', 'text', notNull)
        .addColumn('created_at', 'bigint', notNull)
        .addColumn('expires_at', 'bigint', notNull)
        .addColumn('used_at', 'bigint')
        .execute();
      await db.schema.createIndex('oauth_states_expires_idx').on('oauth_states').column('expires_at').execute();
    },
  };
}
