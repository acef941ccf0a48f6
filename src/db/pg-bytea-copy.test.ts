// Blob bytes read from PostgreSQL through a binary COPY (BlobStore's read path there): the exact bytes come back
// for an empty blob, a zero byte, every byte value, random bytes over 1 MB, in rows and in one; the parser takes
// the server's stream cut anywhere; what is not one bytea column within the expected size is refused, and the
// pool stays usable after a refusal.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freshDatabase } from '../../test/helpers/databases.js';
import { BlobStore, sha256Of } from '../mailbox/blob-store.js';
import { pgPoolOf, type Database } from './database.js';
import { ByteaCopyReader, copyBytea } from './pg-bytea-copy.js';

/** The server's binary COPY stream of `select`, as the CopyData chunks pg handed over, each copied. */
async function rawCopy(pool: pg.Pool, select: string): Promise<Buffer[]> {
  const client = await pool.connect();
  try {
    const chunks: Buffer[] = [];
    const query = new pg.Query(`COPY (${select}) TO STDOUT (FORMAT binary)`);
    (query as unknown as { handleCopyData: (msg: { chunk: Buffer }) => void }).handleCopyData = (msg) => chunks.push(Buffer.from(msg.chunk));
    await new Promise<void>((resolve, reject) => {
      query.once('end', () => resolve());
      query.once('error', reject);
      client.query(query);
    });
    return chunks;
  } finally {
    client.release();
  }
}

describe('blob bytes through a binary COPY on PostgreSQL', () => {
  let database: Database;
  let pool: pg.Pool;
  before(async () => {
    database = await freshDatabase('postgres');
    pool = pgPoolOf(database.db)!;
  });
  after(async () => database.close());

  it('finds the pool under a PostgreSQL database from openDatabase (BlobStore copies through it), and none under SQLite', async () => {
    assert.ok(pool instanceof pg.Pool);
    const sqlite = await freshDatabase('sqlite');
    try {
      assert.equal(pgPoolOf(sqlite.db), undefined);
    } finally {
      await sqlite.close();
    }
  });

  it('gives back the exact bytes: empty, a zero byte, every byte value, random bytes over 1 MB', async () => {
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const contents = [Buffer.alloc(0), Buffer.from([0]), everyByte, Buffer.concat([everyByte, Buffer.from([0, 0xff, 0x80, 0x5c, 0x78])]), crypto.randomBytes(1024 * 1024 + 17), crypto.randomBytes(3 * 1024 * 1024 + 1)];
    const store = new BlobStore(database.db);
    const shas = await store.putMany(contents);
    for (const [i, content] of contents.entries()) {
      const sha = shas[i]!;
      // The whole value as one row, and cut into rows of 1,000 bytes (odd, so rows end mid-chunk).
      const whole = await copyBytea(pool, `select content from blobs where sha256 = '${sha}'`, content.length);
      assert.ok(whole.equals(content), `size ${content.length}, one row`);
      const rows = await copyBytea(pool, `select substring(content from g for 1000) from blobs, generate_series(1, length(content), 1000) g where sha256 = '${sha}' order by g`, content.length);
      assert.ok(rows.equals(content), `size ${content.length}, rows`);
      // And through BlobStore, read whole and in pieces, as another process would (nothing cached).
      const got = await new BlobStore(database.db).get(sha);
      assert.equal(sha256Of(got), sha, `size ${content.length}, get`);
      const source = await new BlobStore(database.db).source(sha);
      const pieces: Buffer[] = [];
      if (Buffer.isBuffer(source)) pieces.push(source);
      else for await (const piece of source.pieces()) pieces.push(piece);
      assert.ok(Buffer.concat(pieces).equals(content), `size ${content.length}, source`);
    }
  });

  it('parses the server stream cut at any byte: fed one byte at a time and in uneven chunks', async () => {
    const content = crypto.randomBytes(70_000);
    const [sha] = await new BlobStore(database.db).putMany([content]);
    const stream = Buffer.concat(await rawCopy(pool, `select substring(content from g for 30000) from blobs, generate_series(1, length(content), 30000) g where sha256 = '${sha}' order by g`));
    const byByte = new ByteaCopyReader(content.length);
    for (let i = 0; i < stream.length; i++) byByte.push(stream.subarray(i, i + 1));
    assert.ok(byByte.result().equals(content));
    const uneven = new ByteaCopyReader(content.length);
    for (let at = 0, n = 1; at < stream.length; at += n, n = (n * 7 + 3) % 5003) uneven.push(stream.subarray(at, at + n));
    assert.ok(uneven.result().equals(content));
    // Cut before its trailer, the stream is not taken as complete.
    const cut = new ByteaCopyReader(content.length);
    cut.push(stream.subarray(0, stream.length - 2));
    assert.throws(() => cut.result(), /ended early/);
  });

  it('refuses more bytes than expected, a NULL and a second column, and the pool goes on', async () => {
    await assert.rejects(copyBytea(pool, `select '\\x000102'::bytea`, 2), /more than the 2 bytes expected/);
    await assert.rejects(copyBytea(pool, `select null::bytea`, 10), /a NULL value/);
    await assert.rejects(copyBytea(pool, `select '\\x00'::bytea, '\\x01'::bytea`, 10), /2 columns/);
    await assert.rejects(copyBytea(pool, `select nothing from nowhere`, 10), /nowhere/);
    assert.ok((await copyBytea(pool, `select '\\x00ff80'::bytea`, 3)).equals(Buffer.from([0, 0xff, 0x80])));
    // Fewer bytes than expected are the caller's to judge (BlobStore: a row shorter than its size).
    assert.ok((await copyBytea(pool, `select '\\x00'::bytea`, 3)).equals(Buffer.from([0])));
    const { rows } = await pool.query<{ one: number }>('select 1 as one');
    assert.equal(rows[0]!.one, 1);
  });
});
