// Archiving a server turned it inactive and Restore left it so: restoring the dedicated mass-mailing server, or
// any server that was working, needed a second step nobody was told about. Archive now keeps the server's Active
// setting here and Restore brings it back (src/mail-servers/mail-servers.ts). Servers archived before this have
// none kept and stay inactive when restored, as before.
import type { Kysely } from 'kysely';
import { addMissingColumns, type MigrationContext } from './helpers.js';

export function activeBeforeArchive({ dialect }: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      for (const table of ['outgoing_servers', 'incoming_servers']) {
        await addMissingColumns(db, dialect, table, [
          { name: 'active_before_archive', add: (d) => d.schema.alterTable(table).addColumn('active_before_archive', 'integer').execute() },
        ]);
      }
    },
  };
}
