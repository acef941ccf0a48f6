// Column helpers that hide the few DDL differences between SQLite and PostgreSQL.
import { sql, type ColumnDefinitionBuilder, type CreateTableBuilder, type Kysely } from 'kysely';
import type { DialectName } from '../database.js';

export interface MigrationContext {
  dialect: DialectName;
}

/** An auto-incrementing integer primary key named `id`. */
export function withId<T extends string>(table: CreateTableBuilder<T, never>, dialect: DialectName) {
  return dialect === 'postgres'
    ? table.addColumn('id', 'serial', (c) => c.primaryKey())
    : table.addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement());
}

export const notNull = (c: ColumnDefinitionBuilder) => c.notNull();


/** The column type for raw bytes (attachments, original messages). */
export function binaryType(dialect: DialectName): 'blob' | 'bytea' {
  return dialect === 'postgres' ? 'bytea' : 'blob';
}

/** The OAuth token columns (TokenColumns in schema.ts) every Outlook-capable server table carries. */
export function withTokenColumns<T extends string, C extends string>(table: CreateTableBuilder<T, C>) {
  return table
    .addColumn('refresh_token_enc', 'text')
    .addColumn('access_token_enc', 'text')
    .addColumn('access_token_expires_at', 'bigint')
    .addColumn('token_account', 'text')
    .addColumn('token_status', 'text', (c) => c.notNull().defaultTo('missing').check(sql`token_status in ('missing', 'valid', 'needs_reconnect')`))
    .addColumn('token_error_code', 'text')
    .addColumn('token_error_message', 'text')
    .addColumn('token_refreshed_at', 'bigint')
    .addColumn('token_refresh_lock_until', 'bigint');
}

/**
 * Adds the columns `table` does not have yet. Builds before the migrations ran in one transaction on SQLite
 * (src/db/sqlite-dialect.ts) recorded a migration only after its own commit: one killed in between left its
 * columns added and itself unrecorded, and every start after failed on "duplicate column". Such a database
 * starts again with the columns as they are.
 */
export async function addMissingColumns(db: Kysely<unknown>, dialect: DialectName, table: string, columns: readonly { name: string; add: (db: Kysely<unknown>) => Promise<void> }[]): Promise<void> {
  const rows =
    dialect === 'sqlite'
      ? (await sql<{ name: string }>`select name from pragma_table_info(${table})`.execute(db)).rows
      : (await sql<{ name: string }>`select column_name as name from information_schema.columns where table_schema = current_schema() and table_name = ${table}`.execute(db)).rows;
  const present = new Set(rows.map((r) => r.name));
  for (const column of columns) if (!present.has(column.name)) await column.add(db);
}
