// A message the IMAP server lists but never returns (a damaged item on the server) stopped every fetch before
// it, so the mail after it waited for an admin. The fetcher now counts the runs in a row that stopped at the
// same UID and, after a few, quarantines a placeholder for it and goes on (src/incoming/fetcher.ts).
import type { Kysely } from 'kysely';
import { addMissingColumns, type MigrationContext } from './helpers.js';

export function unreturnedUid({ dialect }: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      // Both columns or neither, and recorded with them: the migrations run in one transaction on both databases.
      const table = 'incoming_servers';
      await addMissingColumns(db, dialect, table, [
        { name: 'unreturned_uid', add: (d) => d.schema.alterTable(table).addColumn('unreturned_uid', 'bigint').execute() },
        { name: 'unreturned_runs', add: (d) => d.schema.alterTable(table).addColumn('unreturned_runs', 'integer', (c) => c.notNull().defaultTo(0)).execute() },
      ]);
    },
  };
}
