// Issue 9 (performance): per outgoing server, how many connections its pool keeps and how many mails a
// minute it may send (null = the default for its kind, see server-rules.ts), and the answers kept for
// `Idempotency-Key` on POST /api/v1/mails, so a retried request returns the first answer instead of
// queuing the mail twice.
import type { Kysely } from 'kysely';
import { notNull, type MigrationContext } from './helpers.js';

export function serverPoolAndRate(_ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('outgoing_servers').addColumn('pool_size', 'integer').execute();
      await db.schema.alterTable('outgoing_servers').addColumn('rate_per_minute', 'integer').execute();
      await db.schema
        .createTable('idempotency_keys')
        .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('key', 'text', notNull)
        .addColumn('request_sha256', 'text', notNull)
        .addColumn('status', 'integer', notNull)
        .addColumn('response', 'text', notNull)
        .addColumn('created_at', 'bigint', notNull)
        .addPrimaryKeyConstraint('idempotency_keys_pk', ['user_id', 'key'])
        .execute();
      await db.schema.createIndex('idempotency_keys_created_idx').on('idempotency_keys').column('created_at').execute();
    },
  };
}
