// Issue 10 step D and issue 13: OAuth tokens leave the server tables for src/oauth's own. A connection is one
// consent (one refresh token, its account, status and refresh lease) of one server, of either kind; it keeps
// one access token per resource (Entra ID issues a token for a single resource per request: Outlook's SMTP or
// IMAP, or Graph). Every connection of today is moved as it is: the ciphertexts stay bound to their server
// (oauth/connections.ts names the same vault contexts), so nothing is decrypted or re-encrypted here, and the
// Outlook access token becomes the connection's 'outlook' token.
import { sql, type Kysely } from 'kysely';
import { notNull, withId, type MigrationContext } from './helpers.js';

const TOKEN_COLUMNS = [
  'token_refresh_lock_owner',
  'token_refresh_lock_until',
  'token_refreshed_at',
  'token_error_message',
  'token_error_code',
  'token_status',
  'token_account',
  'access_token_expires_at',
  'access_token_enc',
  'refresh_token_enc',
];

export function oauthConnections(ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await withId(db.schema.createTable('oauth_connections'), ctx.dialect)
        .addColumn('server_kind', 'text', (c) => c.notNull().check(sql`server_kind in ('outgoing', 'incoming')`))
        .addColumn('server_id', 'integer', notNull)
        .addColumn('provider', 'text', (c) => c.notNull().defaultTo('microsoft'))
        .addColumn('account', 'text')
        .addColumn('refresh_token_enc', 'text')
        .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('valid', 'needs_reconnect')`))
        .addColumn('error_code', 'text')
        .addColumn('error_message', 'text')
        .addColumn('refreshed_at', 'bigint')
        .addColumn('lock_until', 'bigint')
        .addColumn('lock_owner', 'text')
        .addColumn('created_at', 'bigint', notNull)
        .addUniqueConstraint('oauth_connections_server_uq', ['server_kind', 'server_id'])
        .execute();
      await withId(db.schema.createTable('oauth_access_tokens'), ctx.dialect)
        .addColumn('connection_id', 'integer', (c) => c.notNull().references('oauth_connections.id').onDelete('cascade'))
        .addColumn('resource', 'text', (c) => c.notNull().check(sql`resource in ('outlook', 'graph')`))
        .addColumn('access_token_enc', 'text', notNull)
        .addColumn('expires_at', 'bigint', notNull)
        .addUniqueConstraint('oauth_access_tokens_resource_uq', ['connection_id', 'resource'])
        .execute();

      for (const kind of ['outgoing', 'incoming'] as const) {
        const table = sql.table(`${kind}_servers`);
        await sql`
          INSERT INTO oauth_connections (server_kind, server_id, provider, account, refresh_token_enc, status, error_code, error_message, refreshed_at, created_at)
          SELECT ${kind}, id, 'microsoft', token_account, refresh_token_enc, token_status, token_error_code, token_error_message, token_refreshed_at, coalesce(token_refreshed_at, updated_at)
          FROM ${table} WHERE token_status <> 'missing'`.execute(db);
        await sql`
          INSERT INTO oauth_access_tokens (connection_id, resource, access_token_enc, expires_at)
          SELECT c.id, 'outlook', s.access_token_enc, coalesce(s.access_token_expires_at, 0)
          FROM ${table} s JOIN oauth_connections c ON c.server_kind = ${kind} AND c.server_id = s.id
          WHERE s.access_token_enc IS NOT NULL`.execute(db);
        // One column per statement: SQLite's ALTER TABLE drops one at a time.
        for (const column of TOKEN_COLUMNS) await db.schema.alterTable(`${kind}_servers`).dropColumn(column).execute();
      }
    },
  };
}
