// Issue 12 (web UI): the mail page lists every attempt that did not deliver, with the server's reply, so an
// admin sees the history of a mail that was retried rather than only its last state. A delivered attempt
// needs no row: the mail itself keeps the server and its reply (smtp_response).
import type { Kysely } from 'kysely';
import { notNull, withId, type MigrationContext } from './helpers.js';

export function mailAttempts(ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await withId(db.schema.createTable('mail_attempts'), ctx.dialect)
        .addColumn('mail_id', 'integer', (c) => c.notNull().references('outgoing_mails.id').onDelete('cascade'))
        .addColumn('at', 'bigint', notNull)
        /** 'retry' (queued again) or 'failed' (given up). */
        .addColumn('outcome', 'text', notNull)
        .addColumn('server_id', 'integer')
        .addColumn('failure_type', 'text')
        .addColumn('reason', 'text')
        .execute();
      await db.schema.createIndex('mail_attempts_mail_idx').on('mail_attempts').column('mail_id').execute();
    },
  };
}
