// The blob store on both databases: bytes come back whole at every size around the piece boundaries (PostgreSQL
// reads large blobs in pieces), compressible bytes too, and the cache keeps a blob from its second read on.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { freshDatabase, dialects } from '../../test/helpers/databases.js';
import type { Database } from '../db/database.js';
import { BLOB_PIECE_BYTES, BLOB_PROBATION_BYTES, BlobStore, sha256Of } from './blob-store.js';

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

    it('rejects a blob that is not stored', async () => {
      await assert.rejects(new BlobStore(database.db).get('0'.repeat(64)));
    });
  });
}
