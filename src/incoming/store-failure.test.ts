import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDatabaseUnavailable } from './store-failure.js';

describe('store failures: the message or the database', () => {
  it('tells a database that is away from one that refuses this message', () => {
    const cases: [string, unknown, boolean][] = [
      ['PostgreSQL restarting (57P01 admin_shutdown)', { code: '57P01', message: 'terminating connection due to administrator command' }, true],
      ['PostgreSQL starting up (57P03)', { code: '57P03', message: 'the database system is starting up' }, true],
      ['connection failure (08006)', { code: '08006', message: 'connection failure' }, true],
      ['too many connections (53300)', { code: '53300', message: 'sorry, too many clients already' }, true],
      ['disk full (53100)', { code: '53100', message: 'could not extend file' }, true],
      ['deadlock (40P01)', { code: '40P01', message: 'deadlock detected' }, true],
      ['connection refused', { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:5432' }, true],
      ['node-postgres lost the connection', new Error('Connection terminated unexpectedly'), true],
      ['SQLite busy', { code: 'SQLITE_BUSY', message: 'database is locked' }, true],
      ['SQLite disk I/O', { code: 'SQLITE_IOERR_WRITE', message: 'disk I/O error' }, true],
      ['index row too large (54000)', { code: '54000', message: 'index row size 3000 exceeds btree version 4 maximum 2704' }, false],
      ['NUL in text (22021)', { code: '22021', message: 'invalid byte sequence for encoding "UTF8": 0x00' }, false],
      ['unique violation (23505)', { code: '23505', message: 'duplicate key value violates unique constraint' }, false],
      ['a trigger refused it (P0001)', { code: 'P0001', message: 'refused' }, false],
      ['SQLite constraint', { code: 'SQLITE_CONSTRAINT_TRIGGER', message: 'refused' }, false],
      ['SQLite string too big', { code: 'SQLITE_TOOBIG', message: 'string or blob too big' }, false],
      ['a parser bug', new TypeError("Cannot read properties of undefined (reading 'x')"), false],
      ['not an error at all', 'boom', false],
      ['nothing', undefined, false],
    ];
    for (const [name, err, unavailable] of cases) assert.equal(isDatabaseUnavailable(err), unavailable, name);
  });
});
