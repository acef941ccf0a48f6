// Every row of every table, for "nothing was written" assertions and the secrets audit. Kysely's introspection
// lists the tables on both SQLite and PostgreSQL, so the dump follows the schema as migrations grow it.
import type { Kysely } from 'kysely';
import type { DB } from '../../src/db/schema.js';

export type Dump = Record<string, Record<string, unknown>[]>;

// Columns that move on reads (a session's sliding expiry, an API key's last use), not on the writes the tests look for.
const VOLATILE: Record<string, readonly string[]> = { sessions: ['last_seen_at', 'expires_at'], api_keys: ['last_used_at'] };

// The tables of a database, listed once: the access tests dump it before and after every refused request, and
// PostgreSQL's introspection costs more than the dump itself. So dump only a migrated database (every caller dumps
// an app's): a table created after its first dump would be in no dump, and a write to it would go unseen.
const tablesOf = new WeakMap<Kysely<DB>, Promise<string[]>>();
const tableNames = (db: Kysely<DB>): Promise<string[]> => {
  let names = tablesOf.get(db);
  // Kysely's own bookkeeping tables are skipped by default; the table names come from the database itself.
  if (!names) tablesOf.set(db, (names = db.introspection.getTables().then((tables) => tables.map((t) => t.name).sort())));
  return names;
};

export async function dumpDatabase(db: Kysely<DB>): Promise<Dump> {
  const dump: Dump = {};
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- table names are only known at run time
  const anyDb = db as unknown as Kysely<any>;
  for (const table of await tableNames(db)) {
    const rows = (await anyDb.selectFrom(table).selectAll().execute()) as Record<string, unknown>[];
    const volatile = VOLATILE[table] ?? [];
    // Sorted by each row's JSON, made once per row rather than twice per comparison.
    dump[table] = rows
      .map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !volatile.includes(k)).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('base64') : v])))
      .map((row) => ({ row, key: JSON.stringify(row) }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map((r) => r.row);
  }
  return dump;
}

/** Every value as text, one per line (binary columns as latin1, so byte-level hits show too). */
export async function allText(db: Kysely<DB>): Promise<string> {
  const tables = await db.introspection.getTables();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- table names are only known at run time
  const anyDb = db as unknown as Kysely<any>;
  const out: string[] = [];
  for (const t of tables) {
    for (const row of (await anyDb.selectFrom(t.name).selectAll().execute()) as Record<string, unknown>[]) {
      for (const v of Object.values(row)) out.push(Buffer.isBuffer(v) ? v.toString('latin1') : String(v));
    }
  }
  return out.join('\n');
}
