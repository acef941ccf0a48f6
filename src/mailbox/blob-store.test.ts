// The blob store on both databases: bytes come back whole at every size around the piece boundaries (PostgreSQL
// reads large blobs in pieces), compressible bytes too, the cache keeps a blob from its second read on, and a
// large blob's first read for a send comes in pieces.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import type pg from 'pg';
import { freshDatabase, dialects } from '../../test/helpers/databases.js';
import { pgPoolOf, type Database } from '../db/database.js';
import { isAppError } from '../lib/errors.js';
import { BLOB_PIECE_BYTES, BLOB_PROBATION_BYTES, BLOB_STREAM_BYTES, BlobStore, sha256Of } from './blob-store.js';

const notStored = (e: unknown) => isAppError(e) && e.code === 'JUNIPER_ERR_NOT_FOUND' && /^Blob [0-9a-f]{64} is not stored \(any more\)/.test(e.message);

for (const dialect of dialects) {
  describe(`blob store on ${dialect}`, () => {
    let database: Database;
    before(async () => {
      database = await freshDatabase(dialect);
    });
    after(async () => database.close());

    it('gives back every byte at sizes around the piece size, up to a blob read in its largest pieces', async () => {
      const sizes = [0, 1, BLOB_PIECE_BYTES - 1, BLOB_PIECE_BYTES, BLOB_PIECE_BYTES + 1, 3 * BLOB_PIECE_BYTES + 7, 10 * 1024 * 1024 + 3];
      const writer = new BlobStore(database.db);
      const contents = sizes.map((n) => crypto.randomBytes(n));
      const shas = await writer.putMany(contents);
      // A store of its own, as another process would read them: nothing cached from the writes.
      const reader = new BlobStore(database.db);
      for (const [i, sha] of shas.entries()) {
        const got = await reader.get(sha);
        assert.equal(got.length, sizes[i], `size ${sizes[i]}`);
        assert.ok(got.equals(contents[i]!), `bytes of size ${sizes[i]}`);
        assert.equal(sha256Of(got), sha);
      }
      assert.equal(reader.reads, sizes.length);
    });

    it('gives back a large compressible blob whole (PostgreSQL stores it compressed)', async () => {
      const text = Buffer.from(Array.from({ length: 60_000 }, (_, i) => `line ${i % 977};${'x'.repeat(i % 50)}\n`).join(''));
      assert.ok(text.length > 4 * BLOB_PIECE_BYTES);
      const sha = await new BlobStore(database.db).put(text);
      if (dialect === 'postgres') {
        const { rows } = await sql<{ method: string | null }>`select pg_column_compression(content) as method from blobs where sha256 = ${sha}`.execute(database.db);
        assert.equal(rows[0]?.method, 'pglz', 'stored compressed, so every piece decompresses from the start');
      }
      assert.ok((await new BlobStore(database.db).get(sha)).equals(text));
    });

    it('keeps a large blob from its second read on, and a small one from its first', async () => {
      const store = new BlobStore(database.db);
      const large = await store.put(crypto.randomBytes(BLOB_PROBATION_BYTES + 1));
      const small = await store.put(crypto.randomBytes(1000));
      await store.get(large);
      await store.get(small);
      assert.equal(store.reads, 2);
      await store.get(small);
      assert.equal(store.reads, 2, 'the small blob waited in probation');
      await store.get(large);
      assert.equal(store.reads, 3, 'a large blob read once is not kept');
      await store.get(large);
      await store.get(small);
      assert.equal(store.reads, 3, 'both are kept now');
    });

    it('keeps a large blob that two callers asked for at once, after one read', async () => {
      const store = new BlobStore(database.db);
      const content = crypto.randomBytes(BLOB_PROBATION_BYTES + 1);
      const sha = await store.put(content);
      const [a, b] = await Promise.all([store.get(sha), store.get(sha)]);
      assert.ok(a.equals(content) && b.equals(content));
      assert.equal(store.reads, 1);
      await store.get(sha);
      assert.equal(store.reads, 1);
    });

    it('hands a large blob read for the first time over in pieces, again at each call; its second reader gets it whole and kept', async () => {
      const store = new BlobStore(database.db);
      const sizes = [BLOB_STREAM_BYTES + 1, 3 * BLOB_PIECE_BYTES + 7, 10 * 1024 * 1024 + 3];
      const contents = sizes.map((n) => crypto.randomBytes(n));
      const shas = await store.putMany(contents);
      for (const [i, sha] of shas.entries()) {
        const source = await store.source(sha);
        assert.ok(!Buffer.isBuffer(source), `size ${sizes[i]} comes in pieces`);
        assert.equal(source.size, sizes[i]);
        for (const attempt of [1, 2]) {
          const pieces: Buffer[] = [];
          for await (const piece of source.pieces()) pieces.push(piece);
          assert.ok(pieces.length >= (sizes[i]! > 2 * BLOB_PIECE_BYTES ? 2 : 1) && pieces.length <= 9, `${pieces.length} pieces`);
          assert.ok(pieces.slice(0, -1).every((p) => p.length % 3 === 0 && p.length <= Math.max(BLOB_PIECE_BYTES + 2, sizes[i]! / 9 + 3)), 'pieces of a bounded size, whole base64 groups');
          assert.ok(Buffer.concat(pieces).equals(contents[i]!), `bytes of size ${sizes[i]}, attempt ${attempt}`);
        }
      }
      assert.equal(store.reads, sizes.length);
      const again = await store.source(shas[0]!);
      assert.ok(Buffer.isBuffer(again) && again.equals(contents[0]!), 'the second read is whole');
      assert.equal(store.reads, sizes.length + 1);
      await store.source(shas[0]!);
      assert.equal(store.reads, sizes.length + 1, 'and kept');
    });

    it('hands a large compressible blob over in at most 9 pieces (PostgreSQL decompresses it from its start for each)', async () => {
      const text = Buffer.from(Array.from({ length: 60_000 }, (_, i) => `line ${i % 977};${'x'.repeat(i % 50)}\n`).join(''));
      const store = new BlobStore(database.db);
      const source = await store.source(await store.put(text));
      assert.ok(!Buffer.isBuffer(source));
      const pieces: Buffer[] = [];
      for await (const piece of source.pieces()) pieces.push(piece);
      assert.ok(pieces.length > 1 && pieces.length <= 9, `${pieces.length} pieces`);
      assert.ok(Buffer.concat(pieces).equals(text));
    });

    it('hands a small blob over whole, through the cache', async () => {
      const store = new BlobStore(database.db);
      const content = crypto.randomBytes(BLOB_STREAM_BYTES);
      const sha = await store.put(content);
      const got = await store.source(sha);
      assert.ok(Buffer.isBuffer(got) && got.equals(content));
      await store.source(sha);
      assert.equal(store.reads, 1);
    });

    it('fails the pieces of a blob whose row is shorter than its recorded size', async () => {
      const store = new BlobStore(database.db);
      const sha = await store.put(crypto.randomBytes(2 * BLOB_PIECE_BYTES));
      const source = await store.source(sha);
      assert.ok(!Buffer.isBuffer(source));
      await database.db.updateTable('blobs').set({ content: crypto.randomBytes(BLOB_PIECE_BYTES) }).where('sha256', '=', sha).execute();
      await assert.rejects(async () => {
        for await (const piece of source.pieces()) assert.ok(piece.length > 0);
      }, /shorter than its recorded size/);
    });

    it('rejects a blob that is not stored', async () => {
      await assert.rejects(new BlobStore(database.db).source('0'.repeat(64)), notStored);
      await assert.rejects(new BlobStore(database.db).get('0'.repeat(64)), notStored);
    });

    // Retention deletes a blob once nothing refers to it (its message went, or gave up its original): a read
    // under way meanwhile is a read of a blob not stored, not of a row changed outside Juniper.
    it("fails the pieces of a blob deleted after its size was read as a blob not stored", async () => {
      const store = new BlobStore(database.db);
      const sha = await store.put(crypto.randomBytes(2 * BLOB_PIECE_BYTES));
      const source = await store.source(sha);
      assert.ok(!Buffer.isBuffer(source));
      await database.db.deleteFrom('blobs').where('sha256', '=', sha).execute();
      await assert.rejects(async () => {
        for await (const piece of source.pieces()) assert.ok(piece.length > 0);
      }, notStored);
    });

    if (dialect === 'postgres') {
      it('fails a whole read of a blob deleted between its size and its first piece as a blob not stored', async () => {
        const sha = await new BlobStore(database.db).put(crypto.randomBytes(2 * BLOB_PIECE_BYTES + 1));
        // Each statement takes a client from the pool: the size query the first, the COPY of the first piece the
        // second. The row goes just before the COPY.
        const pool = pgPoolOf(database.db)!;
        const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
        let clients = 0;
        pool.connect = (async () => {
          if (++clients === 2) await database.db.deleteFrom('blobs').where('sha256', '=', sha).execute();
          return connect();
        }) as typeof pool.connect;
        try {
          await assert.rejects(new BlobStore(database.db).get(sha), notStored);
        } finally {
          pool.connect = connect as typeof pool.connect;
        }
        assert.ok(clients >= 2, `the read took ${clients} clients`);
      });
    }
  });
}
