import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { dialects, freshDatabase } from '../../test/helpers/databases.js';
import { migrateToLatest } from './migrate.js';
import { SWEEP_AND_SCAN_INDEXES } from './migrations/018-sweep-and-scan-indexes.js';

for (const dialect of dialects) {
  describe(`migrations on ${dialect}`, () => {
    it('creates the foundation tables and running again applies nothing', async () => {
      const database = await freshDatabase(dialect);
      try {
        const again = await migrateToLatest(database);
        assert.deepEqual(again.applied, []);
        await database.db.insertInto('parameters').values({ key: 'k', value: 'v', updated_at: Date.now() }).execute();
        const row = await database.db.selectFrom('parameters').selectAll().executeTakeFirstOrThrow();
        assert.equal(row.value, 'v');
        assert.equal(typeof row.updated_at, 'number', 'bigint times come back as numbers on both dialects');
      } finally {
        await database.close();
      }
    });

    it('indexes what the blob sweep, the retention run and the webhook scanner look up', async () => {
      const database = await freshDatabase(dialect);
      try {
        const rows =
          dialect === 'sqlite'
            ? (await sql<{ name: string; tbl: string }>`select name, tbl_name as tbl from sqlite_master where type = 'index'`.execute(database.db)).rows
            : (await sql<{ name: string; tbl: string }>`select indexname as name, tablename as tbl from pg_indexes where schemaname = current_schema()`.execute(database.db)).rows;
        const have = new Set(rows.map((r) => `${r.tbl}.${r.name}`));
        for (const [name, table] of SWEEP_AND_SCAN_INDEXES) assert.ok(have.has(`${table}.${name}`), `index ${name} on ${table}`);
        assert.ok(SWEEP_AND_SCAN_INDEXES.some(([, t, c]) => t === 'message_attachments' && c[0] === 'blob_sha256'));
      } finally {
        await database.close();
      }
    });

    it('rejects a user role other than admin or user', async () => {
      const database = await freshDatabase(dialect);
      try {
        const now = Date.now();
        const insert = (role: string) =>
          database.db
            .insertInto('users')
            .values({ login: `u-${role}`, email: 'a@b.c', name: 'x', password_hash: null, role: role as 'admin', active: 1, created_at: now, updated_at: now })
            .execute();
        await insert('admin');
        await assert.rejects(insert('root'));
        const count = await database.db.selectFrom('users').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
        assert.equal(Number(count.n), 1);
      } finally {
        await database.close();
      }
    });
  });
}
