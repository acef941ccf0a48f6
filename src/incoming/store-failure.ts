// Which failures to store a message are the message's fault (quarantine it, go on) and which are the
// database's as a whole (stop the run before it; the next run tries it again). A good message must not end in
// quarantine because PostgreSQL was restarting, and a hostile one must not stop the mailbox because its value
// broke an index. Driver facts in, a yes or no out.

// SQLSTATE classes and codes of a database that is unavailable rather than refusing this row: 08 connection
// exception, 53 insufficient resources (disk full, out of memory, too many connections), 57P admin shutdown,
// crash shutdown, cannot connect now; plus the transient conflicts 40001 serialization and 40P01 deadlock.
const PG_UNAVAILABLE = /^(08|53|57P0[1-4])/;
const PG_RETRY = new Set(['40001', '40P01', '55P03']);
const NODE_NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);
// better-sqlite3 codes: a busy or locked database, I/O and space failures, a file that cannot be written.
const SQLITE_UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|NOMEM|PROTOCOL)/;
// node-postgres reports a lost connection with these messages and no code.
const LOST_CONNECTION = /Connection terminated|connection not open|Client has encountered a connection error|timeout exceeded when trying to connect|Client was closed/i;

export function isDatabaseUnavailable(err: unknown): boolean {
  const e = (err ?? {}) as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  if (PG_UNAVAILABLE.test(code) || PG_RETRY.has(code) || NODE_NETWORK.has(code) || SQLITE_UNAVAILABLE.test(code)) return true;
  return LOST_CONNECTION.test(typeof e.message === 'string' ? e.message : '');
}
