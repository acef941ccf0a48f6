import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { freshDatabaseConfig } from '../../test/helpers/databases.js';
import { openDatabase } from './database.js';

// Another process (`juniper send` next to `juniper serve`) writing the same file: better-sqlite3 as Juniper
// opens it, waiting for the write lock up to the same busy_timeout.
const OTHER_PROCESS = `
const db = new (require('better-sqlite3'))(process.argv[1]);
db.pragma('busy_timeout = 5000');
const update = db.prepare('update counter set n = n + 10');
process.stdout.write('ready\\n', () => update.run());
`;

describe('SQLite transactions (JuniperSqliteDialect)', () => {
  it('a transaction that reads and then writes while another process writes the same file takes turns with it instead of failing with SQLITE_BUSY', async () => {
    const config = await freshDatabaseConfig('sqlite');
    assert.equal(config.kind, 'sqlite');
    const database = openDatabase(config);
    try {
      await sql`create table counter (n integer not null)`.execute(database.db);
      await sql`insert into counter (n) values (0)`.execute(database.db);
      let other: Promise<number | null> | undefined;
      await database.db.transaction().execute(async (trx) => {
        const { rows } = await sql<{ n: number }>`select n from counter`.execute(trx);
        const child = spawn(process.execPath, ['-e', OTHER_PROCESS, config.file], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
        other = new Promise((resolve) => child.once('exit', resolve));
        // Timed from the moment it writes: its start-up (node, better-sqlite3) is not in the race below.
        await new Promise<void>((resolve, reject) => {
          child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
          void other!.then(() => reject(new Error('the other process ended before it was ready')));
        });
        // Begun DEFERRED, this transaction held no lock after its read: the other process committed at once and
        // the write below failed ("database is locked"), however long busy_timeout was.
        const first = await Promise.race([other.then(() => 'the other process wrote first'), sleep(500).then(() => 'waiting')]);
        assert.equal(first, 'waiting', 'the other process waits for the write lock this transaction took when it began');
        await sql`update counter set n = ${rows[0]!.n + 1}`.execute(trx);
      });
      assert.equal(await other, 0, 'the other process wrote once this transaction committed');
      const { rows } = await sql<{ n: number }>`select n from counter`.execute(database.db);
      assert.equal(rows[0]!.n, 11, 'both writes are there, neither lost');
    } finally {
      await database.close();
    }
  });
});
