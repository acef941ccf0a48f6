// Multi-row INSERTs whose SQL is compiled once per shape. Kysely turns every value of an INSERT into an operation
// node and compiles the whole tree on each call: for a batch of outgoing_mails rows (29 columns) that cost about
// 30 µs a row, more than SQLite's own work for the row (about 20 µs; docs/benchmarks.md). The text depends only
// on the dialect, the table, the columns, the number of rows and the RETURNING list, so it is compiled by
// Kysely the first time a shape is seen and kept; later calls only lay out the parameters. A Kysely instance with
// plugins (withPlugin, withSchema: they rewrite the query before it is compiled) always goes through Kysely.
import { CompiledQuery, type DialectAdapter, type Insertable, type Kysely, type Selectable } from 'kysely';
import type { DB } from './schema.js';

type Row = Readonly<Record<string, unknown>>;

interface Shape {
  sql: string;
  parameters: number;
}

/** Shapes kept per database (per dialect adapter); batches run from 1 to a few hundred rows per table. */
const MAX_SHAPES = 512;
const shapes = new WeakMap<DialectAdapter, Map<string, Shape>>();

/** A value Kysely passes as one parameter as it is (an object such as a Date or an expression it would not). */
function isPlain(value: unknown): boolean {
  return value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint' || value instanceof Uint8Array;
}

/** Appends the row's values in `columns`' order; false when its keys differ or a value is not plain. */
function valuesOf(row: Row, columns: readonly string[], into: unknown[]): boolean {
  const keys = Object.keys(row);
  if (keys.length !== columns.length) return false;
  for (let i = 0; i < keys.length; i++) {
    if (keys[i] !== columns[i]) return false;
    const value = row[keys[i]!];
    if (!isPlain(value)) return false;
    into.push(value);
  }
  return true;
}

/**
 * `INSERT INTO table (…) VALUES (…), … RETURNING …` of `rows`, which must all have the same keys in the same
 * order with plain values (strings, numbers, null, bytes): what Kysely's `insertInto(table).values(rows)
 * .returning(returning)` sends, byte for byte (a test compares both). Rows of another kind go through Kysely.
 */
export async function insertRows<T extends keyof DB, K extends keyof Selectable<DB[T]> & string = never>(
  db: Kysely<DB>,
  table: T,
  rows: readonly Insertable<DB[T]>[],
  returning: readonly K[] = [],
): Promise<Pick<Selectable<DB[T]>, K>[]> {
  type R = Pick<Selectable<DB[T]>, K>;
  if (rows.length === 0) return [];
  const plainRows = rows as readonly Row[];
  const executor = db.getExecutor();
  const columns = Object.keys(plainRows[0]!);
  const key = `${table}\u0000${columns.join('\u0000')}\u0000${rows.length}\u0000${returning.join('\u0000')}`;
  let byKey = shapes.get(executor.adapter);
  if (!byKey) shapes.set(executor.adapter, (byKey = new Map<string, Shape>()));
  const shape = byKey.get(key);
  const parameters: unknown[] = [];
  const plain = executor.plugins.length === 0 && plainRows.every((row) => valuesOf(row, columns, parameters));
  if (shape && plain && parameters.length === shape.parameters) {
    return (await db.executeQuery<R>(CompiledQuery.raw(shape.sql, parameters))).rows;
  }
  const compiled = compileInsert(db, table, rows, returning);
  // Kept only when the compiled statement is what the layout above reproduces: one parameter per value, in order.
  if (plain && compiled.parameters.length === parameters.length && compiled.parameters.every((p, i) => p === parameters[i])) {
    if (byKey.size >= MAX_SHAPES) byKey.delete(byKey.keys().next().value!);
    byKey.set(key, { sql: compiled.sql, parameters: parameters.length });
  }
  return (await db.executeQuery<R>(compiled)).rows;
}

/** Kysely's own compilation of the same INSERT (the reference the cached shapes are checked against). */
export function compileInsert<T extends keyof DB>(db: Kysely<DB>, table: T, rows: readonly Insertable<DB[T]>[], returning: readonly string[] = []): CompiledQuery {
  // Kysely's types cannot follow a table chosen by a type parameter through values() and returning(); the
  // signature above keeps callers checked, so the query is built untyped here.
  const q = (db as unknown as Kysely<Record<string, Record<string, unknown>>>).insertInto(table).values(rows);
  return (returning.length ? q.returning(returning as never) : q).compile();
}
