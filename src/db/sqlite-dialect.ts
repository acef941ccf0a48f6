// Kysely's SQLite dialect, with transactions that take the write lock when they begin, and migrations that
// apply whole or not at all.
//
// `juniper serve`, `juniper worker` and the CLI (`juniper send`, `juniper fetch`, …) are separate processes on
// one file. Kysely begins SQLite transactions DEFERRED: one that reads and then writes, while another process
// commits in between, fails at its first write at once (SQLITE_BUSY_SNAPSHOT: in WAL mode a transaction cannot
// write once another committed after its first read), and busy_timeout does not help, since waiting cannot
// make its snapshot current. Begun IMMEDIATE, a transaction waits for the write lock (busy_timeout) and then
// reads and writes the current state. Every transaction Juniper opens writes, so none loses by it; readers
// outside a transaction are not held up (WAL).
//
// Kysely's SqliteAdapter also reports no transactional DDL, so its Migrator ran each SQLite migration outside a
// transaction and wrote the row recording it afterwards: a process killed in between (or a migration whose
// later statement failed) left the schema changed and the migration unrecorded, and every later start failed on
// "duplicate column" or "table already exists" until an admin edited the database. SQLite's DDL is
// transactional, and no migration runs what a transaction refuses or ignores (VACUUM, PRAGMA foreign_keys or
// journal_mode): here the Migrator runs the pending migrations and their records in one transaction, as it
// does on PostgreSQL. Kysely takes no migration lock on SQLite; the IMMEDIATE begin is that lock: a second
// process starting meanwhile waits for the first and then finds nothing left to do.
import { CompiledQuery, SqliteAdapter, SqliteDialect, SqliteDriver, type DatabaseConnection, type DialectAdapter, type Driver, type SqliteDialectConfig } from 'kysely';

export class JuniperSqliteDialect extends SqliteDialect {
  constructor(private readonly config: SqliteDialectConfig) {
    super(config);
  }

  override createAdapter(): DialectAdapter {
    return new TransactionalDdlAdapter();
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.config);
  }
}

class TransactionalDdlAdapter extends SqliteAdapter {
  // Read by Kysely's Migrator only: whether it runs the migrations in a transaction.
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}
