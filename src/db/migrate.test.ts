import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { Migrator, sql } from 'kysely';
import { projectRoot } from '../../test/helpers/cli.js';
import { moduleArgs } from '../../test/helpers/project-root.js';
import { dialects, freshDatabase, freshDatabaseConfig } from '../../test/helpers/databases.js';
import { accessTokenContext, refreshTokenContext, withTokenSummary } from '../oauth/connections.js';
import { createVault } from '../vault/index.js';
import { AuditLog } from '../audit/audit-log.js';
import { Parameters } from '../settings/parameters.js';
import { Settings } from '../settings/settings.js';
import type { Database as DatabaseConfig } from '../config.js';
import { openDatabase, type Database } from './database.js';
import { migrateToLatest, pendingMigrations } from './migrate.js';
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

    // A start killed right after a migration ran, before the Migrator recorded it: on SQLite the migration's
    // changes stayed and the next start ran it again, failing on the table or column it had made. 004 creates
    // several tables; 023 adds two columns.
    for (const [from, dies] of [[undefined, '004-incoming'], ['022-partial-outgoing-indexes', '023-unreturned-uid']] as const) {
      it(`a start killed right after ${dies} ran (${from ? `upgrading from ${from}` : 'a new database'}) leaves nothing applied, and the next start migrates to the full schema`, async () => {
        const config = await freshDatabaseConfig(dialect);
        if (from) {
          const database = openDatabase(config);
          const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrationSet(dialect) } });
          assert.equal((await migrator.migrateTo(from)).error, undefined);
          await database.close();
        }
        const child = haltAfter(config, dies, 'kill');
        assert.equal((await child.exit).signal, 'SIGKILL', child.output());

        const database = openDatabase(config);
        const reference = await freshDatabase(dialect);
        try {
          const names = Object.keys(migrationSet(dialect));
          const begun = names.slice(from ? names.indexOf(from) + 1 : 0);
          assert.deepEqual(await pendingMigrations(database), begun, 'juniper doctor sees every migration the killed start began as not applied');
          assert.deepEqual((await migrateToLatest(database)).applied, begun);
          assert.deepEqual(await pendingMigrations(database), []);
          assert.deepEqual(await schemaOf(database), await schemaOf(reference), 'the same schema as a database migrated in one go');
        } finally {
          await reference.close();
          await database.close();
        }
      });
    }

    // What an older build left when killed between a migration's own commit and its record (it ran SQLite
    // migrations outside the migrations' transaction): the columns of 023 and 024 there, neither recorded.
    it('a database with the columns of 023 and 024 added but the migrations unrecorded starts: they are recorded, nothing is added twice', async () => {
      const database = openDatabase(await freshDatabaseConfig(dialect));
      const reference = await freshDatabase(dialect);
      try {
        const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrationSet(dialect) } });
        assert.equal((await migrator.migrateTo('022-partial-outgoing-indexes')).error, undefined);
        const unrecorded = migrationSet(dialect);
        await unrecorded['023-unreturned-uid']!.up(database.db as never);
        await unrecorded['024-fetch-attempt']!.up(database.db as never);
        // The migrations after 024 are simply pending: they run after the two it records.
        const later = Object.keys(migrationSet(dialect)).filter((name) => name > '024-fetch-attempt');
        assert.deepEqual(await pendingMigrations(database), ['023-unreturned-uid', '024-fetch-attempt', ...later]);
        assert.deepEqual((await migrateToLatest(database)).applied, ['023-unreturned-uid', '024-fetch-attempt', ...later]);
        assert.deepEqual(await schemaOf(database), await schemaOf(reference), 'the same schema as a database migrated in one go');
      } finally {
        await reference.close();
        await database.close();
      }
    });

    if (dialect === 'sqlite') {
      // Every start and CLI command migrates: on an up-to-date database that must not wait for another process's
      // write (on SQLite the migrations' lock is the write lock, and past busy_timeout the start failed).
      it('an up-to-date database migrates without waiting for another process holding the write lock', async () => {
        const config = await freshDatabaseConfig(dialect);
        assert.equal(config.kind, 'sqlite');
        const database = openDatabase(config);
        try {
          await migrateToLatest(database);
          const holder = spawn(process.execPath, ['-e', `const db = new (require('better-sqlite3'))(process.argv[1]); db.exec('begin immediate'); process.stdout.write('holding\\n'); setTimeout(() => db.exec('commit'), 2500);`, config.file], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'inherit'] });
          const ended = new Promise((resolve) => holder.once('exit', resolve));
          await new Promise<void>((resolve) => holder.stdout.on('data', (d: Buffer) => d.toString().includes('holding') && resolve()));
          // The lock is held for 2.5 s. better-sqlite3 waits for a lock synchronously (busy_timeout), so no timer
          // can race it: the start's own duration tells whether it waited.
          const started = Date.now();
          assert.deepEqual((await migrateToLatest(database)).applied, []);
          const tookMs = Date.now() - started;
          assert.ok(tookMs < 1500, `nothing to apply, and no wait for the lock (took ${tookMs} ms)`);
          await ended;
        } finally {
          await database.close();
        }
      });
    }

    // `juniper serve` and `juniper worker` starting together on one new database: the second waits for the
    // first's migrations (on SQLite its BEGIN IMMEDIATE waits for the write lock) and finds nothing to do.
    it('a second start while the first is migrating waits for it and applies nothing', async () => {
      const config = await freshDatabaseConfig(dialect);
      const first = haltAfter(config, '004-incoming', 'pause');
      await first.said('paused');
      const database = openDatabase(config);
      try {
        assert.deepEqual((await migrateToLatest(database)).applied, []);
        assert.deepEqual(await pendingMigrations(database), []);
      } finally {
        await database.close();
      }
      assert.equal((await first.exit).code, 0, first.output());
      assert.deepEqual(JSON.parse(first.output().trim().split('\n').pop()!), Object.keys(migrationSet(dialect)), 'the first applied them all');
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

    // Before 032 the settings model counted a database with an Outlook Client ID and no outlook.enabled row as
    // having Outlook installed; 032 writes that down, and a missing row now means not installed.
    it('032 installs Outlook on a database that stored a Client ID before Apps existed, and nowhere else', async () => {
      const at031 = async (rows: Record<string, string>) => {
        const database = openDatabase(await freshDatabaseConfig(dialect));
        const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrationSet(dialect) } });
        assert.equal((await migrator.migrateTo('031-active-before-archive')).error, undefined);
        for (const [key, value] of Object.entries(rows)) await database.db.insertInto('settings').values({ key, value, updated_at: 1 }).execute();
        assert.equal((await migrateToLatest(database)).applied[0], '032-outlook-enabled');
        return database;
      };
      const enabledRow = async (database: Database) =>
        (await database.db.selectFrom('settings').select(['value', 'updated_at']).where('key', '=', 'outlook.enabled').executeTakeFirst()) ?? null;
      const settingsOf = (database: Database) => {
        const audit = new AuditLog(database.db);
        return new Settings(database.db, createVault([randomBytes(32)], 'test'), new Parameters(database.db, audit), audit);
      };
      const clientId = JSON.stringify('1b4f9c5e-0000-4000-8000-123456789abc');
      const cases: [string, Record<string, string>, string | null][] = [
        ['a Client ID and no flag: installed', { 'outlook.client_id': clientId, custom_email_servers: 'true' }, 'true'],
        ['a Client ID, uninstalled in Apps: stays uninstalled', { 'outlook.client_id': clientId, 'outlook.enabled': 'false' }, 'false'],
        ['no Client ID, installed in Apps: stays installed', { 'outlook.enabled': 'true' }, 'true'],
        ['no Outlook settings at all: no flag (not installed)', { custom_email_servers: 'true' }, null],
      ];
      for (const [name, rows, expected] of cases) {
        const database = await at031(rows);
        try {
          const row = await enabledRow(database);
          assert.equal(row?.value ?? null, expected, name);
          if ('outlook.enabled' in rows) assert.equal(row?.updated_at, 1, `${name}: the row is left as it was`);
          assert.equal((await settingsOf(database).get()).outlook.enabled, expected === 'true', name);
        } finally {
          await database.close();
        }
      }
      const fresh = await freshDatabase(dialect);
      try {
        assert.equal(await enabledRow(fresh), null, 'a new database has no flag');
        assert.equal((await settingsOf(fresh).get()).outlook.enabled, false, 'a new database starts with Outlook not installed');
      } finally {
        await fresh.close();
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

/** Every table's columns and every index, as the database describes them. */
async function schemaOf(database: Database): Promise<unknown[]> {
  if (database.dialect === 'sqlite') {
    return (await sql`select type, name, tbl_name, sql from sqlite_master where name not like 'sqlite_%' order by type, name`.execute(database.db)).rows;
  }
  const columns = await sql`select table_name, column_name, data_type, is_nullable, column_default from information_schema.columns where table_schema = current_schema() order by table_name, column_name`.execute(database.db);
  const indexes = await sql`select indexname, indexdef from pg_indexes where schemaname = current_schema() order by indexname`.execute(database.db);
  const checks = await sql`select conrelid::regclass::text as tbl, conname, pg_get_constraintdef(oid) as def from pg_constraint where connamespace = current_schema()::regnamespace order by tbl, conname`.execute(database.db);
  return [...columns.rows, ...indexes.rows, ...checks.rows];
}

/** test/helpers/migrate-halts-after.ts in a child process: it migrates `config` and halts right after `name` ran. */
function haltAfter(config: DatabaseConfig, name: string, how: 'kill' | 'pause') {
  const child = spawn(process.execPath, [...moduleArgs(import.meta.url, 'test/helpers/migrate-halts-after'), JSON.stringify(config), name, how], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const listeners = new Set<() => void>();
  const keep = (d: Buffer) => {
    output += d.toString();
    for (const l of listeners) l();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    exit,
    output: () => output,
    /** Resolves once the child wrote `line`; rejects if it exits first. */
    said: (line: string) =>
      new Promise<void>((resolve, reject) => {
        const check = () => output.split('\n').includes(line) && resolve();
        listeners.add(check);
        check();
        void exit.then(() => reject(new Error(`the child exited without saying ${line}: ${output}`)));
      }),
  };
}
