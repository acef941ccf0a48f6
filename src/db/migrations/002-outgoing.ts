// Outgoing mail servers (with the OAuth token columns the Outlook issue fills), the durable outgoing queue,
// and content-addressed blobs so an attachment sent to many recipients is stored once.
import { sql, type Kysely } from 'kysely';
import { binaryType, notNull, withId, withTokenColumns, type MigrationContext } from './helpers.js';

export function outgoing({ dialect }: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await withTokenColumns(withId(db.schema.createTable('outgoing_servers'), dialect))
        .addColumn('name', 'text', notNull)
        .addColumn('host', 'text', notNull)
        .addColumn('port', 'integer', notNull)
        .addColumn('security', 'text', (c) => c.notNull().check(sql`security in ('none', 'starttls', 'ssl')`))
        .addColumn('auth', 'text', (c) => c.notNull().check(sql`auth in ('none', 'password', 'outlook')`))
        .addColumn('username', 'text')
        .addColumn('password_enc', 'text')
        .addColumn('from_filter', 'text')
        .addColumn('priority', 'integer', (c) => c.notNull().defaultTo(10))
        .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('allow_self_signed', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('owner_user_id', 'integer', (c) => c.references('users.id').onDelete('set null'))
        .addColumn('last_test_at', 'bigint')
        .addColumn('last_test_ok', 'integer')
        .addColumn('last_test_message', 'text')
        .addColumn('archived_at', 'bigint')
        .addColumn('created_at', 'bigint', notNull)
        .addColumn('updated_at', 'bigint', notNull)
        .execute();

      await db.schema
        .createTable('blobs')
        .addColumn('sha256', 'text', (c) => c.primaryKey())
        .addColumn('size', 'bigint', notNull)
        .addColumn('content', binaryType(dialect), notNull)
        .addColumn('created_at', 'bigint', notNull)
        .execute();

      await withId(db.schema.createTable('outgoing_mails'), dialect)
        .addColumn('message_id', 'text', (c) => c.notNull().unique())
        .addColumn('from_header', 'text', notNull)
        .addColumn('to_addrs', 'text', notNull)
        .addColumn('cc_addrs', 'text', notNull)
        .addColumn('bcc_addrs', 'text', notNull)
        .addColumn('reply_to', 'text')
        .addColumn('subject', 'text', notNull)
        .addColumn('text_body', 'text')
        .addColumn('html_body', 'text')
        .addColumn('headers', 'text')
        // A complete message given as .eml: sent as it is (only the envelope is decided by routing).
        .addColumn('raw_sha256', 'text', (c) => c.references('blobs.sha256'))
        .addColumn('forced_server_id', 'integer', (c) => c.references('outgoing_servers.id'))
        .addColumn('mass_mailing', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('queued', 'sending', 'sent', 'failed', 'cancelled')`))
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', 'bigint', notNull)
        .addColumn('lease_owner', 'text')
        .addColumn('lease_expires_at', 'bigint')
        .addColumn('waiting_reason', 'text')
        .addColumn('failure_type', 'text')
        .addColumn('failure_reason', 'text')
        .addColumn('server_id', 'integer', (c) => c.references('outgoing_servers.id'))
        .addColumn('effective_from', 'text')
        .addColumn('envelope_from', 'text')
        .addColumn('smtp_response', 'text')
        .addColumn('rejected_recipients', 'text')
        .addColumn('sent_at', 'bigint')
        .addColumn('created_by_user_id', 'integer', (c) => c.references('users.id').onDelete('set null'))
        .addColumn('created_at', 'bigint', notNull)
        .addColumn('updated_at', 'bigint', notNull)
        .execute();
      // The dispatcher's claim query: due mails by state and time.
      await db.schema.createIndex('outgoing_mails_due_idx').on('outgoing_mails').columns(['state', 'next_attempt_at']).execute();
      await db.schema.createIndex('outgoing_mails_server_idx').on('outgoing_mails').columns(['server_id', 'state']).execute();

      await withId(db.schema.createTable('outgoing_attachments'), dialect)
        .addColumn('mail_id', 'integer', (c) => c.notNull().references('outgoing_mails.id').onDelete('cascade'))
        .addColumn('position', 'integer', notNull)
        .addColumn('filename', 'text', notNull)
        .addColumn('content_type', 'text', notNull)
        .addColumn('content_id', 'text')
        .addColumn('blob_sha256', 'text', (c) => c.notNull().references('blobs.sha256'))
        .execute();
      await db.schema.createIndex('outgoing_attachments_mail_idx').on('outgoing_attachments').column('mail_id').execute();
    },
  };
}
