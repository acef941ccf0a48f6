// Fresh, migrated databases for repository tests, on both dialects. PostgreSQL comes from the private
// cluster scripts/test.sh starts (JUNIPER_TEST_PG_URL); each call creates its own database in it so test
// files stay independent. Without that variable the PostgreSQL variant fails with the command to run:
// a peer is never skipped silently.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { openDatabase, type Database, type DialectName } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import type { Database as DatabaseConfig } from '../../src/config.js';
import { projectRoot } from './project-root.js';

export const dialects: readonly DialectName[] = ['sqlite', 'postgres'];

export function postgresUrl(): string {
  const url = process.env.JUNIPER_TEST_PG_URL;
  if (!url) {
    throw new Error('JUNIPER_TEST_PG_URL is not set: run the tests with `npm test` (it starts a private PostgreSQL).');
  }
  return url;
}

/** A new empty database config of the given dialect (SQLite file in a temp dir, or a new PostgreSQL database). */
export async function freshDatabaseConfig(dialect: DialectName): Promise<DatabaseConfig> {
  if (dialect === 'sqlite') {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'juniper-sqlite-'));
    return { kind: 'sqlite', file: path.join(dir, 'juniper.sqlite') };
  }
  return createPostgresDatabase();
}

/** A new, migrated database; close it with `database.close()` in an `after` hook. */
export async function freshDatabase(dialect: DialectName): Promise<Database> {
  return openDatabase(await migratedDatabaseConfig(dialect));
}

/**
 * A new database with every migration applied, as `juniper serve` leaves a new one: a copy of a template migrated
 * once per test run (a file copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL). Running the migrations
 * again for each of the suite's few hundred databases cost 75–110 ms of CPU each, and on PostgreSQL 300–400 ms.
 * The template's name carries a hash of the compiled migrations, so a changed migration gets a new one. Tests of
 * the migrations themselves start from freshDatabaseConfig.
 */
export async function migratedDatabaseConfig(dialect: DialectName): Promise<DatabaseConfig> {
  if (dialect === 'sqlite') {
    const template = await (sqliteTemplate ??= buildSqliteTemplate());
    const config = await freshDatabaseConfig('sqlite');
    if (config.kind === 'sqlite') fs.copyFileSync(template, config.file);
    return config;
  }
  const template = await (postgresTemplate ??= buildPostgresTemplate());
  return createPostgresDatabase(template);
}

let sqliteTemplate: Promise<string> | undefined;
let postgresTemplate: Promise<string> | undefined;

/**
 * What the templates are made of, hashed: src/db/ with its migrations (compiled, or the sources under tsx) and the
 * version of kysely, which writes their DDL.
 */
function migrationsHash(): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const hash = crypto.createHash('sha256').update(fs.readFileSync(path.join(projectRoot, 'node_modules/kysely/package.json')));
  for (const sub of ['../../src/db/', '../../src/db/migrations/']) {
    const dir = new URL(sub, import.meta.url);
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(ext) && !f.endsWith(`.test${ext}`)).sort()) {
      hash.update(`${sub}${file}`).update(fs.readFileSync(new URL(file, dir)));
    }
  }
  return hash.digest('hex').slice(0, 16);
}

async function buildSqliteTemplate(): Promise<string> {
  const dir = process.env.JUNIPER_TEST_WORK ?? os.tmpdir();
  const file = path.join(dir, `juniper-template-${migrationsHash()}.sqlite`);
  if (fs.existsSync(file)) return file;
  // Built beside it and renamed into place, so another test process never copies a half-migrated file.
  const building = `${file}.${process.pid}.building`;
  const database = openDatabase({ kind: 'sqlite', file: building });
  await migrateToLatest(database);
  await database.close();
  if (fs.existsSync(`${building}-wal`)) throw new Error(`the SQLite template ${building} kept a WAL file after closing: its copies would miss what is in it`);
  fs.renameSync(building, file);
  return file;
}

async function buildPostgresTemplate(): Promise<string> {
  const name = `juniper_template_${migrationsHash()}`;
  const client = new pg.Client({ connectionString: postgresUrl() });
  await client.connect();
  try {
    // One test process builds it while the others wait; the lock ends with the session.
    await client.query('select pg_advisory_lock(hashtext($1))', [name]);
    const exists = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (exists.rowCount === 0) {
      const building = `${name}_building`;
      await client.query(`DROP DATABASE IF EXISTS ${building}`);
      await client.query(`CREATE DATABASE ${building}`);
      const url = new URL(postgresUrl());
      url.pathname = `/${building}`;
      const database = openDatabase({ kind: 'postgres', url: url.toString() });
      await migrateToLatest(database);
      await database.close();
      // A copy needs the template without sessions; CREATE DATABASE waits a few seconds for closing ones.
      await client.query(`ALTER DATABASE ${building} RENAME TO ${name}`);
    }
  } finally {
    await client.end();
  }
  return name;
}

async function createPostgresDatabase(template?: string): Promise<DatabaseConfig> {
  const admin = postgresUrl();
  const name = `t_${crypto.randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${template}` : ''}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return { kind: 'postgres', url: url.toString() };
}
