// Content-addressed bytes (attachments, original messages): stored once however many mails carry them,
// so a mass mailing with one PDF keeps one copy.
import crypto from 'node:crypto';
import { PostgresAdapter, sql, type ExpressionBuilder, type Kysely, type OnConflictDatabase, type OnConflictTables } from 'kysely';
import type pg from 'pg';
import { pgPoolOf } from '../db/database.js';
import { copyBytea } from '../db/pg-bytea-copy.js';
import type { DB } from '../db/schema.js';
import { AppError } from '../lib/errors.js';

export function sha256Of(content: Buffer): string {
  // crypto.hash: one call, about a quarter of createHash's cost for the small bodies of most mail (every
  // fetched message's dedupe key and blobs go through here).
  return crypto.hash('sha256', content, 'hex');
}

/** Bytes kept in memory by BlobStore.get, in all and per blob (larger ones are always read from the database). */
export const BLOB_CACHE_BYTES = 32 * 1024 * 1024;
export const BLOB_CACHE_MAX_ITEM = 8 * 1024 * 1024;
/** Blobs read once so far, kept in bytes up to this much in all (the rest by their hash only, see get). */
export const BLOB_PROBATION_BYTES = 1024 * 1024;
/** Hashes of blobs read once that are remembered, so their second read is kept. */
const SEEN_HASHES = 4096;
/** On PostgreSQL, BlobStore.get reads a blob larger than this in pieces of at least this size... */
export const BLOB_PIECE_BYTES = 256 * 1024;
/**
 * ...and in at most this many more: a 25 MB blob is not a hundred round trips, and PostgreSQL decompresses a
 * compressed value from its start for each piece, so the work grows with the square of the pieces.
 */
const MAX_MORE_PIECES = 8;
/** A blob read through a COPY comes in rows of this many bytes (see BlobStore.copyPiece). */
const COPY_ROW_BYTES = 16 * 1024;
/** BlobStore.source hands a blob larger than this to a transport in pieces, on its first read. */
export const BLOB_STREAM_BYTES = BLOB_PIECE_BYTES;
/** putMany writes blobs larger than this one per statement. */
export const LARGE_BLOB_BYTES = 1024 * 1024;

// A blob stored again (an old attachment reused) is as young as its new user: the sweep spares blobs younger
// than its grace, and the mail or message that will reference it may not be committed yet. Only the time
// changes; the bytes are the same by their hash. `excluded` is the proposed row on both dialects.
const refreshCreatedAt = (eb: ExpressionBuilder<OnConflictDatabase<DB, 'blobs'>, OnConflictTables<'blobs'>>) => ({ created_at: eb.ref('excluded.created_at') });

/** A large blob's bytes in order, read piece by piece at each call of `pieces()` (BlobStore.source). */
export interface BlobPieces {
  readonly size: number;
  pieces(): AsyncIterable<Buffer>;
}

export class BlobStore {
  // Content-addressed, so a cached blob can never be stale: a small LRU spares a mass mailing re-reading
  // its PDF for every recipient. Most blobs are read once, though (an attachment of one mail), and keeping
  // those only pushed the shared ones out and held up to 32 MB of a worker for nothing: a blob enters the
  // cache when it is read a second time, or by two callers at once. A blob read once waits in a small
  // probation (BLOB_PROBATION_BYTES, so a small shared logo is not read twice), else only its hash is kept.
  private readonly cache = new Map<string, Buffer>();
  private cachedBytes = 0;
  private readonly probation = new Map<string, Buffer>();
  private probationBytes = 0;
  private readonly seen = new Set<string>();
  private readonly reading = new Map<string, { read: Promise<Buffer>; shared: boolean }>();
  /** Reads that went to the database (a test reads it to prove the cache is used). */
  reads = 0;

  // PostgreSQL reads a large blob in pieces, so that no read makes one large string: it sends a bytea as hex
  // text, which pg gathers in a buffer doubled as it grows and turns into a string before decoding it, so a
  // 1 MB blob read whole cost a 2 MB string, buffers of up to 4 MB and the bytes; that was most of what a
  // worker on PostgreSQL held beyond one on SQLite. SQLite gives the bytes as they are, and its `substr` of
  // a blob loads the whole blob each time, so it reads whole. Asked of the Kysely instance because that is
  // all the services give a store.
  private readonly inPieces: boolean;
  // And it reads them as raw bytes through a binary COPY on a client of the pool under `db` (pg-bytea-copy.ts):
  // half the bytes on the wire, no hex string, nothing to decode. Undefined for a Kysely instance not made by
  // openDatabase (then the SELECT above, as hex).
  private readonly pool: pg.Pool | undefined;

  constructor(
    private readonly db: Kysely<DB>,
    private readonly cacheBytes = BLOB_CACHE_BYTES,
  ) {
    this.inPieces = db.getExecutor().adapter instanceof PostgresAdapter;
    this.pool = this.inPieces ? pgPoolOf(db) : undefined;
  }

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
    const waiting = this.probation.get(sha256);
    if (waiting) {
      this.forget(sha256);
      this.keep(sha256, waiting);
      return waiting;
    }
    // Concurrent sends of one mass mailing ask at once: they share one read.
    const reading = this.reading.get(sha256);
    if (reading) {
      reading.shared = true;
      return reading.read;
    }
    const entry = { read: this.read(sha256), shared: false };
    this.reading.set(sha256, entry);
    try {
      const content = await entry.read;
      if (entry.shared || this.seen.has(sha256)) this.keep(sha256, content);
      else this.onProbation(sha256, content);
      return content;
    } finally {
      this.reading.delete(sha256);
    }
  }

  /**
   * The bytes for a send, as `get` gives them, but for a blob over BLOB_STREAM_BYTES read for the first time
   * (an attachment of its own, most of them): that comes as a reader of its pieces, read from the database as
   * the transport writes them. Read whole, a 1 MB attachment was one buffer alive for the whole send, long
   * enough to reach V8's old generation, where only a full collection frees it (the external memory of a
   * worker sending such mails grew by ~60 MB before the first one); a piece lives while it is written. The
   * blob is remembered, so a second mail with the same bytes (a mass mailing) reads it whole into the cache.
   */
  async source(sha256: string): Promise<Buffer | BlobPieces> {
    if (this.cache.has(sha256) || this.probation.has(sha256) || this.reading.has(sha256) || this.seen.has(sha256)) return this.get(sha256);
    const row = await this.db.selectFrom('blobs').select('size').where('sha256', '=', sha256).executeTakeFirst();
    if (!row) throw blobMissing(sha256);
    if (row.size <= BLOB_STREAM_BYTES) return this.get(sha256);
    this.remember(sha256);
    this.reads++;
    return { size: row.size, pieces: () => this.pieces(sha256, row.size) };
  }

  // At most MAX_MORE_PIECES + 1 statements, as read() (on SQLite each piece loads the whole blob, so the count
  // bounds that work too); a multiple of 3 bytes each, so that no base64 group straddles two pieces.
  private async *pieces(sha256: string, size: number): AsyncGenerator<Buffer> {
    const step = 3 * Math.ceil(Math.max(BLOB_PIECE_BYTES, Math.ceil(size / (MAX_MORE_PIECES + 1))) / 3);
    for (let at = 0; at < size; at += step) yield this.readPiece(sha256, at, step, size);
  }

  /**
   * `step` bytes of the blob from offset `at` (fewer at its end). Each piece is a statement of its own, after the
   * one that read the size (for a send, maybe minutes after: pieces() reads them as the transport writes, so no
   * one snapshot could hold them short of a transaction open for the whole send), and the row may have gone
   * meanwhile: retention deletes a blob once nothing refers to it any more (the mail or message
   * that did went meanwhile, or gave up its original). That is the error of a blob not stored, as if it had gone
   * before the first statement; only a row still there but shorter than its size is one changed outside Juniper
   * (content-addressed bytes never change).
   */
  private async readPiece(sha256: string, at: number, step: number, size: number): Promise<Buffer> {
    let piece: Buffer;
    if (this.copies(sha256)) piece = await this.copyPiece(sha256, at, Math.min(step, size - at));
    else {
      const row = await this.db
        .selectFrom('blobs')
        .select((eb) => [this.piece(eb, at + 1, step)])
        .where('sha256', '=', sha256)
        .executeTakeFirst();
      if (!row) throw blobMissing(sha256);
      piece = ownBuffer(row.piece);
    }
    if (piece.length === Math.min(step, size - at)) return piece;
    // A COPY of no row is no bytes: ask whether the row is there at all.
    const stored = await this.db.selectFrom('blobs').select('sha256').where('sha256', '=', sha256).executeTakeFirst();
    throw stored ? shorterThanRecorded(sha256, size) : blobMissing(sha256);
  }

  private keep(sha256: string, content: Buffer): void {
    this.seen.delete(sha256);
    if (content.length > Math.min(BLOB_CACHE_MAX_ITEM, this.cacheBytes) || this.cache.has(sha256)) return;
    this.cache.set(sha256, content);
    this.cachedBytes += content.length;
    for (const [key, value] of this.cache) {
      if (this.cachedBytes <= this.cacheBytes) break;
      this.cache.delete(key);
      this.cachedBytes -= value.length;
    }
  }

  private onProbation(sha256: string, content: Buffer): void {
    if (content.length <= BLOB_PROBATION_BYTES) {
      this.probation.set(sha256, content);
      this.probationBytes += content.length;
    } else this.remember(sha256);
    for (const [key] of this.probation) {
      if (this.probationBytes <= BLOB_PROBATION_BYTES) break;
      this.forget(key);
      this.remember(key);
    }
  }

  private forget(sha256: string): void {
    const content = this.probation.get(sha256);
    if (!content) return;
    this.probation.delete(sha256);
    this.probationBytes -= content.length;
  }

  private remember(sha256: string): void {
    this.seen.add(sha256);
    for (const key of this.seen) {
      if (this.seen.size <= SEEN_HASHES) break;
      this.seen.delete(key);
    }
  }

  private async read(sha256: string): Promise<Buffer> {
    this.reads++;
    if (!this.inPieces) {
      const row = await this.db.selectFrom('blobs').select('content').where('sha256', '=', sha256).executeTakeFirst();
      if (!row) throw blobMissing(sha256);
      return ownBuffer(row.content);
    }
    // The first piece brings the size too, so a blob up to BLOB_PIECE_BYTES is one statement; a COPY gives one
    // column only, so there the size comes first.
    let size: number;
    let first: Buffer;
    if (this.copies(sha256)) {
      const row = await this.db.selectFrom('blobs').select('size').where('sha256', '=', sha256).executeTakeFirst();
      if (!row) throw blobMissing(sha256);
      size = row.size;
      first = await this.readPiece(sha256, 0, BLOB_PIECE_BYTES, size);
    } else {
      const head = await this.db
        .selectFrom('blobs')
        .select((eb) => ['size', this.piece(eb, 1, BLOB_PIECE_BYTES)])
        .where('sha256', '=', sha256)
        .executeTakeFirst();
      if (!head) throw blobMissing(sha256);
      size = head.size;
      first = ownBuffer(head.piece);
    }
    if (size <= BLOB_PIECE_BYTES) return first;
    const content = Buffer.allocUnsafe(size);
    let at = first.copy(content, 0);
    const step = Math.max(BLOB_PIECE_BYTES, Math.ceil((size - at) / MAX_MORE_PIECES));
    while (at < size) at += (await this.readPiece(sha256, at, step, size)).copy(content, at);
    return content;
  }

  /** Whether this blob is read through a COPY: PostgreSQL from openDatabase, and a hash safe as SQL text (COPY takes no parameters). */
  private copies(sha256: string): boolean {
    return this.pool !== undefined && /^[0-9a-f]{64}$/.test(sha256);
  }

  /**
   * `length` bytes from offset `at` through a binary COPY (see `pool`), sent as rows of COPY_ROW_BYTES: pg
   * gathers a message larger than its read buffer in new buffers doubled as it grows (128 KB, 256 KB, 512 KB
   * for one 256 KB piece), and keeps and reuses one buffer for messages that fit. The piece is cut once (the
   * materialized CTE: inlined, each row would detoast, and decompress, the blob again) and then sliced. The SQL
   * holds only the checked hash and integers.
   */
  private async copyPiece(sha256: string, at: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(at) || !Number.isSafeInteger(length)) throw new Error(`blob piece ${at}+${length} is not integral`);
    return copyBytea(
      this.pool!,
      `with p as materialized (select substring(content from ${at + 1} for ${length}) as b from blobs where sha256 = '${sha256}') ` +
        `select substring(p.b from g for ${COPY_ROW_BYTES}) from p, generate_series(1, length(p.b), ${COPY_ROW_BYTES}) as g order by g`,
      length,
    );
  }

  private piece(eb: ExpressionBuilder<DB, 'blobs'>, from: number, length: number) {
    return sql<Buffer>`substr(${eb.ref('content')}, ${from}, ${length})`.as('piece');
  }
}

/** A blob that is not stored: never was, or retention deleted it (before or while it was read). */
function blobMissing(sha256: string): AppError {
  return new AppError('JUNIPER_ERR_NOT_FOUND', `Blob ${sha256} is not stored (any more): retention deletes a blob once no mail or message refers to it.`);
}

function shorterThanRecorded(sha256: string, size: number): AppError {
  return new AppError('JUNIPER_ERR_DATABASE', `The stored blob ${sha256} is shorter than its recorded size (${size} bytes): its row was changed outside Juniper.`);
}

/** Both drivers give a Buffer of its own; copy only what is not one (an Uint8Array view). */
function ownBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
}
