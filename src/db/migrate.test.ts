import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { Migrator, sql } from 'kysely';
import { dialects, freshDatabase, freshDatabaseConfig } from '../../test/helpers/databases.js';
import { accessTokenContext, refreshTokenContext, withTokenSummary } from '../oauth/connections.js';
import { createVault } from '../vault/index.js';
import { openDatabase } from './database.js';
import { migrateToLatest } from './migrate.js';
import { migrationSet } from './migrations/index.js';
import { SWEEP_AND_SCAN_INDEXES } from './migrations/018-sweep-and-scan-indexes.js';
import { PARTIAL_OUTGOING_INDEXES } from './migrations/022-partial-outgoing-indexes.js';

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

    it('022: the outgoing indexes of values a new mail lacks are partial, and the queries that need them still use them', async () => {
      const database = await freshDatabase(dialect);
      try {
        const defs =
          dialect === 'sqlite'
            ? (await sql<{ name: string; def: string }>`select name, sql as def from sqlite_master where type = 'index' and tbl_name = 'outgoing_mails'`.execute(database.db)).rows
            : (await sql<{ name: string; def: string }>`select indexname as name, indexdef as def from pg_indexes where schemaname = current_schema() and tablename = 'outgoing_mails'`.execute(database.db)).rows;
        for (const [name, columns] of PARTIAL_OUTGOING_INDEXES) {
          const def = defs.find((d) => d.name === name)?.def ?? '';
          assert.match(def, new RegExp(`where\\W+${columns[0]}\\W+is not null`, 'i'), `${name} is partial: ${def}`);
        }
        // The look-ups each index is for (the blob sweep, the webhook scanner's times, waking a server's
        // mails): a plan that scans the table instead would make them as slow as before 018.
        const lookups: [string, string][] = [
          ['outgoing_mails_raw_sha_idx', `select count(*) from blobs where not exists (select id from outgoing_mails where outgoing_mails.raw_sha256 = blobs.sha256)`],
          ['outgoing_mails_sent_at_idx', `select id from outgoing_mails where sent_at >= 5`],
          ['outgoing_mails_bounced_at_idx', `select id from outgoing_mails where bounced_at >= 5`],
          ['outgoing_mails_server_idx', `select id from outgoing_mails where state = 'queued' and server_id = 3 and waiting_reason is not null`],
        ];
        await database.db.connection().execute(async (c) => {
          // PostgreSQL prefers a scan of an empty table whatever the indexes: ask whether the index can be used at all.
          if (dialect === 'postgres') await sql`set enable_seqscan = off`.execute(c);
          for (const [name, query] of lookups) {
            const plan = dialect === 'sqlite'
              ? (await sql<{ detail: string }>`explain query plan ${sql.raw(query)}`.execute(c)).rows.map((r) => r.detail).join(' | ')
              : (await sql<{ 'QUERY PLAN': string }>`explain ${sql.raw(query)}`.execute(c)).rows.map((r) => r['QUERY PLAN']).join(' | ');
            assert.ok(plan.includes(name), `${query} uses ${name}: ${plan}`);
          }
          if (dialect === 'postgres') await sql`reset enable_seqscan`.execute(c);
        });
      } finally {
        await database.close();
      }
    });

    it('022 completes on a database an interrupted run left with an index dropped and the migration unrecorded', async () => {
      const database = openDatabase(await freshDatabaseConfig(dialect));
      try {
        const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrationSet(dialect) } });
        assert.equal((await migrator.migrateTo('021-oauth-connections')).error, undefined);
        await database.db.schema.dropIndex('outgoing_mails_sent_at_idx').execute();
        const result = await migrateToLatest(database);
        assert.ok(result.applied.includes('022-partial-outgoing-indexes'), `applied: ${result.applied.join(', ')}`);
        const names =
          dialect === 'sqlite'
            ? (await sql<{ name: string }>`select name from sqlite_master where type = 'index' and tbl_name = 'outgoing_mails'`.execute(database.db)).rows
            : (await sql<{ name: string }>`select indexname as name from pg_indexes where schemaname = current_schema() and tablename = 'outgoing_mails'`.execute(database.db)).rows;
        for (const [name] of PARTIAL_OUTGOING_INDEXES) assert.ok(names.some((n) => n.name === name), `${name} exists again`);
      } finally {
        await database.close();
      }
    });

    it("021 moves every server's tokens into oauth_connections without losing a connection: they still decrypt", async () => {
      const database = openDatabase(await freshDatabaseConfig(dialect));
      try {
        const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrationSet(dialect) } });
        assert.equal((await migrator.migrateTo('018-sweep-and-scan-indexes')).error, undefined);
        const vault = createVault([randomBytes(32)], 'test');
        const now = Date.now();
        const insert = async (table: 'outgoing_servers' | 'incoming_servers', name: string, tokens: Record<string, unknown>) => {
          const base = { name, host: 'smtp.office365.com', port: 587, security: 'starttls', auth: 'outlook', username: `${name}@example.com`, created_at: now, updated_at: now };
          const { rows } = await sql<{ id: number }>`INSERT INTO ${sql.table(table)} (${sql.join(Object.keys({ ...base, ...tokens }).map((k) => sql.ref(k)))}) VALUES (${sql.join(Object.values({ ...base, ...tokens }))}) RETURNING id`.execute(database.db);
          return rows[0]!.id;
        };
        // Ids chosen so that both kinds have a server 1: the connection is per kind.
        const sending = await insert('outgoing_servers', 'sending', {});
        const fetching = await insert('incoming_servers', 'fetching', {});
        await sql`UPDATE outgoing_servers SET refresh_token_enc = ${vault.encrypt('rt-out', refreshTokenContext('outgoing', sending))}, access_token_enc = ${vault.encrypt('at-out', accessTokenContext('outgoing', sending))}, access_token_expires_at = ${now + 3_600_000}, token_account = 'sending@example.com', token_status = 'valid', token_refreshed_at = ${now - 1000} WHERE id = ${sending}`.execute(database.db);
        await sql`UPDATE incoming_servers SET refresh_token_enc = ${vault.encrypt('rt-in', refreshTokenContext('incoming', fetching))}, token_status = 'valid' WHERE id = ${fetching}`.execute(database.db);
        const broken = await insert('outgoing_servers', 'broken', { token_status: 'needs_reconnect', token_error_code: 'AADSTS700082', token_error_message: 'expired', refresh_token_enc: vault.encrypt('rt-old', 'outgoing_servers.refresh_token:999') });
        await insert('outgoing_servers', 'never', {});

        await migrateToLatest(database);
        const db = database.db;
        const connections = await db.selectFrom('oauth_connections').selectAll().orderBy('id').execute();
        assert.deepEqual(
          connections.map((c) => [c.server_kind, c.server_id, c.status, c.account, c.error_code]),
          [
            ['outgoing', sending, 'valid', 'sending@example.com', null],
            ['outgoing', broken, 'needs_reconnect', null, 'AADSTS700082'],
            ['incoming', fetching, 'valid', null, null],
          ],
          'the server that never connected has none',
        );
        const out = connections[0]!;
        assert.equal(vault.decrypt(out.refresh_token_enc!, refreshTokenContext('outgoing', sending)), 'rt-out');
        const [access] = await db.selectFrom('oauth_access_tokens').selectAll().execute();
        assert.deepEqual([access!.connection_id, access!.resource, access!.expires_at], [out.id, 'outlook', now + 3_600_000]);
        assert.equal(vault.decrypt(access!.access_token_enc, accessTokenContext('outgoing', sending)), 'at-out');
        assert.equal(vault.decrypt(connections[2]!.refresh_token_enc!, refreshTokenContext('incoming', fetching)), 'rt-in');
        const rows = await withTokenSummary(db, 'outgoing', await db.selectFrom('outgoing_servers').select(['id', 'name']).orderBy('id').execute());
        assert.deepEqual(
          rows.map((r) => [r.name, r.token_status, r.token_error_message]),
          [['sending', 'valid', null], ['broken', 'needs_reconnect', 'expired'], ['never', 'missing', null]],
        );
        const columns = (await db.introspection.getTables()).find((t) => t.name === 'outgoing_servers')!.columns.map((c) => c.name);
        assert.ok(!columns.some((c) => c.includes('token')), `no token column is left on the server table: ${columns.join(', ')}`);
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
