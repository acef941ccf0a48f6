// A SecretSource over one encrypted column (`*_enc`) of a table keyed by `id`: what the owners of
// encrypted columns hand to key rotation. Raw SQL with quoted identifiers, since the table and column are
// data here; both dialects accept it as written.
import { sql, type Kysely } from 'kysely';
import type { SecretSource, StoredSecret } from '../vault/rotation.js';
import type { DB } from './schema.js';

export interface ColumnSecretOptions {
  /** Names a secret for people, e.g. (id, 'Office') => `password of outgoing server "Office" (id 3)`. */
  readonly nameOf: (id: number | string, rowName: string | null) => string;
  /** A column holding the row's human name, passed to nameOf. */
  readonly nameColumn?: string;
  /** How `vault forget` removes an unreadable value: clear the column (nullable) or delete the row. */
  readonly forget: 'clear' | 'delete-row';
}

export function columnSecretSource<T extends keyof DB>(db: Kysely<DB>, table: T, column: keyof DB[T] & string, contextOf: (id: number | string) => string, options: ColumnSecretOptions): SecretSource {
  const nameSel = options.nameColumn ? sql`${sql.ref(options.nameColumn)}` : sql`NULL`;
  return {
    label: `${table}.${column}`,
    async list(): Promise<StoredSecret[]> {
      const { rows } = await sql<{ id: number | string; cipher: string; row_name: string | null }>`SELECT id, ${sql.ref(column)} AS cipher, ${nameSel} AS row_name FROM ${sql.table(table)} WHERE ${sql.ref(column)} IS NOT NULL ORDER BY id`.execute(db);
      return rows.map((r) => ({ id: r.id, cipher: r.cipher, context: contextOf(r.id), name: options.nameOf(r.id, r.row_name) }));
    },
    async replace(secret, to) {
      const r = await sql`UPDATE ${sql.table(table)} SET ${sql.ref(column)} = ${to} WHERE id = ${secret.id} AND ${sql.ref(column)} = ${secret.cipher}`.execute(db);
      return Number(r.numAffectedRows ?? 0) > 0;
    },
    async forget(secret) {
      if (options.forget === 'clear') await sql`UPDATE ${sql.table(table)} SET ${sql.ref(column)} = NULL WHERE id = ${secret.id} AND ${sql.ref(column)} = ${secret.cipher}`.execute(db);
      else await sql`DELETE FROM ${sql.table(table)} WHERE id = ${secret.id} AND ${sql.ref(column)} = ${secret.cipher}`.execute(db);
    },
  };
}
