// Foundation tables: system parameters, settings, users, sessions, API keys, audit log.
import { sql, type Kysely } from 'kysely';
import { notNull, withId, type MigrationContext } from './helpers.js';

export function foundation({ dialect }: MigrationContext) {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('parameters')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', notNull)
        .addColumn('updated_at', 'bigint', notNull)
        .execute();

      await db.schema
        .createTable('settings')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', notNull)
        .addColumn('updated_at', 'bigint', notNull)
        .execute();

      await withId(db.schema.createTable('users'), dialect)
        .addColumn('login', 'text', (c) => c.notNull().unique())
        .addColumn('email', 'text', notNull)
        .addColumn('name', 'text', notNull)
        .addColumn('password_hash', 'text')
        .addColumn('role', 'text', (c) => c.notNull().check(sqlRole))
        .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', 'bigint', notNull)
        .addColumn('updated_at', 'bigint', notNull)
        .execute();

      await db.schema
        .createTable('sessions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('csrf_token', 'text', notNull)
        .addColumn('created_at', 'bigint', notNull)
        .addColumn('expires_at', 'bigint', notNull)
        .addColumn('last_seen_at', 'bigint', notNull)
        .execute();
      await db.schema.createIndex('sessions_user_idx').on('sessions').column('user_id').execute();

      await withId(db.schema.createTable('api_keys'), dialect)
        .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('name', 'text', notNull)
        .addColumn('prefix', 'text', notNull)
        .addColumn('key_hash', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'bigint', notNull)
        .addColumn('last_used_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .execute();

      await withId(db.schema.createTable('audit_log'), dialect)
        .addColumn('at', 'bigint', notNull)
        .addColumn('actor_user_id', 'integer', (c) => c.references('users.id').onDelete('set null'))
        .addColumn('actor', 'text', notNull)
        .addColumn('action', 'text', notNull)
        .addColumn('target', 'text', notNull)
        .addColumn('details', 'text')
        .execute();
      await db.schema.createIndex('audit_log_at_idx').on('audit_log').column('at').execute();
    },
  };
}


const sqlRole = sql`role in ('admin', 'user')`;
