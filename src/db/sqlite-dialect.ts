// Kysely's SQLite dialect, with migrations that apply whole or not at all and one process at a time.
//
// Kysely's SqliteAdapter reports no transactional DDL, so its Migrator ran each SQLite migration outside a
// transaction and wrote the row recording it afterwards: a process killed in between (or a migration whose
// later statement failed) left the schema changed and the migration unrecorded, and every later start failed on
// "duplicate column" or "table already exists" until an admin edited the database. SQLite's DDL is
// transactional, and no migration runs what a transaction refuses or ignores (VACUUM, PRAGMA foreign_keys or
// journal_mode): here the Migrator runs the pending migrations and their records in one transaction, as it
// does on PostgreSQL.
//
// Kysely takes no migration lock on SQLite either (it assumes one connection), but `juniper serve` and
// `juniper worker` are two processes on one file. The migrations' transaction begins IMMEDIATE, with SQLite's
// write lock, before the Migrator reads what is pending: a second process starting meanwhile waits for the
// first (busy_timeout) and then finds nothing left to do. Begun deferred, it read the old state and its first
// write failed at once (SQLITE_BUSY_SNAPSHOT: in WAL mode a transaction cannot write once another committed
// after its first read).
import { CompiledQuery, SqliteAdapter, SqliteDialect, SqliteDriver, type DatabaseConnection, type DialectAdapter, type Driver, type SqliteDialectConfig } from 'kysely';

/** Shared by one dialect's adapter and driver. */
interface MigrationState {
  /** The Migrator holds its lock: the connection is the Migrator's alone until it releases it. */
  locked: boolean;
}

export class JuniperSqliteDialect extends SqliteDialect {
  private readonly state: MigrationState = { locked: false };

  constructor(private readonly config: SqliteDialectConfig) {
    super(config);
  }

  override createAdapter(): DialectAdapter {
    return new MigratingSqliteAdapter(this.state);
  }

  override createDriver(): Driver {
    return new MigratingSqliteDriver(this.config, this.state);
  }
}

class MigratingSqliteAdapter extends SqliteAdapter {
  constructor(private readonly state: MigrationState) {
    super();
  }

  // Read by Kysely's Migrator only: whether it runs the migrations in a transaction.
  override get supportsTransactionalDdl(): boolean {
    return true;
  }

  // Called with the Migrator's connection held, just before it begins the migrations' transaction.
  override async acquireMigrationLock(): Promise<void> {
    this.state.locked = true;
  }

  override async releaseMigrationLock(): Promise<void> {
    this.state.locked = false;
  }
}

class MigratingSqliteDriver extends SqliteDriver {
  constructor(
    config: SqliteDialectConfig,
    private readonly state: MigrationState,
  ) {
    super(config);
  }

  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    if (this.state.locked) await connection.executeQuery(CompiledQuery.raw('begin immediate'));
    else await super.beginTransaction(connection);
  }
}
