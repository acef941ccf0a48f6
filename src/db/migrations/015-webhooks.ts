// Issue 11 (operations): webhooks. An admin registers a URL for some events; every event becomes a durable
// delivery row (unique per webhook, event and subject, so an event is never queued twice) that a worker
// posts, signed, with retries and backoff, keeping the last response; a delivery can be replayed.
import { sql, type Kysely } from 'kysely';
import { notNull, withId, type MigrationContext } from './helpers.js';

export function webhooks(ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await withId(db.schema.createTable('webhooks'), ctx.dialect)
        .addColumn('url', 'text', notNull)
        // JSON array of event names.
        .addColumn('events', 'text', notNull)
        .addColumn('secret_enc', 'text', notNull)
        .addColumn('active', 'integer', (c) => notNull(c.defaultTo(1)))
        .addColumn('created_by_user_id', 'integer', (c) => c.references('users.id').onDelete('set null'))
        .addColumn('created_at', 'bigint', notNull)
        .addColumn('updated_at', 'bigint', notNull)
        .addColumn('deleted_at', 'bigint')
        .execute();
      await withId(db.schema.createTable('webhook_deliveries'), ctx.dialect)
        .addColumn('webhook_id', 'integer', (c) => c.notNull().references('webhooks.id').onDelete('cascade'))
        .addColumn('event', 'text', notNull)
        // What the event is about (`mail:12`, `message:7`, `outgoing_server:3:…`): one delivery per webhook and subject.
        .addColumn('subject', 'text', notNull)
        .addColumn('payload', 'text', notNull)
        .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('pending', 'delivered', 'failed')`))
        .addColumn('attempts', 'integer', (c) => notNull(c.defaultTo(0)))
        .addColumn('next_attempt_at', 'bigint', notNull)
        .addColumn('lease_owner', 'text')
        .addColumn('lease_until', 'bigint')
        .addColumn('last_status', 'integer')
        .addColumn('last_response', 'text')
        .addColumn('last_error', 'text')
        .addColumn('last_attempt_at', 'bigint')
        .addColumn('delivered_at', 'bigint')
        .addColumn('created_at', 'bigint', notNull)
        .addUniqueConstraint('webhook_deliveries_subject_uq', ['webhook_id', 'event', 'subject'])
        .execute();
      await db.schema.createIndex('webhook_deliveries_due_idx').on('webhook_deliveries').columns(['state', 'next_attempt_at']).execute();
    },
  };
}
