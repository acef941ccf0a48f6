// A message whose FETCH breaks the run (the connection drops, imapflow throws, the process dies: a crash, an
// OOM kill, a supervisor's SIGKILL) failed every run at the same UID, so the mail after it waited for ever.
// The fetcher now notes each FETCH before it is sent (the UIDs it covers), so the next run knows the last one
// did not finish even when nothing was left alive to say so: it fetches those messages one at a time, counts
// the runs in a row that failed on one message fetched alone, and after a few quarantines a placeholder for
// it and goes on (src/incoming/fetcher.ts). Separate from unreturned_* (023): a run that stopped cleanly before
// a UID the server did not return is not one that died at it, and each says something different to the admin.
import type { Kysely } from 'kysely';
import { addMissingColumns, type MigrationContext } from './helpers.js';

export function fetchAttempt({ dialect }: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      // All three columns or none, and recorded with them (see 023).
      const table = 'incoming_servers';
      await addMissingColumns(db, dialect, table, [
        { name: 'attempt_first_uid', add: (d) => d.schema.alterTable(table).addColumn('attempt_first_uid', 'bigint').execute() },
        { name: 'attempt_last_uid', add: (d) => d.schema.alterTable(table).addColumn('attempt_last_uid', 'bigint').execute() },
        { name: 'attempt_failed_runs', add: (d) => d.schema.alterTable(table).addColumn('attempt_failed_runs', 'integer', (c) => c.notNull().defaultTo(0)).execute() },
      ]);
    },
  };
}
