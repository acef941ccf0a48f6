import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import SQLite from 'better-sqlite3';
import { withStatementCache } from './database.js';

describe('withStatementCache: SQLite statements prepared once by their text', () => {
  it('hands back the same prepared statement for the same SQL, and still runs it with new parameters', () => {
    const sqlite = new SQLite(':memory:');
    const db = withStatementCache(sqlite);
    db.prepare('create table t (n integer)').run([]);
    const insert = db.prepare('insert into t (n) values (?)');
    assert.equal(db.prepare('insert into t (n) values (?)'), insert);
    insert.run([1]);
    db.prepare('insert into t (n) values (?)').run([2]);
    assert.deepEqual(db.prepare('select n from t order by n').all([]), [{ n: 1 }, { n: 2 }]);
    db.close();
  });

  it('keeps at most `size` statements, dropping the least recently used', () => {
    const sqlite = new SQLite(':memory:');
    const db = withStatementCache(sqlite, 2);
    const one = db.prepare('select 1');
    const two = db.prepare('select 2');
    assert.equal(db.prepare('select 1'), one, 'used again: now the most recent');
    db.prepare('select 3');
    assert.equal(db.prepare('select 1'), one, 'kept');
    assert.notEqual(db.prepare('select 2'), two, 'dropped, prepared anew');
    db.close();
  });
});
