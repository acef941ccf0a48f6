// Content-addressed bytes (attachments, original messages): stored once however many mails carry them,
// so a mass mailing with one PDF keeps one copy.
import crypto from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';

export function sha256Of(content: Buffer): string {
  return crypto.createHash('sha256').update(content).digest('hex');
}

export class BlobStore {
  constructor(private readonly db: Kysely<DB>) {}

  /** Stores the bytes unless already there; returns their SHA-256 (`sha256` when the caller hashed them already). */
  async put(content: Buffer, db: Kysely<DB> = this.db, sha256 = sha256Of(content)): Promise<string> {
    await db
      .insertInto('blobs')
      .values({ sha256, size: content.length, content, created_at: Date.now() })
      .onConflict((oc) => oc.column('sha256').doNothing())
      .execute();
    return sha256;
  }

  /** Like `put` for several contents in one statement (fewer per message); the hashes in the same order. */
  async putMany(contents: readonly Buffer[], db: Kysely<DB> = this.db): Promise<string[]> {
    const shas = contents.map((c) => sha256Of(c));
    const unique = new Map<string, Buffer>();
    contents.forEach((c, i) => unique.set(shas[i]!, c));
    const now = Date.now();
    const rows = [...unique].map(([sha256, content]) => ({ sha256, size: content.length, content, created_at: now }));
    // Slices keep a message with a thousand parts under the bind-parameter limit of either database.
    for (let i = 0; i < rows.length; i += 500) {
      await db
        .insertInto('blobs')
        .values(rows.slice(i, i + 500))
        .onConflict((oc) => oc.column('sha256').doNothing())
        .execute();
    }
    return shas;
  }

  async get(sha256: string): Promise<Buffer> {
    const row = await this.db.selectFrom('blobs').select('content').where('sha256', '=', sha256).executeTakeFirstOrThrow();
    return Buffer.from(row.content);
  }
}
