// A starting process that halts right after one migration has run, before the Migrator records it. `kill`: it
// dies there, as one killed by a supervisor or the OOM killer does (SIGKILL, no handler runs). `pause`: it says
// `paused` on stdout and goes on after PAUSE_MS, holding the migrations' lock meanwhile, then prints what it
// applied. Run by src/db/migrate.test.ts as
// `node --import tsx test/helpers/migrate-halts-after.ts '<database config as JSON>' MIGRATION kill|pause`.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import type { Database as DatabaseConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { migrationSet } from '../../src/db/migrations/index.js';

const PAUSE_MS = 1500;

const [config, name, how] = process.argv.slice(2) as [string, string, 'kill' | 'pause'];
const database = openDatabase(JSON.parse(config) as DatabaseConfig);
const migrations = migrationSet(database.dialect);
const migration = migrations[name];
if (!migration) throw new Error(`no migration ${name}`);
migrations[name] = {
  async up(db: Kysely<unknown>) {
    await migration.up(db);
    if (how === 'kill') process.kill(process.pid, 'SIGKILL');
    process.stdout.write('paused\n');
    await sleep(PAUSE_MS);
  },
};
const { applied } = await migrateToLatest(database, migrations);
process.stdout.write(`${JSON.stringify(applied)}\n`);
await database.close();
