// Issue 8 (trust), queue and token store: who holds a token refresh lock (so only the holder releases it),
// how often a mail's worker stopped without a result (so a mail that kills its worker fails as `crashed`
// instead of being claimed forever), and when a mail was last retried by hand (a manual retry restarts the
// maximum age a waiting mail may wait).
import type { Kysely } from 'kysely';
import { notNull, type MigrationContext } from './helpers.js';

export function queueAndTokenLock(_ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      // Both server tables carry the token columns (helpers.ts withTokenColumns); one column per statement,
      // as SQLite's ALTER TABLE adds one at a time.
      for (const table of ['outgoing_servers', 'incoming_servers']) {
        await db.schema.alterTable(table).addColumn('token_refresh_lock_owner', 'text').execute();
      }
      await db.schema.alterTable('outgoing_mails').addColumn('lost_leases', 'integer', (c) => notNull(c.defaultTo(0))).execute();
      await db.schema.alterTable('outgoing_mails').addColumn('retried_at', 'bigint').execute();
    },
  };
}
