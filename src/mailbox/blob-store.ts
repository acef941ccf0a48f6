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

  /** Stores the bytes unless already there; returns their SHA-256. */
  async put(content: Buffer, db: Kysely<DB> = this.db): Promise<string> {
    const sha256 = sha256Of(content);
    await db
      .insertInto('blobs')
      .values({ sha256, size: content.length, content, created_at: Date.now() })
      .onConflict((oc) => oc.column('sha256').doNothing())
      .execute();
    return sha256;
  }

  async get(sha256: string): Promise<Buffer> {
    const row = await this.db.selectFrom('blobs').select('content').where('sha256', '=', sha256).executeTakeFirstOrThrow();
    return Buffer.from(row.content);
  }
}
