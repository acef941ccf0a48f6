import { Migrator } from 'kysely';
import { AppError } from '../lib/errors.js';
import type { Database } from './database.js';
import { migrationSet } from './migrations/index.js';

export interface MigrationReport {
  applied: string[];
}

/** Brings the schema up to date. Safe to run from several processes: Kysely takes a lock. */
export async function migrateToLatest(database: Database): Promise<MigrationReport> {
  const migrations = migrationSet(database.dialect);
  const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrations } });
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
