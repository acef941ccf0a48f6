// Issue 13 (Microsoft Graph sending): how an Outlook server sends (smtp, graph, or auto: SMTP until Microsoft
// refuses SMTP AUTH, then Graph), when and why an auto server moved to Graph, and whether Graph keeps a copy
// in Sent Items. Outlook servers of today become auto: SMTP as before, and Graph once a tenant turns SMTP AUTH off.
import { sql, type Kysely } from 'kysely';
import type { MigrationContext } from './helpers.js';

export function graphTransport(_ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .alterTable('outgoing_servers')
        .addColumn('transport', 'text', (c) => c.notNull().defaultTo('smtp').check(sql`transport in ('smtp', 'graph', 'auto')`))
        .execute();
      await db.schema.alterTable('outgoing_servers').addColumn('transport_switched_at', 'bigint').execute();
      await db.schema.alterTable('outgoing_servers').addColumn('transport_switch_reason', 'text').execute();
      await db.schema.alterTable('outgoing_servers').addColumn('save_to_sent_items', 'integer', (c) => c.notNull().defaultTo(1)).execute();
      await sql`UPDATE outgoing_servers SET transport = 'auto' WHERE auth = 'outlook'`.execute(db);
    },
  };
}
