import { Migrator } from 'kysely';
import { AppError } from '../lib/errors.js';
import type { Database } from './database.js';
import { migrationSet } from './migrations/index.js';

export interface MigrationReport {
  applied: string[];
}

/**
 * Brings the schema up to date, in one transaction on both databases (on SQLite through JuniperSqliteDialect):
 * a run that fails or is killed part-way leaves the schema and its record as they were, and the next start
 * applies the same migrations again. Safe to run from several processes: a lock lets one at a time in.
 * `migrations` is the set to apply (a test gives one that dies part-way).
 */
export async function migrateToLatest(database: Database, migrations = migrationSet(database.dialect)): Promise<MigrationReport> {
  const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrations } });
  // An up-to-date database is left without taking the migrations' lock, which on SQLite is the write lock: every
  // start and CLI command migrates, and one would otherwise wait for (and, past busy_timeout, fail on) any long
  // write of another process. The Migrator reads what is pending again under the lock.
  if ((await migrator.getMigrations()).every((m) => m.executedAt !== undefined)) return { applied: [] };
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new AppError('JUNIPER_ERR_DATABASE', `Database migration ${failed} failed: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return { applied: (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName) };
}

/** Names of the migrations not yet applied to this database (`juniper doctor`); it changes nothing. */
export async function pendingMigrations(database: Database): Promise<string[]> {
  const migrations = migrationSet(database.dialect);
  const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrations } });
  return (await migrator.getMigrations()).filter((m) => m.executedAt === undefined).map((m) => m.name);
}
