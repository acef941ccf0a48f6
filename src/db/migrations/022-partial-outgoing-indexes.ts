// Issue 9: every index of outgoing_mails is written on each insert, and again on each claim and each `sent`
// whose columns it holds. Four of them only serve look-ups of a value that most mails do not have yet or
// never have: a raw .eml's hash (the blob sweep), the send and bounce times (the webhook scanner, retention)
// and the server (a server's waiting mails; a queued mail has no server until it is sent or waits for one).
// Made partial, a mail enters each of them only once it has that value: a plain mail's insert writes four
// index entries fewer and its claim none of these. Same names and columns; every query that uses one
// compares the column with a value, which both SQLite and PostgreSQL read as implying IS NOT NULL
// (migrate.test.ts checks the plans).
import { sql, type Kysely } from 'kysely';
import type { MigrationContext } from './helpers.js';

/** Name and columns; the first column is the one that must be set for a mail to be in the index. */
export const PARTIAL_OUTGOING_INDEXES: readonly (readonly [string, readonly string[]])[] = [
  ['outgoing_mails_raw_sha_idx', ['raw_sha256']],
  ['outgoing_mails_sent_at_idx', ['sent_at']],
  ['outgoing_mails_bounced_at_idx', ['bounced_at']],
  ['outgoing_mails_server_idx', ['server_id', 'state']],
];

export function partialOutgoingIndexes(_ctx: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      // In the migrations' transaction on both databases (src/db/sqlite-dialect.ts), so a process killed between
      // a drop and its create leaves the old indexes. ifExists covers a database that an older build left half
      // done: it ran SQLite migrations outside a transaction, and a kill there left an index dropped and the
      // migration unrecorded.
      for (const [name, columns] of PARTIAL_OUTGOING_INDEXES) {
        await db.schema.dropIndex(name).ifExists().execute();
        await db.schema
          .createIndex(name)
          .on('outgoing_mails')
          .columns([...columns])
          .where(sql<boolean>`${sql.ref(columns[0]!)} is not null`)
          .execute();
      }
    },
  };
}
