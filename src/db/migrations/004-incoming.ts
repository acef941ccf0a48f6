// Incoming mail: IMAP servers (with the same OAuth token columns as outgoing servers, so one token store
// serves both by table), the messages fetched from them and the mails Juniper sent that replies thread onto,
// threads, attachments; and the bounce mark on outgoing mails.
import { sql, type Kysely } from 'kysely';
import { notNull, withId, withTokenColumns, type MigrationContext } from './helpers.js';

export function incoming({ dialect }: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await withTokenColumns(withId(db.schema.createTable('incoming_servers'), dialect))
        .addColumn('name', 'text', notNull)
        .addColumn('protocol', 'text', (c) => c.notNull().defaultTo('imap').check(sql`protocol in ('imap')`))
        .addColumn('host', 'text', notNull)
        .addColumn('port', 'integer', notNull)
        .addColumn('security', 'text', (c) => c.notNull().check(sql`security in ('none', 'starttls', 'ssl')`))
        .addColumn('auth', 'text', (c) => c.notNull().check(sql`auth in ('password', 'outlook')`))
        .addColumn('username', 'text')
        .addColumn('password_enc', 'text')
        .addColumn('folder', 'text', (c) => c.notNull().defaultTo('INBOX'))
        .addColumn('keep_original', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('keep_attachments', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('state', 'text', (c) => c.notNull().defaultTo('draft').check(sql`state in ('draft', 'confirmed')`))
        .addColumn('priority', 'integer', (c) => c.notNull().defaultTo(10))
        .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('interval_minutes', 'integer', (c) => c.notNull().defaultTo(5))
        .addColumn('allow_self_signed', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('owner_user_id', 'integer', (c) => c.references('users.id').onDelete('set null'))
        // UIDs are unsigned 32-bit: bigint, not integer (PostgreSQL's integer stops at 2^31 - 1).
        .addColumn('cursor_uidvalidity', 'bigint')
        .addColumn('cursor_last_uid', 'bigint')
        // Stored-but-not-yet-\Seen gap left by a crash between commit and STORE; the next run closes it.
        .addColumn('cursor_seen_uid', 'bigint')
        .addColumn('last_fetch_at', 'bigint')
        .addColumn('last_error', 'text')
        .addColumn('error_since', 'bigint')
        .addColumn('fetch_lease_owner', 'text')
        .addColumn('fetch_lease_until', 'bigint')
        .addColumn('last_test_at', 'bigint')
        .addColumn('last_test_ok', 'integer')
        .addColumn('last_test_message', 'text')
        .addColumn('archived_at', 'bigint')
        .addColumn('created_at', 'bigint', notNull)
        .addColumn('updated_at', 'bigint', notNull)
        .execute();

      await withId(db.schema.createTable('threads'), dialect)
        .addColumn('subject', 'text', notNull)
        .addColumn('last_message_at', 'bigint', notNull)
        .addColumn('created_at', 'bigint', notNull)
        .execute();

      await withId(db.schema.createTable('messages'), dialect)
        // Null for mails Juniper sent (direction 'out'), which enter the table when a reply threads onto them.
        .addColumn('server_id', 'integer', (c) => c.references('incoming_servers.id'))
        .addColumn('direction', 'text', (c) => c.notNull().check(sql`direction in ('in', 'out')`))
        .addColumn('outgoing_mail_id', 'integer', (c) => c.references('outgoing_mails.id').unique())
        // The Message-ID, or sha256:<hex> of the raw bytes when there is none (or it could not be parsed).
        .addColumn('dedupe_key', 'text', notNull)
        .addColumn('message_id', 'text')
        .addColumn('in_reply_to', 'text')
        .addColumn('references_ids', 'text')
        .addColumn('thread_id', 'integer', (c) => c.references('threads.id'))
        .addColumn('mailbox', 'text')
        .addColumn('from_header', 'text')
        .addColumn('to_addrs', 'text', notNull)
        .addColumn('cc_addrs', 'text', notNull)
        .addColumn('subject', 'text', notNull)
        .addColumn('sent_at', 'bigint')
        .addColumn('text_body', 'text')
        .addColumn('html_body', 'text')
        .addColumn('raw_sha256', 'text', (c) => c.references('blobs.sha256'))
        .addColumn('size', 'bigint', notNull)
        .addColumn('quarantined', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('parse_error', 'text')
        .addColumn('is_bounce', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('bounced_mail_id', 'integer', (c) => c.references('outgoing_mails.id'))
        .addColumn('uid', 'bigint')
        .addColumn('uidvalidity', 'bigint')
        .addColumn('created_at', 'bigint', notNull)
        .execute();
      // NULLs are distinct in unique indexes on both dialects: sent mails (server_id null) dedupe on outgoing_mail_id.
      await db.schema.createIndex('messages_dedupe_idx').on('messages').columns(['server_id', 'dedupe_key']).unique().execute();
      await db.schema.createIndex('messages_message_id_idx').on('messages').column('message_id').execute();
      await db.schema.createIndex('messages_thread_idx').on('messages').columns(['thread_id', 'id']).execute();

      await withId(db.schema.createTable('message_attachments'), dialect)
        .addColumn('message_id', 'integer', (c) => c.notNull().references('messages.id').onDelete('cascade'))
        .addColumn('position', 'integer', notNull)
        .addColumn('filename', 'text', notNull)
        .addColumn('content_type', 'text', notNull)
        .addColumn('content_id', 'text')
        .addColumn('size', 'bigint', notNull)
        // Null when the server does not keep attachments: the list still says what there was.
        .addColumn('blob_sha256', 'text', (c) => c.references('blobs.sha256'))
        .execute();
      await db.schema.createIndex('message_attachments_message_idx').on('message_attachments').column('message_id').execute();

      // One column per statement: SQLite's ALTER TABLE adds one at a time.
      await db.schema.alterTable('outgoing_mails').addColumn('bounced_at', 'bigint').execute();
      await db.schema.alterTable('outgoing_mails').addColumn('bounce_reason', 'text').execute();
    },
  };
}
