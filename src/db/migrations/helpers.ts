// Column helpers that hide the few DDL differences between SQLite and PostgreSQL.
import { sql, type ColumnDefinitionBuilder, type CreateTableBuilder } from 'kysely';
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
