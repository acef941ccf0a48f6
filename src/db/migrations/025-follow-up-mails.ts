// A transaction that the server accepted for some recipients and deferred (4xx at RCPT TO) for others used to
// record the mail sent to everyone: the deferred recipients never got it. Their delivery is now a follow-up
// mail (src/outgoing/partial-delivery.ts): a row of its own whose envelope is those recipients only
// (envelope_to, a JSON array of addresses; null on every other mail: all of to, cc and bcc) and which names
// the mail it follows (follow_up_of; kept when that mail is deleted by retention, set null).
import { sql, type Kysely } from 'kysely';
import { addMissingColumns, type MigrationContext } from './helpers.js';

export function followUpMails({ dialect }: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      const table = 'outgoing_mails';
      await addMissingColumns(db, dialect, table, [
        { name: 'envelope_to', add: (d) => d.schema.alterTable(table).addColumn('envelope_to', 'text').execute() },
        { name: 'follow_up_of', add: (d) => d.schema.alterTable(table).addColumn('follow_up_of', 'integer', (c) => c.references('outgoing_mails.id').onDelete('set null')).execute() },
      ]);
      // A mail's page lists its follow-ups; partial, so the mails that have none (nearly all) are not in it.
      await db.schema.createIndex('outgoing_mails_follow_up_of_idx').ifNotExists().on(table).column('follow_up_of').where(sql<boolean>`follow_up_of is not null`).execute();
    },
  };
}
