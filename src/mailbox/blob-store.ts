// Content-addressed bytes (attachments, original messages): stored once however many mails carry them,
// so a mass mailing with one PDF keeps one copy.
import crypto from 'node:crypto';
import type { ExpressionBuilder, Kysely, OnConflictDatabase, OnConflictTables } from 'kysely';
import type { DB } from '../db/schema.js';

export function sha256Of(content: Buffer): string {
  return crypto.createHash('sha256').update(content).digest('hex');
}

/** Bytes kept in memory by BlobStore.get, in all and per blob (larger ones are always read from the database). */
export const BLOB_CACHE_BYTES = 32 * 1024 * 1024;
export const BLOB_CACHE_MAX_ITEM = 8 * 1024 * 1024;
/** putMany writes blobs larger than this one per statement. */
export const LARGE_BLOB_BYTES = 1024 * 1024;

// A blob stored again (an old attachment reused) is as young as its new user: the sweep spares blobs younger
// than its grace, and the mail or message that will reference it may not be committed yet. Only the time
// changes; the bytes are the same by their hash. `excluded` is the proposed row on both dialects.
const refreshCreatedAt = (eb: ExpressionBuilder<OnConflictDatabase<DB, 'blobs'>, OnConflictTables<'blobs'>>) => ({ created_at: eb.ref('excluded.created_at') });

export class BlobStore {
  // Content-addressed, so a cached blob can never be stale: a small LRU spares a mass mailing re-reading
  // its PDF for every recipient.
  private readonly cache = new Map<string, Buffer>();
  private cachedBytes = 0;
  private readonly reading = new Map<string, Promise<Buffer>>();
  /** Reads that went to the database (a test reads it to prove the cache is used). */
  reads = 0;

  constructor(
    private readonly db: Kysely<DB>,
    private readonly cacheBytes = BLOB_CACHE_BYTES,
  ) {}

  /** Stores the bytes unless already there; returns their SHA-256 (`sha256` when the caller hashed them already). */
  async put(content: Buffer, db: Kysely<DB> = this.db, sha256 = sha256Of(content)): Promise<string> {
    await db
      .insertInto('blobs')
      .values({ sha256, size: content.length, content, created_at: Date.now() })
      .onConflict((oc) => oc.column('sha256').doUpdateSet(refreshCreatedAt))
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
    // A large blob is a statement of its own: the PostgreSQL driver copies a statement's parameters into one
    // growing buffer, so a 25 MB original with its 19 MB attachment in one statement meant about 80 MB more.
    const large = rows.filter((r) => r.size > LARGE_BLOB_BYTES);
    const small = rows.filter((r) => r.size <= LARGE_BLOB_BYTES);
    // Slices keep a message with a thousand parts under the bind-parameter limit of either database.
    const statements = [...large.map((r) => [r]), ...Array.from({ length: Math.ceil(small.length / 500) }, (_, i) => small.slice(i * 500, i * 500 + 500))];
    for (const values of statements) {
      await db
        .insertInto('blobs')
        .values(values)
        .onConflict((oc) => oc.column('sha256').doUpdateSet(refreshCreatedAt))
        .execute();
    }
    return shas;
  }

  /** The bytes; callers must not modify the buffer (it may be shared through the cache). */
  async get(sha256: string): Promise<Buffer> {
    const hit = this.cache.get(sha256);
    if (hit) {
      this.cache.delete(sha256);
      this.cache.set(sha256, hit);
      return hit;
    }
    // Concurrent sends of one mass mailing ask at once: they share one read.
    const reading = this.reading.get(sha256);
    if (reading) return reading;
    const read = this.read(sha256).finally(() => this.reading.delete(sha256));
    this.reading.set(sha256, read);
    return read;
  }

  private async read(sha256: string): Promise<Buffer> {
    this.reads++;
    const row = await this.db.selectFrom('blobs').select('content').where('sha256', '=', sha256).executeTakeFirstOrThrow();
    const content = Buffer.from(row.content);
    if (content.length <= Math.min(BLOB_CACHE_MAX_ITEM, this.cacheBytes)) {
      if (!this.cache.has(sha256)) {
        this.cache.set(sha256, content);
        this.cachedBytes += content.length;
      }
      for (const [key, value] of this.cache) {
        if (this.cachedBytes <= this.cacheBytes) break;
        this.cache.delete(key);
        this.cachedBytes -= value.length;
      }
    }
    return content;
  }
}
