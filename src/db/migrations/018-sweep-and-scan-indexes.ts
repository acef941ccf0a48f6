// Issue 11 follow-up: the hourly blob sweep asks, per blob, whether any mail, attachment or message still
// references it, and the retention run and FK checks look messages up by the mail they point at; without
// these indexes each of those was a scan of the whole table. The webhook scanner filters mails by state and
// send, failure (last change) or bounce time and messages by their arrival; the pruning of deliveries by
// state and creation.
import type { Kysely } from 'kysely';
import type { MigrationContext } from './helpers.js';

/** Name, table, columns: exported so a test can check each exists. */
export const SWEEP_AND_SCAN_INDEXES: readonly (readonly [string, string, readonly string[]])[] = [
  ['outgoing_mails_raw_sha_idx', 'outgoing_mails', ['raw_sha256']],
  ['outgoing_attachments_blob_idx', 'outgoing_attachments', ['blob_sha256']],
  ['messages_raw_sha_idx', 'messages', ['raw_sha256']],
  ['message_attachments_blob_idx', 'message_attachments', ['blob_sha256']],
  ['messages_bounced_mail_idx', 'messages', ['bounced_mail_id']],
  ['messages_outgoing_mail_idx', 'messages', ['outgoing_mail_id']],
  ['messages_created_idx', 'messages', ['created_at']],
  ['outgoing_mails_state_updated_idx', 'outgoing_mails', ['state', 'updated_at']],
  ['outgoing_mails_sent_at_idx', 'outgoing_mails', ['sent_at']],
  ['outgoing_mails_bounced_at_idx', 'outgoing_mails', ['bounced_at']],
  ['webhook_deliveries_state_created_idx', 'webhook_deliveries', ['state', 'created_at']],
];

export function sweepAndScanIndexes(_ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      for (const [name, table, columns] of SWEEP_AND_SCAN_INDEXES) await db.schema.createIndex(name).on(table).columns([...columns]).execute();
    },
  };
}
