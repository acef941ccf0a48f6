// A SecretSource over one encrypted column (`*_enc`) of a table keyed by `id`: what the owners of
// encrypted columns hand to key rotation. Raw SQL with quoted identifiers, since the table and column are
// data here; both dialects accept it as written.
import { sql, type Kysely } from 'kysely';
import type { SecretSource, StoredSecret } from '../vault/rotation.js';
import type { DB } from './schema.js';

export function columnSecretSource<T extends keyof DB>(db: Kysely<DB>, table: T, column: keyof DB[T] & string, contextOf: (id: number | string) => string): SecretSource {
  return {
    label: `${table}.${column}`,
    async list(): Promise<StoredSecret[]> {
      const { rows } = await sql<{ id: number | string; cipher: string }>`SELECT id, ${sql.ref(column)} AS cipher FROM ${sql.table(table)} WHERE ${sql.ref(column)} IS NOT NULL ORDER BY id`.execute(db);
      return rows.map((r) => ({ id: r.id, cipher: r.cipher, context: contextOf(r.id) }));
    },
    async replace(secret, to) {
      const r = await sql`UPDATE ${sql.table(table)} SET ${sql.ref(column)} = ${to} WHERE id = ${secret.id} AND ${sql.ref(column)} = ${secret.cipher}`.execute(db);
      return Number(r.numAffectedRows ?? 0) > 0;
    },
  };
}
