// Incoming mail that survives poison input. Dedupe keys become hashes (`mid:` + SHA-256 of the normalised
// Message-ID; `sha256:` keys of raw bytes stay as they are), so no sender-controlled value of any length is a
// key of the unique (server_id, dedupe_key) btree. On PostgreSQL the Message-ID lookup threading uses moves to
// a hash index, which stores a 4-byte hash per row: a btree refuses any entry over ~2.7 KB, and one message
// with a longer Message-ID failed its insert for good. SQLite's btree has no such limit and keeps its index.
import crypto from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { MigrationContext } from './helpers.js';

const PAGE = 1000;

/** messageIdKey() of src/mailbox/dedupe.ts as of this migration, frozen here: a released migration never changes. */
function messageIdKey(messageId: string): string {
  const normal = `<${messageId.replace(/\s+/g, '').replace(/^<+|>+$/g, '')}>`;
  return `mid:${crypto.createHash('sha256').update(normal, 'utf8').digest('hex')}`;
}

export function incomingHardening({ dialect }: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      const messages = db as unknown as Kysely<{ messages: { id: number; server_id: number | null; dedupe_key: string } }>;
      // Old keys are Message-IDs as mailparser gave them; two of one server that normalise alike (never seen in
      // practice, as both came through the same normalisation) keep their own row under a suffixed key, so the
      // unique index holds and the first still dedupes what comes next.
      const taken = new Set<string>();
      // Keys already hashed are skipped: older builds ran SQLite migrations outside a transaction, one commit per
      // page, and one that died part-way left the first pages hashed. Now the migrations run in one transaction
      // on both databases.
      for (let after = 0; ; ) {
        const rows = await messages.selectFrom('messages').select(['id', 'server_id', 'dedupe_key']).where('id', '>', after).orderBy('id').limit(PAGE).execute();
        if (rows.length === 0) break;
        after = rows[rows.length - 1]!.id;
        for (const row of rows) {
          if (row.dedupe_key.startsWith('sha256:') || row.dedupe_key.startsWith('mid:')) continue;
          let key = messageIdKey(row.dedupe_key);
          const scope = `${row.server_id ?? 'out'}|${key}`;
          if (taken.has(scope)) key = `${key}:${row.id}`;
          taken.add(scope);
          await messages.updateTable('messages').set({ dedupe_key: key }).where('id', '=', row.id).execute();
        }
      }
      if (dialect === 'postgres') {
        await db.schema.dropIndex('messages_message_id_idx').execute();
        await sql`CREATE INDEX messages_message_id_idx ON messages USING hash (message_id)`.execute(db);
      }
    },
  };
}
