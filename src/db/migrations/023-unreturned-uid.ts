// A message the IMAP server lists but never returns (a damaged item on the server) stopped every fetch before
// it, so the mail after it waited for an admin. The fetcher now counts the runs in a row that stopped at the
// same UID and, after a few, quarantines a placeholder for it and goes on (src/incoming/fetcher.ts).
import type { Kysely } from 'kysely';
import type { MigrationContext } from './helpers.js';

export function unreturnedUid(_ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      // Both columns or neither, and recorded with them: the migrations run in one transaction on both databases.
      await db.schema.alterTable('incoming_servers').addColumn('unreturned_uid', 'bigint').execute();
      await db.schema.alterTable('incoming_servers').addColumn('unreturned_runs', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    },
  };
}
