// Issue 9 (scale-out): which worker sent each mail (its dispatcher's owner name, `host:pid:random`), written
// in the same UPDATE that records the mail sent. Several `juniper worker` processes share one PostgreSQL; this
// tells an operator which of them delivered a mail, and the scale-out benchmark each worker's share.
import type { Kysely } from 'kysely';
import type { MigrationContext } from './helpers.js';

export function sentBy(_ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('outgoing_mails').addColumn('sent_by', 'text').execute();
    },
  };
}
