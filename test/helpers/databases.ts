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
  const admin = postgresUrl();
  const name = `t_${crypto.randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return { kind: 'postgres', url: url.toString() };
}

/** A new, migrated database; close it with `database.close()` in an `after` hook. */
export async function freshDatabase(dialect: DialectName): Promise<Database> {
  const database = openDatabase(await freshDatabaseConfig(dialect));
  await migrateToLatest(database);
  return database;
}
