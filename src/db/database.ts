// The only module that knows which SQL dialect is in use. Everything else receives a `Kysely<DB>`.
import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, PostgresDialect, type SqliteDatabase } from 'kysely';
import type pg from 'pg';
import type { Database as DatabaseConfig } from '../config.js';
import { AppError } from '../lib/errors.js';
import type { DB } from './schema.js';
import { JuniperSqliteDialect } from './sqlite-dialect.js';
import { pgModule } from './pg-module.js';

export type DialectName = 'sqlite' | 'postgres';

export interface Database {
  readonly db: Kysely<DB>;
  readonly dialect: DialectName;
  close(): Promise<void>;
}

const INT8_OID = 20;
const parseInt8 = (value: string): number => Number(value);
// pg's own overloads are awkward to re-declare; this is the one slice of them we use.
const typeParser = ((oid: number, format?: 'text' | 'binary'): unknown =>
  oid === INT8_OID ? parseInt8 : pgModule().types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser;

export function openDatabase(config: DatabaseConfig): Database {
  if (config.kind === 'sqlite') {
    if (config.file !== ':memory:') fs.mkdirSync(path.dirname(config.file), { recursive: true });
    let sqlite: SQLite.Database;
    try {
      sqlite = new SQLite(config.file);
    } catch (e) {
      throw new AppError('JUNIPER_ERR_DATABASE', `Cannot open the SQLite database ${config.file}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    // WAL lets readers (the web UI) go on while a worker writes; busy_timeout makes a second process
    // (juniper worker next to juniper serve) wait for the write lock instead of failing at once.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('synchronous = NORMAL');
    // A checkpoint every 4,000 WAL pages (16 MB) instead of SQLite's 1,000: under NORMAL the checkpoint is where
    // the fsyncs are (two, milliseconds each on the test machines), run inside whichever commit crosses the
    // mark, on the event loop. A busy dispatcher commits ~14 pages per statement, the same hot index pages
    // again and again, so four times fewer checkpoints copy about the same pages and skip three in four pairs
    // of fsyncs. A crash of Juniper still loses nothing (the WAL is in the OS's cache, as before).
    sqlite.pragma('wal_autocheckpoint = 4000');
    const db = new Kysely<DB>({ dialect: new JuniperSqliteDialect({ database: withStatementCache(sqlite) }) });
    return { db, dialect: 'sqlite', close: () => db.destroy() };
  }
  const pool = new (pgModule().Pool)({
    connectionString: config.url,
    max: 10,
    // Times are epoch milliseconds in bigint columns: read them back as numbers (safe below 2^53).
    types: { getTypeParser: typeParser },
  });
  // A connection the server closes (PostgreSQL restarted, pg_terminate_backend) emits 'error', idle in the pool
  // or checked out between two queries; unheard, that event kills the process. pg drops the broken client and
  // the next query opens a new one; a query in flight fails by itself and its caller handles that.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  pgPools.set(db, pool);
  return { db, dialect: 'postgres', close: () => db.destroy() };
}

// The pool under each PostgreSQL Kysely instance, for the one read Kysely cannot express: a blob's bytes
// through a binary COPY (BlobStore, src/db/pg-bytea-copy.ts). Kept beside the instance rather than in Database
// because the services hand stores a Kysely instance only.
const pgPools = new WeakMap<Kysely<DB>, pg.Pool>();

/** The pg pool of a Kysely instance made by openDatabase on PostgreSQL; undefined for SQLite or a transaction. */
export function pgPoolOf(db: Kysely<DB>): pg.Pool | undefined {
  return pgPools.get(db);
}

/**
 * Kysely's SQLite driver prepares every statement anew; the hot ones (claim, mark sent, enqueue) are the same
 * text every time, and preparing was a seventh of the dispatcher's CPU time (docs/benchmarks.md). Statements
 * are kept by their SQL text, a bounded number: texts with `in (?, ?, …)` lists, multi-row INSERTs and joint
 * UPDATEs vary with their length (1 to 200 rows each), so a busy run has more than 256 texts in use.
 * Safe because Kysely runs one statement at a time on its single connection and nothing streams rows.
 */
export function withStatementCache(sqlite: SQLite.Database, size = 1024): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  const prepare = (source: string): SQLite.Statement => {
    let stmt = cache.get(source);
    if (stmt) {
      // Most recently used last, so the oldest is the one dropped.
      cache.delete(source);
    } else {
      stmt = sqlite.prepare(source);
      if (cache.size >= size) cache.delete(cache.keys().next().value!);
    }
    cache.set(source, stmt);
    return stmt;
  };
  return { prepare, close: () => sqlite.close() };
}

/** A description of the database for logs, without credentials. */
export function describeDatabase(config: DatabaseConfig): string {
  if (config.kind === 'sqlite') return `SQLite ${config.file}`;
  try {
    const u = new URL(config.url);
    return `PostgreSQL ${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'PostgreSQL';
  }
}
